"""What the commands do around their library calls: logged steps, loading data, reading dates.

The libraries are imported inside these helpers, not at the top, so that `vafa` starts at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from vafa.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from features.io import LoadResult
    from features.schema import Tables

log = logging.getLogger("vafa")

T = TypeVar("T")


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log the start and duration of a long step."""
    log.info("%s ...", name)
    started = time.perf_counter()
    yield
    log.info("%s done in %.1f s", name, time.perf_counter() - started)


def timed(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` as a logged step."""
    with step(name):
        return fn()


def quiet_optuna() -> None:
    """Optuna's per-trial lines drown the progress: warnings only, unless --verbose.

    Set when a command is about to tune, not at start-up: importing Optuna resets its level.
    """
    import optuna

    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    optuna.logging.set_verbosity(logging.DEBUG if verbose else logging.WARNING)


def load(data: Path, quarantine: Path | None = None) -> LoadResult:
    """Load and validate a data folder, logging warnings and the quarantine count."""
    from features.io import load_tables

    result = timed(f"loading {data}", lambda: load_tables(data, quarantine_dir=quarantine))
    for problem in result.report.warnings:
        log.warning("%s", problem.render())
    return result


def resolve_as_of(tables: Tables, as_of: str | None) -> pd.Timestamp:
    """The given date, else the day after the last transaction (so every row is before it)."""
    from features.schema import default_as_of

    if as_of is None:
        return default_as_of(tables)
    return resolve_date(as_of, param_hint="--as-of")


def resolve_date(value: str, param_hint: str | None = None) -> pd.Timestamp:
    """A date option, with a clear error."""
    from features.schema import to_timestamp

    try:
        return to_timestamp(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def echo_mlflow_hint() -> None:
    """How to look at the runs."""
    uri = Settings.from_env().tracking_uri
    typer.echo(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {uri}")
