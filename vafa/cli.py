"""The `vafa` command line: thin commands that parse options and call the packages."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from vafa.settings import quiet_telemetry

quiet_telemetry()

# Imported after the telemetry switch on purpose: the packages pull in MLflow and BentoML.
import pandas as pd  # noqa: E402

from features.build import build_features  # noqa: E402
from features.generate import generate_tables  # noqa: E402
from features.io import (  # noqa: E402  # noqa: E402
    DataValidationError,
    LoadResult,
    load_tables,
    validate_folder,
    write_frame,
    write_tables,
)
from features.schema import Tables, to_timestamp  # noqa: E402

log = logging.getLogger("vafa")

# Exit codes a scheduler can act on.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # Click's own code for bad options
EXIT_BAD_DATA = 3

app = typer.Typer(
    name="vafa",
    help="Predict which customers are about to leave, what each is worth, and what to do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Data folder with transactions and optional customers/events.",
        exists=True,
        file_okay=False,
        dir_okay=True,
        readable=True,
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Cutoff date (ISO 8601); default: the day after the last transaction."
    ),
]
QuarantineOption = Annotated[
    Path | None,
    typer.Option(
        "--quarantine", help="Set bad rows aside into this folder and go on with the rest."
    ),
]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    """Vafa: churn and customer-value scoring with retention actions."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def run() -> None:
    """Entry point: turns expected failures into clear messages and exit codes."""
    try:
        app(standalone_mode=False)
    except DataValidationError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_DATA)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        log.debug("failure", exc_info=True)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


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


def load(data: Path, quarantine: Path | None = None) -> LoadResult:
    """Load and validate a data folder, logging warnings and the quarantine count."""
    result = timed(f"loading {data}", lambda: load_tables(data, quarantine_dir=quarantine))
    for problem in result.report.warnings:
        log.warning("%s", problem.render())
    return result


def resolve_as_of(tables: Tables, as_of: str | None) -> pd.Timestamp:
    """The given date, else the day after the last transaction (so every row is before it)."""
    if as_of is not None:
        try:
            return to_timestamp(as_of)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--as-of") from exc
    last = tables.transactions["ts"].max()
    return to_timestamp(last.normalize() + pd.Timedelta(days=1))


@app.command()
def generate(
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Number of customers.")
    ] = 5000,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the tables to.")] = Path(
        "demo/data"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    end: Annotated[
        str, typer.Option("--end", help="All rows are before this date.")
    ] = "2026-11-01",
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write a realistic synthetic data folder (transactions, customers, events)."""
    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    tables = timed(
        f"generating {customers} customers", lambda: generate_tables(customers, seed=seed, end=end)
    )
    write_tables(tables, out, fmt=fmt)  # type: ignore[arg-type]
    counts = ", ".join(f"{name} {len(frame):,}" for name, frame in _frames(tables))
    typer.echo(f"wrote {out} ({counts} rows)")


@app.command()
def validate(data: DataOption) -> None:
    """Check a data folder against the contract; exit 3 if it breaks it."""
    report = timed(f"validating {data}", lambda: validate_folder(data))
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(EXIT_BAD_DATA)


@app.command()
def features(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    as_of: AsOfOption = None,
    quarantine: QuarantineOption = None,
) -> None:
    """Write one feature row per customer as of a date (only rows before it are read)."""
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("must end in .parquet or .csv", param_hint="--out")
    tables = load(data, quarantine).tables
    cutoff = resolve_as_of(tables, as_of)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(tables, cutoff)
    )
    write_frame(frame, out)
    typer.echo(
        f"wrote {out}: {len(frame):,} customers x {frame.shape[1] - 1} features"
        f" as of {cutoff.date()}"
    )


@app.command()
def demo(
    customers: Annotated[
        int, typer.Option("--customers", min=100, help="Customers to generate.")
    ] = 5000,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
) -> None:
    """The main job end to end on generated data: generate, validate, build features, ..."""
    data_dir = out / "data"
    tables = timed(
        f"generating {customers} customers", lambda: generate_tables(customers, seed=seed)
    )
    write_tables(tables, data_dir, fmt="parquet")
    loaded = load(data_dir)
    typer.echo(loaded.report.render())
    cutoff = resolve_as_of(loaded.tables, None)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(loaded.tables, cutoff)
    )
    features_path = write_frame(frame, out / "features.parquet")
    typer.echo(
        f"\nfeatures: {len(frame):,} customers x {frame.shape[1] - 1} columns as of {cutoff.date()}"
        f" -> {features_path}"
    )
    preview = ["customer_id", "recency_days", "n_orders", "spend_total", "overdue_ratio"]
    typer.echo(frame[preview].head(5).round(1).to_string(index=False))
    typer.echo(f"\ndemo data: {data_dir}")
    typer.echo(
        "training, scoring and the report are not built yet: the demo stops after the features."
    )


def _frames(tables: Tables) -> Iterator[tuple[str, pd.DataFrame]]:
    for name in ("transactions", "customers", "events"):
        frame = getattr(tables, name)
        if frame is not None:
            yield name, frame
