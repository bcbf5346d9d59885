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
    from features.validation import ValidationReport

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


def input_counts(report: ValidationReport) -> dict[str, dict[str, int]]:
    """The rows read and the rows set aside in quarantine per table, for a run's summary."""
    return {
        "input_rows": dict(report.row_counts),
        "quarantined_rows": {name: report.quarantined.get(name, 0) for name in report.row_counts},
    }


def resolve_as_of(tables: Tables, as_of: str | None, *, allow_future: bool = False) -> pd.Timestamp:
    """The cutoff a command works as of, checked: a data error if nobody is left to score.

    Args:
        tables: the loaded tables.
        as_of: the `--as-of` text (ISO 8601); None for the default, the day after the last
            transaction (rows dated after tomorrow do not count, see `default_as_of`).
        allow_future: accept an `--as-of` later than tomorrow (`--allow-future-as-of`).

    Raises:
        typer.BadParameter: the date is not ISO 8601, or later than tomorrow unless allowed.
        DataValidationError: no customer has a transaction before the cutoff (exit 3).
    """
    from features.consistency import require_customers
    from features.schema import default_as_of, latest_as_of

    if as_of is None:
        try:
            cutoff = default_as_of(tables)
        except ValueError:  # nothing dated up to tomorrow: `require_customers` says so
            cutoff = latest_as_of()
    else:
        cutoff = resolve_date(as_of, param_hint="--as-of")
        refuse_future(cutoff, allow_future)
    require_customers(tables, cutoff)
    return cutoff


def refuse_future(cutoff: pd.Timestamp, allow_future: bool = False) -> None:
    """Refuse an as-of later than tomorrow (UTC) unless forced: it would poison the store.

    Raises:
        typer.BadParameter: the cutoff is later than tomorrow and `allow_future` is False.
    """
    from features.schema import latest_as_of

    tomorrow = latest_as_of()
    if cutoff > tomorrow and not allow_future:
        raise typer.BadParameter(
            f"{cutoff.date()} is later than tomorrow ({tomorrow.date()}, UTC): scores as of a "
            "future date stay the newest in the scores store and hide every correct night "
            "until then; pass --allow-future-as-of if you mean it",
            param_hint="--as-of",
        )


def resolve_date(value: str, param_hint: str | None = None) -> pd.Timestamp:
    """A date option: ISO 8601 only (`01/11/2026` is refused, not guessed), with a clear error."""
    from features.schema import to_timestamp

    try:
        return to_timestamp(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def echo_mlflow_hint() -> None:
    """How to look at the runs."""
    uri = Settings.from_env().tracking_uri
    typer.echo(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {uri}")
