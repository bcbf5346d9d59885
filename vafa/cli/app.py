"""The `vafa` command line: the Typer app, its commands in help order, and the entry point.

Each command is a thin parse-and-call defined in its group's module (`data`, `models`, `store`,
`scoring`, `serve`, `demo`); they import the libraries when they run, so `vafa` starts at once.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any

import typer
from typer._click import Command, Context, HelpFormatter, Parameter
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

# OpenMP threads that spin while waiting starve each other on a busy 2-core machine (a fit
# several times slower); passive ones sleep. Set before LightGBM is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vafa.cli import data, demo, models, scoring, serve, store
from vafa.cli.options import EXIT_BAD_DATA, EXIT_FAILED
from vafa.settings import quiet_telemetry

# Before any command imports MLflow or BentoML: both phone home at import.
quiet_telemetry()

log = logging.getLogger("vafa")

LOG_LEVELS = {"verbose": logging.DEBUG, "quiet": logging.WARNING}
"""The logging options, by parameter name; every command accepts them too."""


class VafaGroup(TyperGroup):
    """The root command: `-q`/`-v` after any subcommand too, summaries wrapped, not cut."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        shared = [p for p in self.params if p.name in LOG_LEVELS]
        for command in _subcommands(self):
            names = {p.name for p in command.params}
            for option in shared:
                if option.name not in names:
                    command.params.append(_level_option(option))

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Each command with its whole first sentence, wrapped (Click cuts it at the width)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _subcommands(group: TyperGroup) -> Iterator[Command]:
    """Every command under a group: nested groups (`vafa store`) and their commands included."""
    for command in group.commands.values():
        yield command
        if isinstance(command, TyperGroup):
            yield from _subcommands(command)


def _level_option(option: Parameter) -> Parameter:
    """A subcommand's copy of a root logging option: it sets the level, passes no argument."""
    level = copy.copy(option)
    level.expose_value = False
    level.callback = _set_level
    return level


def _set_level(ctx: Context, param: Parameter, value: bool) -> bool:
    """`vafa score -q`: given after the subcommand, the level overrides the root's."""
    if value and param.name in LOG_LEVELS:
        logging.getLogger().setLevel(LOG_LEVELS[param.name])
    return value


def _show_version(value: bool) -> None:
    """`vafa --version`: the installed package's version."""
    if value:
        try:
            typer.echo(f"vafa {package_version('vafa')}")
        except PackageNotFoundError:  # run from a source tree never installed
            typer.echo("vafa (not installed: no version)")
        raise typer.Exit()


app = typer.Typer(
    name="vafa",
    help="Predict which customers are about to leave, what each is worth, and what to do.\n\n"
    "-q and -v go before or after the command (`vafa score -q ...`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: paragraphs reflowed and nothing cut at 80 columns, unlike Rich's
    # boxed tables, which kept the docstrings' line breaks and truncated long cells.
    rich_markup_mode=None,
    cls=VafaGroup,
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
app.add_typer(store.app, name="store")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
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
