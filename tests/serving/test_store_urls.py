"""The scores store takes the two databases its upsert is written for, and refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.store.database import ScoreStore
from serving.store.tables import StoreError


def test_sqlite_urls_open(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite+pysqlite:///{tmp_path / 'b.db'}"):
        store = ScoreStore(url)
        assert store.count() == 0
        store.dispose()


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://vafa@127.0.0.1:1/scores", "postgresql://vafa@127.0.0.1:1/scores"]
)
def test_postgresql_through_psycopg_needs_no_other_install(url: str) -> None:
    """The documented PostgreSQL URL builds its engine: psycopg 3 is a dependency."""
    store = ScoreStore(url, create=False)  # nothing listens on port 1: no connection made
    assert store.engine.dialect.name == "postgresql"
    assert store.engine.dialect.driver == "psycopg"
    store.dispose()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://vafa:secret@db/scores", "mysql"),
        ("postgresql+psycopg2://vafa:secret@db/scores", "postgresql+psycopg2"),
        ("oracle+oracledb://vafa:secret@db/scores", "oracle+oracledb"),
        ("mssql+pyodbc://vafa:secret@db/scores", "mssql+pyodbc"),
        ("nosuchdb://db/scores", "nosuchdb"),
        ("scores.db", "not a database URL"),
    ],
)
def test_other_urls_are_refused_at_once_naming_what_works(url: str, named: str) -> None:
    with pytest.raises(StoreError) as caught:
        ScoreStore(url, create=False)
    message = str(caught.value)
    assert named in message
    assert "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB" in message
    assert "secret" not in message
