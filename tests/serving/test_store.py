"""The scores store: upserts that keep the newest row, exact re-runs, all-or-nothing writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from serving.store import ScoreStore, StoreError, safe_url


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


def test_a_later_run_replaces_and_an_earlier_one_never_does(store: ScoreStore) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    store.upsert(scores(["b", "c"], "2026-11-02", 0.5, version="4"))
    store.upsert(scores(["a", "b", "c"], "2026-10-31", 0.9))  # an old date re-run late
    rows = {row["customer_id"]: row for row in store.lookup(["a", "b", "c"]).found}
    assert rows["a"]["churn_probability"] == 0.2  # 11-01 beats 10-31
    assert rows["b"]["churn_probability"] == 0.5 and rows["b"]["model_version"] == "4"
    assert rows["c"]["as_of"].startswith("2026-11-02")
    assert store.count() == 3


def test_rerunning_a_date_replaces_it_exactly(store: ScoreStore) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    store.upsert(scores(["a", "b"], "2026-11-01", 0.7))
    assert [r["churn_probability"] for r in store.lookup(["a", "b"]).found] == [0.7, 0.7]
    assert str(store.ping()) == "2026-11-01"


def test_a_failed_write_leaves_the_previous_scores(store: ScoreStore) -> None:
    store.upsert(scores(["a", "b"], "2026-11-01", 0.2))
    broken = scores(["a", "b", "c"], "2026-11-02", 0.9)
    broken.loc[2, "customer_id"] = None  # violates NOT NULL half-way through the run
    broken["customer_id"] = broken["customer_id"].astype(object)
    with pytest.raises(StoreError, match="writing to scores store") as caught:
        store.upsert(broken.where(broken.notna(), None))
    assert "no purchase" not in str(caught.value)  # no customer data in the message
    assert [r["churn_probability"] for r in store.lookup(["a", "b"]).found] == [0.2, 0.2]
    assert str(store.ping()) == "2026-11-01"


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
        table = sa.Table("customer_scores", sa.MetaData(), autoload_with=conn)
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
    from serving.store import json_rows, score_records

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
