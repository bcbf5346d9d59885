"""The scores store: staged and published runs, the latest published served, rollback and delete."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from serving.store import rows as rows_module
from serving.store.database import ScoreStore
from serving.store.tables import (
    KEEP_PUBLISHED,
    InvalidCustomerId,
    StoreDataError,
    StoreError,
    StoreRefused,
    safe_url,
)


def scores(ids: list[str], as_of: str, churn: float, version: str = "3") -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "as_of": pd.Timestamp(as_of),
            "churn_probability": np.full(n, churn),
            "clv": np.arange(n, dtype=float) * 10,
            "value_at_risk": np.arange(n, dtype=float) * 10 * churn,
            "segment": "loyal",
            "recommended_action": "reminder",
            "reasons": "no purchase for 40 days",
            "expected_next_order": pd.Timestamp("2026-12-01"),
            "model_version": version,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> ScoreStore:
    return ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")


def test_lookup_returns_rows_in_the_order_asked_and_lists_unknown_ids(store: ScoreStore) -> None:
    assert store.ping() is None
    store.upsert(scores(["a", "b", "c"], "2026-11-01", 0.2))
    found = store.lookup(["c", "x", "a", "c"])
    assert [row["customer_id"] for row in found.found] == ["c", "a"]
    assert found.unknown == ["x"]
    assert found.found[0]["reasons"] == "no purchase for 40 days"
    assert found.found[0]["clv"] == 20.0
    assert str(store.ping()) == "2026-11-01"


def test_the_latest_published_run_is_served_whatever_its_date(store: ScoreStore) -> None:
    """A mistyped future date no longer holds the store: the next night is served (23.1)."""
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    store.upsert(scores(["a", "b", "c"], "2031-01-01", 0.9))  # `--as-of 2031-01-01` by mistake
    rows = store.upsert(scores(["a", "b"], "2026-11-02", 0.5, version="4"))
    found = store.lookup(["a", "b", "c"])
    assert [str(r["as_of"])[:10] for r in found.found] == ["2026-11-02", "2026-11-02"]
    assert [r["churn_probability"] for r in found.found] == [0.5, 0.5]
    assert found.unknown == ["c"]  # not in the served run: it is not served from an older one
    assert found.as_of == store.ping() == dt.date(2026, 11, 2)
    # What the upsert reports is what the store serves, not the rows it was handed (24.2).
    assert rows == store.count() == len(found.found) == 2


def test_a_staged_run_is_served_only_once_published(store: ScoreStore, tmp_path: Path) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    staged = store.stage(scores(["a", "b", "c"], "2026-11-02", 0.7), out_dir=tmp_path / "out")
    assert (staged.state, staged.rows, staged.as_of) == ("staged", 3, dt.date(2026, 11, 2))
    assert staged.out_dir == str((tmp_path / "out").resolve())
    assert [r["churn_probability"] for r in store.lookup(["a", "b"]).found] == [0.2, 0.2]
    assert str(store.ping()) == "2026-11-01" and store.count() == 2
    published = store.publish(staged.run_id)
    assert published.state == "published" and store.served() == published
    assert [r["churn_probability"] for r in store.lookup(["a", "c"]).found] == [0.7, 0.7]
    with pytest.raises(StoreRefused, match="is published"):
        store.publish(staged.run_id)
    assert not store.discard(staged.run_id)  # only staged runs are discarded


def test_rerunning_a_date_replaces_it_exactly(store: ScoreStore) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    store.upsert(scores(["a", "b"], "2026-11-01", 0.7))
    assert [r["churn_probability"] for r in store.lookup(["a", "b"]).found] == [0.7, 0.7]
    assert str(store.ping()) == "2026-11-01"


def test_rollback_serves_the_previous_published_run(store: ScoreStore) -> None:
    with pytest.raises(StoreRefused, match="serves no run"):
        store.rollback()
    store.upsert(scores(["a"], "2026-11-01", 0.2))
    with pytest.raises(StoreRefused, match="nothing to roll back to"):
        store.rollback()
    store.upsert(scores(["a"], "2031-01-01", 0.9))
    withdrawn, served = store.rollback()
    assert (withdrawn.as_of, withdrawn.state) == (dt.date(2031, 1, 1), "withdrawn")
    assert served.as_of == dt.date(2026, 11, 1) and store.served() == served
    assert store.lookup(["a"]).found[0]["churn_probability"] == 0.2
    store.upsert(scores(["a"], "2026-11-02", 0.4))  # the next night is served, and
    assert [r.as_of.isoformat() for r in store.runs()] == ["2026-11-01", "2026-11-02"]  # pruned


def test_deleting_the_served_run_serves_the_latest_published_one_left(store: ScoreStore) -> None:
    store.upsert(scores(["a"], "2026-11-01", 0.2))
    store.upsert(scores(["a"], "2031-01-01", 0.9))
    (deleted,) = store.delete(dt.date(2031, 1, 1))
    assert deleted.as_of == dt.date(2031, 1, 1)
    assert store.ping() == dt.date(2026, 11, 1)
    assert store.lookup(["a"]).found[0]["churn_probability"] == 0.2
    with pytest.raises(StoreRefused, match="no published run as of 2031-01-01"):
        store.delete(dt.date(2031, 1, 1))
    staged = store.stage(scores(["a"], "2026-11-02", 0.3))
    with pytest.raises(StoreRefused):  # a run being written is not deleted under its writer
        store.delete(dt.date(2026, 11, 2))
    assert store.state(staged.run_id) == "staged"


def test_the_latest_published_runs_are_kept_for_rollbacks(store: ScoreStore) -> None:
    for day in range(1, 6):
        store.upsert(scores(["a", "b"], f"2026-11-0{day}", day / 10))
    kept = store.runs()
    assert [str(r.as_of) for r in kept] == ["2026-11-03", "2026-11-04", "2026-11-05"]
    assert len(kept) == KEEP_PUBLISHED
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM store_scores")).scalar_one()
    assert stored == 2 * KEEP_PUBLISHED


def test_a_failed_write_leaves_nothing_of_the_run(
    store: ScoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    real = rows_module.json_rows
    monkeypatch.setattr(rows_module, "CHUNK_ROWS", 1)  # the third row fails, two are written
    monkeypatch.setattr(rows_module, "json_rows", lambda frame: [*real(frame)[:2], None])
    with pytest.raises(StoreError, match="writing to scores store") as caught:
        store.upsert(scores(["a", "b", "c"], "2026-11-02", 0.9))
    assert "no purchase" not in str(caught.value)  # no customer data in the message
    assert [r["churn_probability"] for r in store.lookup(["a", "b"]).found] == [0.2, 0.2]
    assert [(str(r.as_of), r.state) for r in store.runs()] == [("2026-11-01", "published")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, r"customer_id is missing in 1 score rows \(rows 1\)"),
        ("x" * 256, r"longer than 255 characters in 1 score rows \(rows 1\)"),
        ("a\x00b", r"NUL byte in 1 score rows \(rows 1\)"),
        ("a", r"repeats an earlier row's in 1 score rows \(rows 1\)"),
    ],
)
def test_ids_the_store_cannot_hold_are_refused_naming_rows(
    store: ScoreStore, bad: str | None, message: str
) -> None:
    frame = scores(["a", "b"], "2026-11-01", 0.2).astype({"customer_id": object})
    frame.loc[1, "customer_id"] = bad
    with pytest.raises(ValueError, match=message):
        store.upsert(frame)
    assert store.runs() == []


def test_nan_scores_are_stored_as_null(store: ScoreStore) -> None:
    frame = scores(["a"], "2026-11-01", 0.2)
    frame["clv"] = np.nan
    store.upsert(frame)
    assert store.lookup(["a"]).found[0]["clv"] is None


def test_one_run_has_one_date(store: ScoreStore) -> None:
    mixed = pd.concat([scores(["a"], "2026-11-01", 0.2), scores(["b"], "2026-11-02", 0.2)])
    with pytest.raises(ValueError, match="one as_of"):
        store.upsert(mixed)


def test_errors_never_show_the_password() -> None:
    assert "secret" not in safe_url("postgresql://vafa:secret@db:5432/vafa")
    with pytest.raises(StoreError) as caught:
        ScoreStore("nosuchdialect://vafa:secret@db/vafa")
    assert "secret" not in str(caught.value)


def test_a_sqlite_store_creates_its_folder(tmp_path: Path) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'not' / 'yet' / 'scores.db'}")
    store.upsert(scores(["a"], "2026-11-01", 0.2))
    assert (tmp_path / "not" / "yet" / "scores.db").exists()


@pytest.mark.parametrize("paramstyle", ["qmark", "named"])  # positional and named drivers
def test_typed_columns_and_payload_survive_the_drivers_bulk_insert(
    tmp_path: Path, paramstyle: str
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    store.engine = sa.create_engine(store.url, paramstyle=paramstyle)
    rows = scores(["a", "b"], "2026-11-01", 0.2)
    rows.loc[1, ["clv", "value_at_risk"]] = [np.nan, np.inf]
    rows["segment"] = pd.Categorical(["loyal", None])
    store.upsert(rows)
    with store.engine.connect() as conn:
        table = sa.Table("store_scores", sa.MetaData(), autoload_with=conn)
        typed = conn.execute(
            sa.select(
                table.c.customer_id, table.c.clv, table.c.value_at_risk, table.c.segment
            ).order_by(table.c.customer_id)
        ).all()
    assert [tuple(r) for r in typed] == [("a", 0.0, 0.0, "loyal"), ("b", None, None, None)]
    found = {r["customer_id"]: r for r in store.lookup(["a", "b"]).found}
    assert found["b"]["clv"] is None and found["b"]["segment"] is None
    assert found["a"]["expected_next_order"].startswith("2026-12-01T00:00:00")
    assert str(store.ping()) == "2026-11-01"


def test_online_records_hold_the_stores_payload_values() -> None:
    """`/score` rows (score_records) and `/lookup` rows (json_rows) agree value for value."""
    from serving.store.rows import json_rows, score_records

    rows = scores(["a", "b", "c"], "2026-11-01", 0.123456789012345)
    rows.loc[1, ["clv", "value_at_risk"]] = [np.nan, -np.inf]
    rows.loc[2, "expected_next_order"] = pd.NaT
    rows["segment"] = pd.Categorical(["loyal", None, "new"])
    rows["discount_eligible"] = [True, False, True]
    rows["action_reason"] = pd.array(["call", None, "mail"], dtype="string")  # pd.NA
    rows["horizon_days"] = np.array([90, 90, 90], dtype=np.int64)
    records = score_records(rows)
    assert records == [json.loads(row) for row in json_rows(rows)]
    assert records[1]["clv"] is None and records[2]["expected_next_order"] is None
    assert records[0]["as_of"] == "2026-11-01T00:00:00.000"
    assert records[0]["churn_probability"] == 0.123456789012345


def test_a_store_serving_another_output_folder_refuses_a_run_of_another(
    store: ScoreStore, tmp_path: Path
) -> None:
    """Scoring another data folder into the same store is refused unless asked (23.10)."""
    demo, shop = tmp_path / "demo" / "scores", tmp_path / "shop" / "scores"
    store.upsert(scores(["a"], "2026-11-01", 0.2), out_dir=shop, data_dir=tmp_path / "shop")
    store.check_source(shop)  # the same folder again is fine
    with pytest.raises(StoreRefused) as caught:
        store.check_source(demo)
    message = str(caught.value)
    assert f"serves the runs of {shop.resolve()}" in message
    assert f"this run publishes {demo.resolve()}" in message and "--take-over-store" in message
    staged = store.stage(scores(["z"], "2026-11-02", 0.9), out_dir=demo)
    with pytest.raises(StoreRefused, match="serves the runs of"):
        store.publish(staged.run_id)
    assert store.lookup(["a"]).found[0]["churn_probability"] == 0.2
    store.publish(staged.run_id, take_over=True)
    served = store.served()
    assert served is not None and served.out_dir == str(demo.resolve())
    assert store.lookup(["z"]).found


def test_a_store_file_replaced_with_mv_is_served_from_the_new_file(tmp_path: Path) -> None:
    """Pooled connections hold the old file; the store notices the new one (24.10)."""
    served = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    served.upsert(scores(["a"], "2026-11-01", 0.2))
    assert served.lookup(["a"]).found[0]["churn_probability"] == 0.2  # a pooled connection
    rebuilt = ScoreStore(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    rebuilt.upsert(scores(["a"], "2026-11-02", 0.6))
    rebuilt.dispose()
    shutil.move(tmp_path / "rebuilt.db", tmp_path / "scores.db")
    found = served.lookup(["a"])
    assert found.as_of == dt.date(2026, 11, 2)
    assert found.found[0]["churn_probability"] == 0.6


def test_a_payload_that_is_not_json_is_a_store_data_error(store: ScoreStore) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE store_scores SET payload = '{broken' WHERE customer_id='b'"))
    with pytest.raises(StoreDataError, match=r"customer_ids\[1\] in run 1 is not a JSON object"):
        store.lookup(["a", "b"])


def test_a_bad_date_in_the_runs_table_is_a_store_data_error(store: ScoreStore) -> None:
    store.upsert(scores(["a"], "2026-11-01", 0.2))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE store_runs SET as_of = '2026-13-45'"))
    for read in (store.ping, store.served, store.runs, lambda: store.lookup(["a"])):
        with pytest.raises(StoreDataError, match="not a date for run 1"):
            read()


def test_a_store_url_under_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreError, match="scores store sqlite:///"):
        ScoreStore(f"sqlite:///{tmp_path / 'a-file' / 'scores.db'}")


def test_a_nul_in_a_lookup_id_is_bad_input(store: ScoreStore) -> None:
    store.upsert(scores(["a"], "2026-11-01", 0.2))
    with pytest.raises(InvalidCustomerId, match=r"customer_ids\[1\] holds a NUL byte") as caught:
        store.lookup(["a", "b\x00"])
    assert isinstance(caught.value, ValueError)


def test_a_store_of_the_old_layout_is_carried_over_as_one_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE customer_scores (customer_id VARCHAR(255) PRIMARY KEY, as_of DATE "
                "NOT NULL, churn_probability FLOAT, clv FLOAT, value_at_risk FLOAT, segment "
                "VARCHAR(64), recommended_action VARCHAR(64), model_version VARCHAR(64), payload "
                "TEXT NOT NULL, updated_at DATETIME NOT NULL)"
            )
        )
        conn.execute(sa.text("CREATE TABLE score_runs (as_of DATE PRIMARY KEY)"))
        conn.execute(
            sa.text(
                "INSERT INTO customer_scores VALUES ('a', '2026-10-31', 0.1, 1, 0.1, 'loyal', "
                "'none', '3', '{\"customer_id\": \"a\"}', '2026-10-31 01:00:00'), ('b', "
                "'2026-11-01', 0.2, 1, 0.2, 'loyal', 'none', '3', '{\"customer_id\": \"b\"}', "
                "'2026-11-01 01:00:00')"
            )
        )
    store = ScoreStore(url)
    (run,) = store.runs()
    assert (run.as_of, run.rows, run.state) == (dt.date(2026, 11, 1), 2, "published")
    assert [r["customer_id"] for r in store.lookup(["a", "b"]).found] == ["a", "b"]
    assert "customer_scores" not in sa.inspect(store.engine).get_table_names()
