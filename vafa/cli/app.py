"""The `vafa` command line: the Typer app, its commands in help order, and the entry point.

Each command is a thin parse-and-call defined in its group's module (`data`, `models`,
`scoring`, `serve`, `demo`); they import the libraries when they run, so `vafa` starts at once.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from typer._click.exceptions import ClickException

from vafa.cli import data, demo, models, scoring, serve
from vafa.cli.options import EXIT_BAD_DATA, EXIT_FAILED
from vafa.settings import quiet_telemetry

# Before any command imports MLflow or BentoML: both phone home at import.
quiet_telemetry()

log = logging.getLogger("vafa")

app = typer.Typer(
    name="vafa",
    help="Predict which customers are about to leave, what each is worth, and what to do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(data.generate)
app.command()(data.validate)
app.command()(data.features)
app.command()(models.train)
app.command()(models.backtest)
app.command()(models.promote)
app.command(context_settings=scoring.SCORE_CONTEXT)(scoring.score)
app.command()(scoring.campaign)
app.command()(scoring.report)
app.command()(models.profiles)
app.command()(serve.serve)
app.command()(demo.demo)


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
        # Without standalone mode Click returns a `typer.Exit`'s code instead of raising it.
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad options: Click's own message and exit code 2
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _is_bad_data(exc):
            typer.echo(str(exc), err=True)
            sys.exit(EXIT_BAD_DATA)
        # The last line of defence: a message, not a traceback.
        log.debug("failure", exc_info=True)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_bad_data(exc: Exception) -> bool:
    """The data folder broke the contract (imported here: only a command that read data can)."""
    from features.validation import DataValidationError

    return isinstance(exc, DataValidationError)
