"""The scores store: each customer's latest nightly score row, for the online `/lookup`.

The nightly batch upserts into it; the service reads it. One table keyed by `customer_id` holds
the latest row per customer: the columns a database user filters on (as_of, churn probability,
CLV, value at risk, segment, action, model version) typed, and the whole score row as JSON, so
columns the scorer adds later need no migration. A second table records each run.

Any SQLAlchemy URL works (PostgreSQL in production); SQLite is the default and runs in WAL mode
so the service reads while the batch writes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

TABLE = "customer_scores"
RUNS_TABLE = "score_runs"
CHUNK_ROWS = 20_000

metadata = sa.MetaData()
customer_scores = sa.Table(
    TABLE,
    metadata,
    sa.Column("customer_id", sa.String(255), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False, index=True),
    sa.Column("churn_probability", sa.Float),
    sa.Column("clv", sa.Float),
    sa.Column("value_at_risk", sa.Float),
    sa.Column("segment", sa.String(64)),
    sa.Column("recommended_action", sa.String(64)),
    sa.Column("model_version", sa.String(64)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
score_runs = sa.Table(
    RUNS_TABLE,
    metadata,
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("customers", sa.Integer, nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("written_at", sa.DateTime, nullable=False),
)
TYPED = ("churn_probability", "clv", "value_at_risk", "segment", "recommended_action")


class StoreError(RuntimeError):
    """The store cannot be reached or written; the message names the URL without credentials."""


@dataclass(frozen=True)
class Lookup:
    """Latest score rows of the ids found, and the ids the store has never scored."""

    found: list[dict[str, object]]
    unknown: list[str]


def safe_url(url: str) -> str:
    """The URL with any password masked, for logs and errors."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"


class ScoreStore:
    """Latest scores per customer in a SQL database."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        try:
            _make_sqlite_folder(url)
            self.engine: Engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"scores store {safe_url(url)}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if create:
            try:
                metadata.create_all(self.engine)
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(
                    f"scores store {safe_url(url)} unreachable: {_cause(exc)}"
                ) from exc

    def ping(self) -> dt.date | None:
        """Check the store answers; returns the date of the latest run written, if any."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(sa.func.max(score_runs.c.as_of))).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"scores store {safe_url(self.url)} unreachable: {_cause(exc)}"
            ) from exc

    def upsert(self, scores: pd.DataFrame) -> int:
        """Write one run's scores in one transaction; returns the rows written.

        A customer's row is replaced only by a run as of the same date or later, so re-running
        an old date never overwrites a newer score, and re-running a date replaces it exactly.
        Either every row lands or none does.
        """
        if scores.empty:
            return 0
        as_of = {pd.Timestamp(v).date() for v in scores["as_of"].unique()}
        if len(as_of) != 1:
            raise ValueError(f"one run has one as_of; got {sorted(as_of)}")
        (run_date,) = as_of
        versions = sorted(str(v) for v in scores["model_version"].unique())
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        dialect = self.engine.dialect
        compiled = _upsert_statement(dialect.name).compile(dialect=dialect)
        # The driver's executemany on plain rows: SQLAlchemy's per-row parameter handling
        # cost more than the database's own work on a million customers.
        names = list(compiled.positiontup or []) if dialect.positional else None
        try:
            with self.engine.begin() as conn:
                for columns in _records(scores, run_date, now, dialect):
                    if names is None:  # a driver with named parameters
                        keys = list(columns)
                        values = zip(*columns.values(), strict=True)
                        rows: list[Any] = [dict(zip(keys, v, strict=True)) for v in values]
                    else:
                        rows = list(zip(*(columns[name] for name in names), strict=True))
                    conn.exec_driver_sql(str(compiled), rows)
                conn.execute(score_runs.delete().where(score_runs.c.as_of == run_date))
                conn.execute(
                    score_runs.insert(),
                    {
                        "as_of": run_date,
                        "customers": len(scores),
                        "model_version": ",".join(versions),
                        "written_at": now,
                    },
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"writing to scores store {safe_url(self.url)}: {_cause(exc)}"
            ) from exc
        return len(scores)

    def lookup(self, customer_ids: Sequence[str]) -> Lookup:
        """The latest score rows of these customers, in the order asked; unknown ids listed."""
        wanted = list(dict.fromkeys(customer_ids))
        found: dict[str, dict[str, object]] = {}
        try:
            with self.engine.connect() as conn:
                for start in range(0, len(wanted), 500):
                    part = wanted[start : start + 500]
                    query = sa.select(customer_scores.c.customer_id, customer_scores.c.payload)
                    for cid, payload in conn.execute(
                        query.where(customer_scores.c.customer_id.in_(part))
                    ):
                        found[cid] = json.loads(payload)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"scores store {safe_url(self.url)} unreachable: {_cause(exc)}"
            ) from exc
        return Lookup(
            found=[found[c] for c in wanted if c in found],
            unknown=[c for c in wanted if c not in found],
        )

    def count(self) -> int:
        """Customers in the store."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(customer_scores)).scalar_one()
            )

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _make_sqlite_folder(url: str) -> None:
    """SQLite creates the database file but not its folder (`store/` in a fresh checkout)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _cause(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message: no SQL text, no parameters (they hold customer data)."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _upsert_statement(dialect: str) -> sa.Insert:
    """INSERT ... ON CONFLICT DO UPDATE where the row is not newer than the incoming one."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise StoreError(
            f"scores store: upsert is written for SQLite and PostgreSQL, not {dialect}"
        )
    statement = insert(customer_scores)
    excluded = statement.excluded
    updated = {c.name: excluded[c.name] for c in customer_scores.columns if not c.primary_key}
    return statement.on_conflict_do_update(
        index_elements=[customer_scores.c.customer_id],
        set_=updated,
        where=customer_scores.c.as_of <= excluded.as_of,
    )


def _records(
    scores: pd.DataFrame, run_date: dt.date, now: dt.datetime, dialect: sa.Dialect
) -> Iterator[dict[str, list[Any]]]:
    """The table's columns, in chunks of rows, as values the database driver takes.

    The payload is the score row as `json_rows` writes it (Polars: pandas' `to_json` took a
    third of a million-customer upsert).
    """
    payloads = json_rows(scores)
    constant = {"as_of": run_date, "updated_at": now}
    for name, value in constant.items():
        process = customer_scores.c[name].type.bind_processor(dialect)
        constant[name] = process(value) if process else value
    for start in range(0, len(scores), CHUNK_ROWS):
        part = scores.iloc[start : start + CHUNK_ROWS]
        n = len(part)
        columns: dict[str, list[Any]] = {
            "customer_id": part["customer_id"].astype(str).tolist(),
            "as_of": [constant["as_of"]] * n,
        }
        for name in TYPED:
            columns[name] = _plain(part[name]) if name in part else [None] * n
        columns["model_version"] = part["model_version"].astype(str).tolist()
        columns["payload"] = payloads[start : start + CHUNK_ROWS]
        columns["updated_at"] = [constant["updated_at"]] * n
        yield columns


def json_rows(scores: pd.DataFrame) -> list[str]:
    """Each score row as a JSON object: dates as ISO text, NaN and infinities as null.

    The store's payload, so what `/lookup` returns; `score_records` gives `/score` the same
    values without Polars' fixed cost per call.
    """
    frame = pl.from_pandas(scores)
    frame = frame.with_columns(
        [
            pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.3f")
            for name, dtype in frame.schema.items()
            if dtype.is_temporal()
        ]
        + [
            pl.when(pl.col(name).is_finite()).then(pl.col(name)).alias(name)
            for name, dtype in frame.schema.items()
            if dtype.is_float()
        ]
    )
    return frame.write_ndjson().splitlines()


def score_records(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each score row as the dict `json_rows` encodes, for a few rows (an online request).

    Polars' fixed cost per call is milliseconds, the whole budget of a one-customer request;
    a test holds the two to the same values. Takes a frame or the scorer's dict of columns.
    """
    columns: dict[str, list[Any]] = {}
    for name, values in scores.items():
        dtype = values.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            stamps = np.asarray(values, dtype="datetime64[ms]")
            text = np.datetime_as_string(stamps, unit="ms").tolist()
            columns[name] = [None if t == "NaT" else t for t in text]
        elif pd.api.types.is_float_dtype(dtype):
            columns[name] = _plain(values)
        else:
            plain = np.asarray(values, dtype=object).tolist()
            columns[name] = [None if _missing(v) else v for v in plain]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _missing(value: object) -> bool:
    """Null in a score row: None, pandas' missing markers, NaN and the infinities."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and not math.isfinite(value)


def _plain(column: Any) -> list[Any]:
    """Python values the driver takes: floats and text, None for NaN or a missing value."""
    if pd.api.types.is_float_dtype(column.dtype):
        values = np.asarray(column, dtype=np.float64)
        out: list[Any] = values.tolist()
        for at in np.flatnonzero(~np.isfinite(values)).tolist():
            out[at] = None
        return out
    return [None if _missing(v) else str(v) for v in column.astype(object).tolist()]
