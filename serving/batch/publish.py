"""Publishing a scored night: the run folder and the scores store switch together, or neither.

The night is staged first: its folder written aside (`.staging-*`), its rows written into the
store under a new run id that nothing serves yet. Then a journal (`OUT/.publishing.json`)
records the publication, the folder is swapped in, and the store's switch to the new run (one
UPDATE) is the very last step: the commit. A failure before it puts the folder back and
discards the staged rows, so folder and store stay on the previous night. A run killed before
it leaves the journal: the next run on the folder, holding its lock, asks the store whether
the switch happened, then finishes the publication (it did) or undoes it (it did not); a
killed run's staged rows are discarded the same way.

`checkpoint(name)` marks the points the fault-injection tests break
(tests/serving/batch/test_faults.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pandas as pd

from serving.runs import (
    Committed,
    Publication,
    RunLocked,
    begin,
    exclusive,
    pending,
    settle,
    staging_folder,
    swap_in,
)
from serving.store.database import ScoreStore
from serving.store.tables import PUBLISHED, StoreError, StoreRun, safe_url

log = logging.getLogger(__name__)

KILL_AT_ENV = "VAFA_TEST_KILL_AT"
CHECKPOINTS = (
    "scored",  # features and scores computed, nothing written
    "files_written",  # the score files written into the staging folder
    "store_staged",  # the rows staged in the store, not served
    "summary_written",  # summary.json written into the staging folder
    "swapped",  # the folder swapped in, the store not switched
    "flipped",  # the store switched (committed), leftovers not yet removed
)


def checkpoint(name: str) -> None:
    """A named point of the nightly run where the fault tests break it.

    Does nothing unless the environment variable VAFA_TEST_KILL_AT names this point: then
    the process kills itself with SIGKILL, as a crash would (the test of kill -9). Tests of
    exceptions monkeypatch this function instead.
    """
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Unsettled(RuntimeError):
    """The store's switch failed and whether it happened could not be checked."""


def store_decides(store: ScoreStore | None) -> Committed:
    """Whether a dead run's publication took effect, as the scores store answers it."""

    def committed(publication: Publication) -> bool:
        commit = publication.commit or {}
        if store is None or commit.get("store") != safe_url(store.url):
            raise RuntimeError(
                f"a run that died while publishing {publication.final} into the scores store "
                f"{commit.get('store')} left {publication.journal}; run again with that store "
                "(VAFA_STORE_URL) to settle it"
            )
        return store.state(int(commit["run_id"])) == PUBLISHED

    return committed


@contextmanager
def locked(out_dir: Path, store: ScoreStore | None) -> Iterator[None]:
    """Hold the output folder's lock, having settled what dead runs left there and in the store.

    Raises:
        RunLocked: another run holds the folder.
    """
    with exclusive(Path(out_dir), store_decides(store)):
        if store is not None:
            for run in store.discard_staged(out_dir):
                log.warning(
                    "removed run %d as of %s from the scores store: staged by a run that did "
                    "not finish",
                    run.run_id,
                    run.as_of,
                )
        yield


def repair(out_dir: Path, store: ScoreStore | None) -> bool:
    """Settle what dead runs left in `out_dir` and the store; False when a live run holds it."""
    try:
        with locked(out_dir, store):
            return True
    except RunLocked:
        return False


class Night:
    """One night's publication, used as `with Night(...) as night:` around writing it.

    Write the files into `night.staging`, then `night.stage_store(scores)`, then write the
    summary, then `night.commit()`. Leaving the block with an exception before the commit
    puts folder and store back as they were.
    """

    def __init__(
        self,
        out_dir: Path,
        as_of: pd.Timestamp,
        store: ScoreStore | None,
        *,
        take_over: bool = False,
        data_dir: Path | str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.as_of = pd.Timestamp(as_of)
        self.store = store
        self.take_over = take_over
        self.data_dir = data_dir
        self.run: StoreRun | None = None
        self.publication: Publication | None = None
        self.committed = False
        self.unsettled = False

    def __enter__(self) -> Night:
        self.staging = staging_folder(self.out_dir, self.as_of)
        return self

    def stage_store(self, scores: pd.DataFrame) -> StoreRun | None:
        """Write the rows into the store, not served yet; the staged run (None: no store)."""
        if self.store is None:
            return None
        self.run = self.store.stage(scores, out_dir=self.out_dir, data_dir=self.data_dir)
        checkpoint("store_staged")
        return self.run

    def commit(self) -> None:
        """Swap the folder in, then switch the store: the last step; leftovers removed after."""
        commit = None
        if self.store is not None and self.run is not None:
            commit = {"store": safe_url(self.store.url), "run_id": self.run.run_id}
        self.publication = begin(self.staging, self.as_of, commit)
        swap_in(self.publication)
        checkpoint("swapped")
        if commit is not None:
            self._switch_store()
        self.committed = True
        try:
            checkpoint("flipped")
            settle(self.publication, True)
            if self.store is not None:
                self.store.prune()
        except (OSError, StoreError) as exc:  # published: what is left, the next run removes
            log.warning("published; tidying up after it failed (the next run does it): %s", exc)

    def _switch_store(self) -> None:
        assert self.store is not None and self.run is not None
        try:
            self.store.publish(self.run.run_id, take_over=self.take_over)
        except BaseException as exc:
            try:
                state = self.store.state(self.run.run_id)
            except StoreError as unknown:
                self.unsettled = True
                raise Unsettled(
                    f"switching the scores store to run {self.run.run_id} failed ({exc}) and "
                    f"whether it switched could not be checked ({unknown})"
                ) from exc
            if state != PUBLISHED:
                raise
            log.warning("the scores store switched although it reported: %s", exc)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None or self.committed or self.unsettled:
            return
        try:
            if self.publication is not None:
                settle(self.publication, False)
            else:
                shutil.rmtree(self.staging, ignore_errors=True)
        except OSError as exc:  # the journal stays: the next run puts the folder back
            log.warning("could not put %s back yet: %s", self.out_dir, exc)
        if self.store is not None and self.run is not None:
            try:
                self.store.discard(self.run.run_id)
            except StoreError as exc:
                log.warning(
                    "staged run %d stays in the scores store, never served; the next run "
                    "removes it: %s",
                    self.run.run_id,
                    exc,
                )


def outcome(out_dir: Path, store: ScoreStore | None, before: StoreRun | str | None) -> str:
    """What a failed run left, checked rather than assumed.

    Args:
        out_dir: the run's output folder.
        store: the run's scores store (None: files only).
        before: the run the store served before the run, or "unknown".

    Returns:
        Whether the folder is as it was or a publication is pending, and what the store serves.
    """
    try:
        journal = pending(Path(out_dir))
    except RuntimeError as exc:
        return str(exc)
    if journal is not None:
        return (
            f"the publication was cut short and {journal.journal} records it: the next "
            f"`vafa score --out {out_dir}` (or `vafa store list`) puts {journal.final.name} and "
            "the scores store back on one night"
        )
    said = f"nothing was published in {out_dir}"
    if store is None:
        return said
    try:
        now = store.served()
    except StoreError as exc:
        return f"{said}; the scores store could not be checked: {exc}"
    if before == "unknown":
        return f"{said}; the scores store serves {describe(now)}"
    if now == before:
        return f"{said}, and the scores store still serves {describe(now)}"
    return f"{said}; the scores store serves {describe(now)}, not {describe(before)} as before"


def describe(run: StoreRun | str | None) -> str:
    """A store run in a few words."""
    return "no run" if not isinstance(run, StoreRun) else f"run {run.run_id} as of {run.as_of}"
