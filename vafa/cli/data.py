"""`vafa generate`, `validate` and `features`: data folders in, checks and feature rows out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.options import (
    BUSINESSES,
    EXIT_BAD_DATA,
    AllowFutureOption,
    AsOfOption,
    BusinessOption,
    DataOption,
    QuarantineOption,
)
from vafa.cli.steps import load, resolve_as_of, resolve_date, timed

if TYPE_CHECKING:
    import pandas as pd

    from features.schema import Tables


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
    business: BusinessOption = "retail",
) -> None:
    """Write a realistic synthetic data folder: a retailer, or a subscription business."""
    from features.io import write_tables

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    resolve_date(end, param_hint="--end")  # ISO 8601 only, as every date option
    generator = generator_for(business)
    tables = timed(
        f"generating {customers} {business} customers",
        lambda: generator(customers, seed=seed, end=end),
    )
    write_tables(tables, out, fmt=fmt)  # type: ignore[arg-type]
    counts = ", ".join(f"{name} {len(frame):,}" for name, frame in _frames(tables))
    typer.echo(f"wrote {out} ({counts} rows)")


def generator_for(business: str) -> Callable[..., Tables]:
    """The generator of a kind of business (`BUSINESSES`)."""
    from features.synthetic import generate_tables
    from features.synthetic_subscriptions import generate_subscription_tables

    if business not in BUSINESSES:
        raise typer.BadParameter(f"must be one of {', '.join(BUSINESSES)}", param_hint="--business")
    return generate_tables if business == "retail" else generate_subscription_tables


def validate(data: DataOption) -> None:
    """Check a data folder against the contract; exit 3 if it breaks it."""
    from features.io import validate_folder

    report = timed(f"validating {data}", lambda: validate_folder(data))
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(EXIT_BAD_DATA)


def features(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    as_of: AsOfOption = None,
    quarantine: QuarantineOption = None,
    allow_future_as_of: AllowFutureOption = False,
) -> None:
    """Write one feature row per customer as of a date (only rows before it are read)."""
    from features.build import build_features
    from features.io import write_frame

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("must end in .parquet or .csv", param_hint="--out")
    tables = load(data, quarantine).tables
    cutoff = resolve_as_of(tables, as_of, allow_future=allow_future_as_of)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(tables, cutoff)
    )
    write_frame(frame, out)
    typer.echo(
        f"wrote {out}: {len(frame):,} customers x {frame.shape[1] - 1} features"
        f" as of {cutoff.date()}"
    )


def _frames(tables: Tables) -> Iterator[tuple[str, pd.DataFrame]]:
    for name in ("transactions", "customers", "events", "subscriptions"):
        frame = getattr(tables, name)
        if frame is not None:
            yield name, frame
