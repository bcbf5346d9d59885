"""`vafa store list`, `delete` and `rollback`: the runs the scores store keeps, and which it serves.

`/lookup` serves the latest published run. A wrong night (a mistyped `--as-of`, bad data) is
undone by rolling back to the previous published run or by deleting the runs of its date.
Exit codes: 0 done, 1 the store refused (the message says why) or failed, 2 bad usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.options import EXIT_FAILED
from vafa.cli.steps import resolve_date
from vafa.settings import Settings

if TYPE_CHECKING:
    from serving.store.database import ScoreStore
    from serving.store.tables import StoreRun

app = typer.Typer(
    name="store",
    help="The scores store /lookup reads: list its runs, delete or roll back a wrong one.",
    no_args_is_help=True,
)

StoreUrlOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        metavar="URL",
        help="The store's URL; default: VAFA_STORE_URL, else store/scores.db.",
    ),
]


@app.command("list")
def list_runs(url: StoreUrlOption = None) -> None:
    """List the store's runs, newest first.

    The one /lookup serves is marked "served". What a run that died left behind (a folder
    swapped in before its store switched, rows staged and never served) is settled first,
    under its output folder's lock.
    """
    with _opened(url) as store:
        _settle(store)
        runs = store.runs()
        served = store.served()
        typer.echo(f"scores store {_safe(store.url)}")
        if not runs:
            typer.echo("no runs: `vafa score` publishes one")
            return
        typer.echo(f"{'run':>5}  {'as_of':<10}  {'state':<9}  {'rows':>11}  {'model':<8}  output")
        for run in sorted(runs, key=lambda r: r.run_id, reverse=True):
            state = "served" if served is not None and run.run_id == served.run_id else run.state
            typer.echo(
                f"{run.run_id:>5}  {run.as_of!s:<10}  {state:<9}  {run.rows:>11,}  "
                f"{run.model_version or '-':<8}  {run.out_dir or '-'}"
            )


@app.command()
def delete(
    as_of: Annotated[
        str,
        typer.Option("--as-of", metavar="DATE", help="Date of the runs to delete (ISO 8601)."),
    ],
    remove_folder: Annotated[
        bool,
        typer.Option(
            "--remove-folder",
            help="Also remove the run's folder as_of=DATE/ from the output folder it was "
            "published with (the dashboard and campaigns read it).",
        ),
    ] = False,
    url: StoreUrlOption = None,
) -> None:
    """Delete the runs of a date.

    If one was served, the latest published run left is served. Runs being written (staged)
    are left to their writer.
    """
    from serving.batch.publish import describe, locked
    from serving.runs import remove_run, run_folder

    day = resolve_date(as_of, param_hint="--as-of")
    with _opened(url) as store:
        _settle(store)
        before = store.served()
        deleted = store.delete(day.date())
        for run in deleted:
            typer.echo(
                f"deleted run {run.run_id} as of {run.as_of} ({run.rows:,} rows, {run.state})"
            )
        served = store.served()
        if served == before:
            typer.echo(f"the store still serves {describe(served)}")
        elif served is None:
            typer.echo("the store serves no run now: /lookup answers every id unknown")
        else:
            typer.echo(f"the store serves {describe(served)} now")
        for folder in sorted({run.out_dir for run in deleted if run.out_dir}):
            out_dir = Path(folder)
            if not remove_folder:
                if run_folder(out_dir, day).exists():
                    typer.echo(
                        f"note: {run_folder(out_dir, day)} is still there; --remove-folder "
                        "removes it"
                    )
                continue
            if not out_dir.is_dir():
                continue
            with locked(out_dir, store):
                removed = remove_run(out_dir, day)
            if removed is not None:
                typer.echo(f"removed {removed}")


@app.command()
def rollback(url: StoreUrlOption = None) -> None:
    """Serve the previous published run again.

    The served run is withdrawn (pruned at the next publication). Its folder stays:
    `vafa store delete --as-of DATE --remove-folder` removes both.
    """
    from serving.runs import run_folder

    with _opened(url) as store:
        _settle(store)
        withdrawn, served = store.rollback()
        typer.echo(f"withdrew run {withdrawn.run_id} as of {withdrawn.as_of}")
        typer.echo(f"the store serves run {served.run_id} as of {served.as_of} again")
        if withdrawn.out_dir and withdrawn.as_of != served.as_of:
            folder = run_folder(Path(withdrawn.out_dir), str(withdrawn.as_of))
            if folder.exists():
                typer.echo(
                    f"note: {folder} is still there; `vafa store delete --as-of "
                    f"{withdrawn.as_of} --remove-folder` removes it with the run"
                )


@contextmanager
def _opened(url: str | None) -> Iterator[ScoreStore]:
    """The store (the settings' when no URL is given); its errors end the command, exit 1."""
    from serving.store.database import ScoreStore
    from serving.store.tables import StoreError

    store = None
    try:
        store = ScoreStore(url or Settings.from_env().store_url)
        yield store
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    finally:
        if store is not None:
            store.dispose()


def _settle(store: ScoreStore) -> None:
    """Settle what dead runs left in the output folders the store's runs were published with."""
    from serving.batch.publish import repair
    from serving.runs import pending
    from serving.store.tables import STAGED

    runs: list[StoreRun] = store.runs()
    staged = {run.run_id for run in runs if run.state == STAGED}
    for folder in sorted({run.out_dir for run in runs if run.out_dir}):
        out_dir = Path(folder)
        if not out_dir.is_dir():
            continue
        try:
            journal = pending(out_dir)
            if not repair(out_dir, store):
                continue  # a run holds it: alive, nothing to settle
        except RuntimeError as exc:
            typer.echo(f"warning: {exc}", err=True)
            continue
        if journal is not None:
            typer.echo(f"settled the publication a run that died left in {out_dir}")
    left = {run.run_id for run in store.runs() if run.state == STAGED}
    for run_id in sorted(staged - left):
        typer.echo(f"removed run {run_id}: staged by a run that did not finish")


def _safe(url: str) -> str:
    from serving.store.tables import safe_url

    return safe_url(url)
