"""Faults injected at named points of the nightly run: folder and store stay on one night.

Each case breaks the run of 2026-11-01 one way: an exception at a checkpoint
(`serving.batch.publish.checkpoint`, monkeypatched), a full disk, a failing rename, a store
switch that fails, or a kill -9 of a real `vafa score` process at a checkpoint
(VAFA_TEST_KILL_AT). Two previous nights are broken into: an earlier date ("new": the run
adds a date) and the same date ("rerun": the run replaces its folder). After each fault the
published folder and the store's served rows are on the previous night (the commit point is
the store's switch: broken after it, the run stands and both are on the new night), and the
next run completes and leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

from features.io import write_tables
from features.schema import Tables
from serving import runs
from serving.batch import job, publish
from serving.batch.job import BatchError, run_batch
from serving.runs import latest_run, run_folder
from serving.scoring.scorer import Scorer
from serving.store.database import ScoreStore
from tests.serving.batch.factories import AS_OF

REPO = Path(__file__).resolve().parents[3]
EARLIER = AS_OF - pd.Timedelta(days=7)
SAMPLE = 5  # customers looked up after each fault


@dataclass
class World:
    """An output folder and a store on the previous night, and what that night was."""

    out: Path
    store: ScoreStore
    night: pd.Timestamp
    summary: str
    run_id: int
    ids: list[str]


@pytest.fixture(scope="module")
def doubled(tables: Tables) -> Tables:
    """The failing night's data: other amounts, so its scores differ from the previous ones."""
    return replace(tables, transactions=tables.transactions.assign(amount=lambda f: f.amount * 2))


@pytest.fixture(params=["new", "rerun"])
def previous(request: pytest.FixtureRequest) -> str:
    """The previous night: an earlier date ("new") or the same date ("rerun")."""
    return str(request.param)


def world(tables: Tables, scorer: Scorer, name: str, tmp_path: Path) -> World:
    """The previous night published into a fresh folder and store."""
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    night = EARLIER if name == "new" else AS_OF
    result = run_batch(tables, night, scorer, tmp_path / "out", store)
    served = store.served()
    assert served is not None
    return World(
        out=tmp_path / "out",
        store=store,
        night=night,
        summary=(result.folder / "summary.json").read_text(),
        run_id=served.run_id,
        ids=result.scores["customer_id"].head(SAMPLE).tolist(),
    )


def assert_on_night(w: World, night: pd.Timestamp, *, previous: bool) -> None:
    """The folder's latest run and the store's served rows are both of `night`."""
    latest = latest_run(w.out)
    assert latest is not None and latest.as_of == night
    summary = (latest.folder / "summary.json").read_text()
    assert json.loads(summary)["as_of"] == str(night.date())
    found = w.store.lookup(w.ids)
    assert len(found.found) == SAMPLE and found.as_of == night.date()
    assert {str(row["as_of"])[:10] for row in found.found} == {str(night.date())}
    if previous:
        assert summary == w.summary  # the previous night's own file, not a re-written one
        assert w.store.served().run_id == w.run_id  # type: ignore[union-attr]
        if night != AS_OF:
            assert not run_folder(w.out, AS_OF).exists()


def assert_tidy(w: World) -> None:
    """No staging, retired or journal left; no staged run in the store."""
    assert all(p.name.startswith("as_of=") for p in w.out.iterdir()), sorted(w.out.iterdir())
    assert [r.run_id for r in w.store.runs() if r.state == "staged"] == []


def next_run_completes(w: World, doubled: Tables, scorer: Scorer) -> None:
    result = run_batch(doubled, AS_OF, scorer, w.out, w.store)
    assert_on_night(w, AS_OF, previous=False)
    assert result.summary["store"]["rows"] == w.store.count() == len(result.scores)
    stored = {r["customer_id"]: r for r in w.store.lookup(w.ids).found}
    scored = result.scores.set_index("customer_id")
    for cid in w.ids:
        assert stored[cid]["clv"] == pytest.approx(scored.loc[cid, "clv"])
    assert_tidy(w)


# --- exceptions ---------------------------------------------------------------------------------


def raise_at(point: str, error: BaseException) -> Callable[[str], None]:
    def checkpoint(name: str) -> None:
        if name == point:
            raise error

    return checkpoint


def disk_full_writing(name: str) -> Callable[[pytest.MonkeyPatch], None]:
    """The disk fills up while writing the file `name` of the run."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_frame, real_text = job.write_frame, Path.write_text

        def write_frame(frame: pd.DataFrame, path: Path) -> Path:
            if path.name == name:
                path.write_bytes(b"half a file")
                raise full
            return real_frame(frame, path)

        def write_text(path: Path, text: str, *args: object, **kwargs: object) -> int:
            if path.name == name:
                raise full
            return real_text(path, text, *args, **kwargs)  # type: ignore[arg-type]

        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(f"{name}.draft"):
                raise full
            real_fsync(fd)

        monkeypatch.setattr(job, "write_frame", write_frame)
        monkeypatch.setattr(Path, "write_text", write_text)
        if name == runs.JOURNAL:
            monkeypatch.setattr(runs.os, "fsync", fsync)

    return inject


def failing_rename(which: int) -> Callable[[pytest.MonkeyPatch], None]:
    """The `which`-th rename of a run folder fails (1: the swap's first; 2: a re-run's second)."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        real = os.replace
        renames = []

        def rename(src: object, dst: object) -> None:
            if Path(str(dst)).name.startswith(("as_of=", ".retired-")):  # a run folder's
                renames.append(dst)
                if len(renames) == which:
                    raise OSError(errno.EIO, "rename failed")
            real(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(runs.os, "replace", rename)

    return inject


def store_switch_fails(committed: bool) -> Callable[[pytest.MonkeyPatch], None]:
    """The store's switch raises; with `committed`, after it took effect (a lost reply)."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        real = ScoreStore.publish

        def switch(self: ScoreStore, run_id: int, **kwargs: bool) -> object:
            if committed:
                real(self, run_id, **kwargs)
            raise RuntimeError("server closed the connection unexpectedly")

        monkeypatch.setattr(ScoreStore, "publish", switch)

    return inject


def at(point: str) -> Callable[[pytest.MonkeyPatch], None]:
    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(publish, "checkpoint", raise_at(point, RuntimeError(f"at {point}")))

    return inject


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "exception after features and scores": at("scored"),
    "exception after the files are written to staging": at("files_written"),
    "exception after the store is staged": at("store_staged"),
    "exception after the summary is written": at("summary_written"),
    "exception between the folder swap and the store switch": at("swapped"),
    "disk full writing scores.csv": disk_full_writing("scores.csv"),
    "disk full writing summary.json": disk_full_writing("summary.json"),
    "disk full writing the journal": disk_full_writing(runs.JOURNAL),
    "the first rename of the swap fails": failing_rename(1),
    "the second rename of the swap fails": failing_rename(2),
    "the store switch fails": store_switch_fails(committed=False),
}


@pytest.mark.parametrize(
    ("fault", "previous"),
    [
        (fault, previous)
        for fault in FAULTS
        for previous in ("new", "rerun")
        if not (fault == "the second rename of the swap fails" and previous == "new")
    ],
)
def test_an_exception_leaves_folder_and_store_on_the_previous_night(
    tables: Tables,
    doubled: Tables,
    scorer: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    previous: str,
) -> None:
    w = world(tables, scorer, previous, tmp_path)
    with monkeypatch.context() as patched:
        FAULTS[fault](patched)
        with pytest.raises(BatchError) as caught:
            run_batch(doubled, AS_OF, scorer, w.out, w.store)
    message = str(caught.value)
    assert "scoring as of 2026-11-01 failed" in message
    assert f"the scores store still serves run {w.run_id} as of {w.night.date()}" in message
    assert_on_night(w, w.night, previous=True)
    assert_tidy(w)
    next_run_completes(w, doubled, scorer)


def test_after_the_store_switch_the_night_stands(
    tables: Tables,
    doubled: Tables,
    scorer: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    previous: str,
) -> None:
    """The switch is the commit: a failure in the clean-up after it does not undo the night."""
    w = world(tables, scorer, previous, tmp_path)
    with monkeypatch.context() as patched:
        full = OSError(errno.ENOSPC, "No space left on device")
        patched.setattr(publish, "checkpoint", raise_at("flipped", full))
        run_batch(doubled, AS_OF, scorer, w.out, w.store)  # published, with a warning
    assert_on_night(w, AS_OF, previous=False)
    assert (w.out / runs.JOURNAL).exists()  # the clean-up the next run finishes
    next_run_completes(w, doubled, scorer)


def test_a_switch_that_reports_failure_after_taking_effect_stands(
    tables: Tables,
    doubled: Tables,
    scorer: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    previous: str,
) -> None:
    """The store is asked again: it switched, so the folder stays and the run succeeds."""
    w = world(tables, scorer, previous, tmp_path)
    with monkeypatch.context() as patched:
        store_switch_fails(committed=True)(patched)
        run_batch(doubled, AS_OF, scorer, w.out, w.store)
    assert_on_night(w, AS_OF, previous=False)
    assert_tidy(w)


def test_a_run_of_another_output_folder_changes_nothing(
    tables: Tables, doubled: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    w = world(tables, scorer, "new", tmp_path)
    with pytest.raises(BatchError, match="serves the runs of") as caught:
        run_batch(doubled, AS_OF, scorer, tmp_path / "elsewhere", w.store)
    assert "still serves run" in str(caught.value)
    assert_on_night(w, w.night, previous=True)
    assert not run_folder(tmp_path / "elsewhere", AS_OF).exists()


# --- kill -9 ------------------------------------------------------------------------------------

DRIVER = """
import sys
from pathlib import Path

import training.registry
from training.model import ModelBundle

bundle = ModelBundle.load(Path(sys.argv[1]))
training.registry.load_bundle = lambda alias="champion": (bundle, "7")
training.registry.configure_tracking = lambda uri: "0"  # killed before MLflow is written to
from vafa.cli.app import run

sys.argv = ["vafa", "score", *sys.argv[2:]]
run()
"""


KILLS = [  # one per kind of state a kill leaves (each process costs seconds of imports)
    ("store_staged", "rerun"),  # a staging folder and rows staged in the store, never served
    ("swapped", "rerun"),  # the folder swapped in, the store not switched
    ("swapped", "new"),
    ("flipped", "rerun"),  # committed: the journal and the old folder left
]


@pytest.fixture(scope="module")
def killed(
    tables: Tables, doubled: Tables, scorer: Scorer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], tuple[World, subprocess.Popen[bytes]]]]:
    """A `vafa score` process per case, started together (each spends its time importing)."""
    kit = tmp_path_factory.mktemp("kill")
    (kit / "driver.py").write_text(DRIVER)
    bundle = scorer.bundle.save(kit / "bundle")
    write_tables(doubled, kit / "data")
    launched = {}
    for point, previous in KILLS:
        root = tmp_path_factory.mktemp(f"killed-{point}-{previous}")
        w = world(tables, scorer, previous, root)
        env = os.environ | {
            publish.KILL_AT_ENV: point,
            "VAFA_STORE_URL": w.store.url,
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        }
        args = ["--data", str(kit / "data"), "--out", str(w.out), "--as-of", str(AS_OF.date())]
        with open(root / "stderr.txt", "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(kit / "driver.py"), str(bundle), *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        launched[(point, previous)] = (w, process)
    yield launched
    for _, process in launched.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow  # a `vafa score` process per case
@pytest.mark.parametrize(("point", "previous"), KILLS)
def test_kill_9_at_a_checkpoint(
    killed: dict[tuple[str, str], tuple[World, subprocess.Popen[bytes]]],
    doubled: Tables,
    scorer: Scorer,
    point: str,
    previous: str,
) -> None:
    """Killed before the store's switch, the previous night stays; after it, the new one.

    Killed between the swap and the switch, the folder is put back by whatever next holds
    the folder's lock (the next run, `vafa store list`).
    """
    w, process = killed[(point, previous)]
    code = process.wait(timeout=600)
    assert code == -signal.SIGKILL, (w.out.parent / "stderr.txt").read_text()[-2000:]
    if point == "swapped":
        # The one window: the folder is in, the store not switched. The journal records it;
        # the next run, or `vafa store list`, settles it before anything else.
        assert json.loads((w.out / runs.JOURNAL).read_text())["commit"]["run_id"] > w.run_id
        assert publish.repair(w.out, w.store)
    if point == "flipped":
        assert_on_night(w, AS_OF, previous=False)
        assert publish.repair(w.out, w.store)
        assert_tidy(w)
    else:
        assert_on_night(w, w.night, previous=True)
    next_run_completes(w, doubled, scorer)
