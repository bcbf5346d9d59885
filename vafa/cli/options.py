"""The exit codes of `vafa` and the options several of its commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Exit codes a scheduler can act on.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # Click's own code for bad options
EXIT_BAD_DATA = 3
EXIT_DRIFT = 4  # `score --fail-on-drift`: scored and published, but the population drifted
EXIT_STALE = 5  # `score --fail-on-stale`: scored and published, but the data looks stale

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        metavar="DIR",
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
        "--as-of",
        metavar="DATE",
        help="Cutoff date (ISO 8601); default: the day after the last transaction.",
    ),
]
BUSINESSES = ("retail", "subscription")
BusinessOption = Annotated[
    str,
    typer.Option(
        "--business",
        help="retail (transactions, customers, events) or subscription (plus subscriptions).",
    ),
]
TrialsOption = Annotated[
    int, typer.Option("--trials", min=1, metavar="N", help="Optuna trials per model.")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=1, metavar="SECONDS", help="Seconds of tuning per model, at most."
    ),
]
ChurnWindowOption = Annotated[
    int,
    typer.Option(
        "--churn-window-days",
        min=1,
        metavar="DAYS",
        help="Churn = no purchase in this many days.",
    ),
]
HorizonOption = Annotated[
    int,
    typer.Option(
        "--horizon-days", min=1, metavar="DAYS", help="Horizon of predicted spend and CLV."
    ),
]
MarginOption = Annotated[
    float | None,
    typer.Option(
        "--margin-rate",
        min=0,
        max=1,
        metavar="RATE",
        help="Margin per unit of revenue without a margin column.",
    ),
]
DiscountOption = Annotated[
    float,
    typer.Option(
        "--discount-rate", min=0, metavar="RATE", help="Annual discount rate applied to CLV."
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", metavar="N", help="Random seed.")]
BtydOption = Annotated[
    bool,
    typer.Option(
        "--btyd-features/--no-btyd-features",
        show_default=False,
        help="Give the models BG/NBD's probability alive and expected purchases (default: no).",
    ),
]
QuarantineOption = Annotated[
    Path | None,
    typer.Option(
        "--quarantine",
        metavar="DIR",
        help="Set bad rows aside into this folder and go on with the rest.",
    ),
]
AllowFutureOption = Annotated[
    bool,
    typer.Option(
        "--allow-future-as-of",
        help="Accept an --as-of later than tomorrow (UTC); refused by default, as such scores "
        "would stay the newest in the scores store.",
    ),
]
