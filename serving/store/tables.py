"""The store's two tables, its errors and run records, and the queries on runs."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from features.schema import MAX_ID_LENGTH

RUNS_TABLE = "store_runs"
SCORES_TABLE = "store_scores"
LEGACY_TABLES = ("customer_scores", "score_runs")  # one row per customer, before runs were kept
KEEP_PUBLISHED = 3  # the served run and the two a rollback can go back to
STAGED, PUBLISHED, WITHDRAWN = "staged", "published", "withdrawn"

metadata = sa.MetaData()
store_runs = sa.Table(
    RUNS_TABLE,
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("rows_written", sa.Integer, nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("out_dir", sa.Text),
    sa.Column("data_dir", sa.Text),
    sa.Column("written_at", sa.DateTime, nullable=False),
    sa.Column("published_seq", sa.Integer),
    sa.Column("published_at", sa.DateTime),
    sqlite_autoincrement=True,  # a deleted run's id is never given to another
)
store_scores = sa.Table(
    SCORES_TABLE,
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.String(MAX_ID_LENGTH), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("churn_probability", sa.Float),
    sa.Column("clv", sa.Float),
    sa.Column("value_at_risk", sa.Float),
    sa.Column("segment", sa.String(64)),
    sa.Column("recommended_action", sa.String(64)),
    sa.Column("model_version", sa.String(64)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


class StoreError(RuntimeError):
    """The store cannot be reached, opened or written; the message names the URL, no password."""


class StoreDataError(StoreError):
    """The store holds what it cannot read: a payload that is not JSON, a date that is not one."""


class StoreRefused(StoreError):
    """The store refused: it serves another output folder, no such run, nothing to roll back."""


class InvalidCustomerId(StoreError, ValueError):
    """A looked-up id the store cannot hold (a NUL byte): bad input, not a store failure."""


@dataclass(frozen=True)
class StoreRun:
    """One run in the store.

    Attributes:
        run_id: the store's id of the run.
        as_of: the date it scored as of.
        state: "staged" (written, never served), "published" or "withdrawn" (rolled back).
        rows: score rows the store holds for it, counted by the database.
        model_version: the model version(s) that scored it.
        out_dir: the output folder it was published with (None: written without one).
        data_dir: the data folder it scored.
        written_at: when it was staged (UTC).
        published_seq: its place in the order of publications (None: never published).
    """

    run_id: int
    as_of: dt.date
    state: str
    rows: int
    model_version: str | None
    out_dir: str | None
    data_dir: str | None
    written_at: dt.datetime | None
    published_seq: int | None


@dataclass(frozen=True)
class Lookup:
    """Score rows of the ids found in the served run, the ids it does not hold, and its date."""

    found: list[dict[str, object]]
    unknown: list[str]
    as_of: dt.date | None = None


def safe_url(url: str) -> str:
    """The URL with any password masked, for logs and errors."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"


def folder_key(folder: Path | str) -> str:
    """How the store records an output or data folder: its absolute path."""
    return str(Path(folder).expanduser().resolve())


def read_runs(conn: sa.Connection, where: Any) -> list[StoreRun]:
    """Runs matching `where`, oldest first; dates are read as text and checked."""
    text = {name: sa.type_coerce(store_runs.c[name], sa.String) for name in ("as_of", "written_at")}
    query = (
        sa.select(
            store_runs.c.run_id,
            text["as_of"],
            store_runs.c.state,
            store_runs.c.rows_written,
            store_runs.c.model_version,
            store_runs.c.out_dir,
            store_runs.c.data_dir,
            text["written_at"],
            store_runs.c.published_seq,
        )
        .where(where)
        .order_by(store_runs.c.run_id)
    )
    runs = []
    for row in conn.execute(query):
        runs.append(
            StoreRun(
                run_id=row[0],
                as_of=_date(row[1], row[0]),
                state=row[2],
                rows=row[3],
                model_version=row[4],
                out_dir=row[5],
                data_dir=row[6],
                written_at=_stamp(row[7]),
                published_seq=row[8],
            )
        )
    return runs


def served_run(conn: sa.Connection) -> StoreRun | None:
    """The latest published run."""
    runs = store_runs.alias("published")
    latest = (
        sa.select(runs.c.run_id)
        .where(runs.c.state == PUBLISHED)
        .order_by(runs.c.published_seq.desc(), runs.c.run_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    found = read_runs(conn, store_runs.c.run_id == latest)
    return found[0] if found else None


def check_source(conn: sa.Connection, out_dir: str, take_over: bool, url: str) -> None:
    """Refuse a run of `out_dir` when the served run came from another output folder.

    Raises:
        StoreRefused: the folders differ and not `take_over`; the message says why.
    """
    served = served_run(conn)
    if take_over or served is None or served.out_dir in (None, out_dir):
        return
    raise StoreRefused(
        f"scores store {safe_url(url)} serves the runs of {served.out_dir} (run {served.run_id} "
        f"as of {served.as_of}); this run publishes {out_dir}. Publishing it would mix two "
        "output folders in what /lookup serves: use another store (VAFA_STORE_URL), or pass "
        "--take-over-store to serve this folder's runs from now on"
    )


def count_rows(conn: sa.Connection, run_id: int) -> int:
    """The score rows the database holds for a run."""
    query = sa.select(sa.func.count()).where(store_scores.c.run_id == run_id)
    return int(conn.execute(query).scalar_one())


def delete_runs(conn: sa.Connection, run_ids: list[int], *, only_staged: bool = False) -> int:
    """Delete runs and their rows; returns the runs deleted."""
    if not run_ids:
        return 0
    where = store_runs.c.run_id.in_(run_ids)
    if only_staged:
        run_ids = [r.run_id for r in read_runs(conn, sa.and_(where, store_runs.c.state == STAGED))]
        where = store_runs.c.run_id.in_(run_ids)
    conn.execute(store_scores.delete().where(store_scores.c.run_id.in_(run_ids)))
    return int(conn.execute(store_runs.delete().where(where)).rowcount or 0)


def _date(value: Any, run_id: int) -> dt.date:
    """A run's as_of as stored; a value that is no date is the store's fault, named."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise StoreDataError(
            f"the scores store's runs table holds an as_of that is not a date for run {run_id}"
        ) from None


def _stamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime) or value is None:
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None  # shown, never computed with


def payload_row(text: str) -> dict[str, object] | None:
    """A stored score row; None when it is not a JSON object."""
    try:
        row = json.loads(text)
    except (TypeError, ValueError):
        return None
    return row if isinstance(row, dict) else None
