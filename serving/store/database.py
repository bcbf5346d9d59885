"""`ScoreStore`: stage a night, publish it, read the served run, roll back or delete runs."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.store.rows import check_ids, driver_columns, one_date
from serving.store.tables import (
    KEEP_PUBLISHED,
    LEGACY_TABLES,
    PUBLISHED,
    STAGED,
    WITHDRAWN,
    InvalidCustomerId,
    Lookup,
    StoreDataError,
    StoreError,
    StoreRefused,
    StoreRun,
    check_source,
    count_rows,
    delete_runs,
    folder_key,
    metadata,
    payload_row,
    read_runs,
    safe_url,
    served_run,
    store_runs,
    store_scores,
)

log = logging.getLogger(__name__)

SUPPORTED = (("sqlite", "pysqlite"), ("postgresql", "psycopg"))
SUPPORTED_URLS = "SQLite and PostgreSQL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


class ScoreStore:
    """Runs of scores in a SQL database, one of them served."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self._file = _supported(url)
        try:
            if self._file is not None:
                self._file.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        except (sa.exc.ArgumentError, ImportError, OSError) as exc:
            raise StoreError(f"scores store {safe_url(url)}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._identity = _file_identity(self._file)
        if create:
            with self._connection("creating", write=True) as conn:
                metadata.create_all(conn)
            self._migrate_legacy()

    # --- reading ---------------------------------------------------------------------------

    def ping(self) -> dt.date | None:
        """Check the store answers; returns the date of the run it serves, if any."""
        served = self.served()
        return None if served is None else served.as_of

    def served(self) -> StoreRun | None:
        """The run `/lookup` serves: the latest published one."""
        with self._connection("reading") as conn:
            return served_run(conn)

    def runs(self) -> list[StoreRun]:
        """Every run the store keeps, oldest first."""
        with self._connection("reading") as conn:
            return read_runs(conn, sa.true())

    def lookup(self, customer_ids: Sequence[str]) -> Lookup:
        """The served run's rows of these customers, in the order asked; unknown ids listed.

        Raises:
            InvalidCustomerId: an id holds a NUL byte.
            StoreDataError: a row's payload is not a JSON object, or the runs table is broken.
            StoreError: the store cannot be read.
        """
        bad = [at for at, cid in enumerate(customer_ids) if "\x00" in cid]
        if bad:
            raise InvalidCustomerId(f"customer_ids[{bad[0]}] holds a NUL byte")
        wanted = list(dict.fromkeys(customer_ids))
        found: dict[str, dict[str, object]] = {}
        with self._connection("reading") as conn:
            run = served_run(conn)
            if run is None:
                return Lookup([], wanted, None)
            for start in range(0, len(wanted), 500):
                query = sa.select(store_scores.c.customer_id, store_scores.c.payload).where(
                    store_scores.c.run_id == run.run_id,
                    store_scores.c.customer_id.in_(wanted[start : start + 500]),
                )
                for cid, payload in conn.execute(query):
                    row = payload_row(payload)
                    if row is None:
                        raise StoreDataError(
                            f"the scores store's row for customer_ids[{wanted.index(cid)}] in "
                            f"run {run.run_id} is not a JSON object"
                        )
                    found[cid] = row
        return Lookup(
            found=[found[c] for c in wanted if c in found],
            unknown=[c for c in wanted if c not in found],
            as_of=run.as_of,
        )

    def count(self) -> int:
        """Customers in the served run."""
        with self._connection("reading") as conn:
            run = served_run(conn)
            return 0 if run is None else count_rows(conn, run.run_id)

    def state(self, run_id: int) -> str | None:
        """A run's state; None when the store does not hold it (any more)."""
        with self._connection("reading") as conn:
            found = read_runs(conn, store_runs.c.run_id == run_id)
        return found[0].state if found else None

    def check_source(self, out_dir: Path | str, *, take_over: bool = False) -> None:
        """Refuse early a run of `out_dir` when the store serves another folder's runs.

        Raises:
            StoreRefused: the served run came from another output folder and not `take_over`.
        """
        with self._connection("reading") as conn:
            check_source(conn, folder_key(out_dir), take_over, self.url)

    # --- writing a night ---------------------------------------------------------------------

    def stage(
        self,
        scores: pd.DataFrame,
        *,
        out_dir: Path | str | None = None,
        data_dir: Path | str | None = None,
    ) -> StoreRun:
        """Write one run's scores under a new run id, in one transaction, not yet served.

        Returns:
            The staged run; its `rows` are what the database holds for it, counted.

        Raises:
            ValueError: the rows are not one run (no rows, several dates, bad ids).
            StoreError: the write failed; nothing of the run is left.
        """
        run_date = one_date(scores)
        check_ids(scores["customer_id"])
        dialect = self.engine.dialect
        now = _utc_now()
        versions = ",".join(sorted(str(v) for v in scores["model_version"].unique()))
        compiled = store_scores.insert().compile(dialect=dialect)
        # The driver's executemany on plain rows: SQLAlchemy's per-row parameter handling
        # cost more than the database's own work on a million customers.
        names = list(compiled.positiontup or []) if dialect.positional else None
        with self._connection("writing to", write=True) as conn:
            run_id = _new_run(
                conn,
                as_of=run_date,
                state=STAGED,
                rows_written=0,
                model_version=versions[:64],
                out_dir=None if out_dir is None else folder_key(out_dir),
                data_dir=None if data_dir is None else folder_key(data_dir),
                written_at=now,
            )
            for columns in driver_columns(scores, run_id, run_date, now, dialect):
                if names is None:  # a driver with named parameters
                    keys = list(columns)
                    values = zip(*columns.values(), strict=True)
                    rows: list[Any] = [dict(zip(keys, v, strict=True)) for v in values]
                else:
                    rows = list(zip(*(columns[name] for name in names), strict=True))
                conn.exec_driver_sql(str(compiled), rows)
            written = count_rows(conn, run_id)
            if written != len(scores):
                raise StoreError(
                    f"scores store {safe_url(self.url)} holds {written} rows of the run's "
                    f"{len(scores)}: nothing of it was kept"
                )
            conn.execute(
                store_runs.update()
                .where(store_runs.c.run_id == run_id)
                .values(rows_written=written)
            )
            (run,) = read_runs(conn, store_runs.c.run_id == run_id)
        return run

    def publish(self, run_id: int, *, take_over: bool = False) -> StoreRun:
        """Serve a staged run: one statement; `/lookup` sees the old run or the new, whole.

        Raises:
            StoreRefused: the run is not staged, or the store serves another output folder's
                runs and not `take_over`.
            StoreError: the store cannot be written.
        """
        earlier = store_runs.alias("earlier")
        next_seq = sa.select(
            sa.func.coalesce(sa.func.max(earlier.c.published_seq), 0) + 1
        ).scalar_subquery()
        with self._connection("publishing to", write=True) as conn:
            found = read_runs(conn, store_runs.c.run_id == run_id)
            if not found or found[0].state != STAGED:
                state = found[0].state if found else "not in the store"
                raise StoreRefused(f"run {run_id} cannot be published: it is {state}")
            if found[0].out_dir is not None:
                check_source(conn, found[0].out_dir, take_over, self.url)
            conn.execute(
                store_runs.update()
                .where(store_runs.c.run_id == run_id, store_runs.c.state == STAGED)
                .values(state=PUBLISHED, published_seq=next_seq, published_at=_utc_now())
            )
            (run,) = read_runs(conn, store_runs.c.run_id == run_id)
        return run

    def discard(self, run_id: int) -> bool:
        """Remove a staged run (a run that failed before publishing); True when one was."""
        with self._connection("writing to", write=True) as conn:
            return bool(delete_runs(conn, [run_id], only_staged=True))

    def discard_staged(self, out_dir: Path | str) -> list[StoreRun]:
        """Remove the staged runs of an output folder: a dead run's, when its lock is held."""
        with self._connection("writing to", write=True) as conn:
            staged = read_runs(
                conn,
                sa.and_(store_runs.c.state == STAGED, store_runs.c.out_dir == folder_key(out_dir)),
            )
            delete_runs(conn, [r.run_id for r in staged], only_staged=True)
        return staged

    def prune(self, keep: int = KEEP_PUBLISHED) -> list[StoreRun]:
        """Drop withdrawn runs and published ones beyond the latest `keep`; returns them."""
        with self._connection("writing to", write=True) as conn:
            runs = read_runs(conn, store_runs.c.state != STAGED)
            published = sorted(
                (r for r in runs if r.state == PUBLISHED),
                key=lambda r: (r.published_seq or 0, r.run_id),
                reverse=True,
            )
            dropped = [r for r in runs if r.state == WITHDRAWN] + published[keep:]
            delete_runs(conn, [r.run_id for r in dropped])
        return dropped

    def upsert(
        self,
        scores: pd.DataFrame,
        *,
        out_dir: Path | str | None = None,
        data_dir: Path | str | None = None,
        take_over: bool = False,
    ) -> int:
        """Stage and publish one run in one go (no run folder to swap with it).

        Returns:
            The rows the store holds for the run (0 for no rows: nothing is written).
        """
        if scores.empty:
            return 0
        run = self.stage(scores, out_dir=out_dir, data_dir=data_dir)
        try:
            self.publish(run.run_id, take_over=take_over)
        except BaseException:
            self.discard(run.run_id)
            raise
        self.prune()
        return run.rows

    # --- operating ---------------------------------------------------------------------------

    def rollback(self) -> tuple[StoreRun, StoreRun]:
        """Withdraw the served run; the previous published run is served again.

        Returns:
            The withdrawn run and the run now served.

        Raises:
            StoreRefused: no run is served, or none was published before it.
        """
        with self._connection("writing to", write=True) as conn:
            published = sorted(
                read_runs(conn, store_runs.c.state == PUBLISHED),
                key=lambda r: (r.published_seq or 0, r.run_id),
                reverse=True,
            )
            if not published:
                raise StoreRefused("the store serves no run: nothing to roll back")
            if len(published) < 2:
                served = published[0]
                raise StoreRefused(
                    f"nothing to roll back to: run {served.run_id} as of {served.as_of} is the "
                    "only published run the store keeps"
                )
            conn.execute(
                store_runs.update()
                .where(store_runs.c.run_id == published[0].run_id)
                .values(state=WITHDRAWN)
            )
            (withdrawn,) = read_runs(conn, store_runs.c.run_id == published[0].run_id)
        return withdrawn, published[1]

    def delete(self, as_of: dt.date) -> list[StoreRun]:
        """Delete the published and withdrawn runs as of a date (staged ones are being written).

        Returns:
            The deleted runs; when one was served, the latest published run left is served.

        Raises:
            StoreRefused: the store keeps no such run.
        """
        with self._connection("writing to", write=True) as conn:
            runs = read_runs(
                conn, sa.and_(store_runs.c.as_of == as_of, store_runs.c.state != STAGED)
            )
            if not runs:
                raise StoreRefused(f"the store keeps no published run as of {as_of}")
            delete_runs(conn, [r.run_id for r in runs])
        return runs

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # --- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _connection(self, doing: str, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection (a transaction when writing); database errors become StoreError."""
        self._follow_file()
        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
            if write and self._file is not None:
                self._empty_wal()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{doing} scores store {safe_url(self.url)}: {_cause(exc)}") from exc

    def _follow_file(self) -> None:
        """Reopen a SQLite store whose file was replaced (`mv new.db scores.db`) or removed.

        Pooled connections hold the file they opened; one stat per call notices a new one.
        """
        if self._file is None:
            return
        identity = _file_identity(self._file)
        if identity != self._identity:
            if self._identity is not None:
                log.info("scores store file %s was replaced: reopening it", self._file)
            self.engine.dispose()
            self._identity = identity

    def _empty_wal(self) -> None:
        """Checkpoint the write-ahead log into the file and empty it, after every write.

        At rest the file then holds everything: a copy of it is whole, and a file moved over
        it is never read through the old file's log (SQLite pairs a log with a file by name).
        """
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _migrate_legacy(self) -> None:
        """Carry a store of the one-row-per-customer layout over as one published run."""
        names = set(sa.inspect(self.engine).get_table_names())
        if LEGACY_TABLES[0] not in names:
            return
        with self._connection("migrating", write=True) as conn:
            if read_runs(conn, sa.true()):
                return  # runs already written in this layout: the old table is left alone
            legacy = sa.Table(LEGACY_TABLES[0], sa.MetaData(), autoload_with=conn)
            query = sa.select(sa.func.count(), sa.func.max(legacy.c.as_of))
            rows, as_of = conn.execute(query).one()
            if rows:
                now = _utc_now()
                run_id = _new_run(
                    conn,
                    as_of=as_of,
                    state=PUBLISHED,
                    rows_written=rows,
                    model_version="migrated",
                    written_at=now,
                    published_seq=1,
                    published_at=now,
                )
                copied = [c.name for c in store_scores.columns if c.name != "run_id"]
                conn.execute(
                    store_scores.insert().from_select(
                        ["run_id", *copied],
                        sa.select(sa.literal(run_id), *(legacy.c[name] for name in copied)),
                    )
                )
            for name in LEGACY_TABLES:
                if name in names:
                    conn.execute(sa.text(f"DROP TABLE {name}"))
        log.warning(
            "scores store %s: its %d rows of the old layout are now run 1", safe_url(self.url), rows
        )


def _new_run(conn: sa.Connection, **values: Any) -> int:
    """Insert a run; its new id."""
    key = conn.execute(store_runs.insert().values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _supported(url: str) -> Path | None:
    """Refuse a URL of a database the store is not written for; the SQLite file, if one.

    Raises:
        StoreError: not a URL, or not SQLite (pysqlite) or PostgreSQL (psycopg 3).
    """
    try:
        parsed = sa.make_url(url)
        named = parsed.drivername
        driver = (parsed.get_backend_name(), parsed.get_driver_name())
    except sa.exc.ArgumentError:
        named, driver = "not a database URL", None
    except sa.exc.NoSuchModuleError:
        driver = None
    if driver not in SUPPORTED:
        raise StoreError(
            f"scores store {safe_url(url)}: {named} is not supported; the store is written "
            f"for {SUPPORTED_URLS}"
        )
    if driver[0] == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    try:
        found = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if found is None else (found.st_dev, found.st_ino)


def _cause(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message: no SQL text, no parameters (they hold customer data)."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
