"""Labels and training snapshots on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.labels import (
    LABEL_COLUMNS,
    build_labels,
    build_training_set,
    customer_draws,
    snapshot_cutoffs,
)
from features.schema import Tables
from tests.factories import frame, ts


@pytest.fixture
def history() -> Tables:
    return Tables(
        frame(
            customer_id=["stays", "stays", "leaves", "refunds", "refunds", "late", "late", "new"],
            ts=ts(
                "2024-01-10",
                "2024-02-15",
                "2024-01-05",
                "2024-01-20",
                "2024-02-10",
                "2024-01-02",
                "2024-05-01",
                "2024-02-02",
            ),
            amount=[10.0, 30.0, 8.0, 20.0, -50.0, 5.0, 40.0, 99.0],
            margin=[2.0, None, 1.0, 4.0, -10.0, 1.0, 8.0, 20.0],
        )
    )


def test_labels_by_hand(history: Tables) -> None:
    got = build_labels(
        history, "2024-02-01", churn_window_days=30, horizon_days=120, margin_rate=0.5
    )
    want = pd.DataFrame(
        {
            "customer_id": pd.Series(["late", "leaves", "refunds", "stays"], dtype="str"),
            # late buys again only on 05-01: after the 30-day window, inside the 120-day horizon.
            "churned": [1.0, 1.0, 1.0, 0.0],
            "future_orders": [1.0, 0.0, 0.0, 1.0],
            # refunds: a refund alone is no purchase, and net future spend is floored at 0.
            "future_spend": [40.0, 0.0, 0.0, 30.0],
            # stays: the 02-15 row has no margin, so 30 x 0.5.
            "future_margin": [8.0, 0.0, 0.0, 15.0],
        }
    )
    assert_frame_equal(got, want)  # "new" first buys after as_of: not in the population


def test_window_end_is_exclusive() -> None:
    tables = Tables(
        frame(customer_id=["x", "x"], ts=ts("2024-01-01", "2024-03-01"), amount=[1.0, 1.0])
    )
    # 2024-01-31 + 30 days = 2024-03-01: a purchase exactly at the window end is outside it.
    assert build_labels(tables, "2024-01-31", 30, None)["churned"].tolist() == [1.0]
    assert build_labels(tables, "2024-01-31", 31, None)["churned"].tolist() == [0.0]


def test_cutoffs_end_their_windows_by_as_of() -> None:
    cutoffs = snapshot_cutoffs("2024-12-31", label_days=90, n_snapshots=3, spacing_days=30)
    assert cutoffs == [
        pd.Timestamp("2024-08-03"),
        pd.Timestamp("2024-09-02"),
        pd.Timestamp("2024-10-02"),
    ]
    assert all(c + pd.Timedelta(days=90) <= pd.Timestamp("2024-12-31") for c in cutoffs)


def test_training_set_leaves_unfinished_labels_null(history: Tables) -> None:
    got = build_training_set(
        history, "2024-04-01", ["2024-01-15", "2024-02-01"], churn_window_days=30, horizon_days=60
    )
    assert set(LABEL_COLUMNS) <= set(got.columns)
    jan, feb = got[got["as_of"] == "2024-01-15"], got[got["as_of"] == "2024-02-01"]
    # 01-15 + 60 days < 04-01: complete; 02-01 + 60 days = 04-01: complete (ends on as_of).
    assert jan["future_spend"].notna().all() and feb["future_spend"].notna().all()
    short = build_training_set(
        history, "2024-03-15", ["2024-01-15", "2024-02-01"], churn_window_days=30, horizon_days=60
    )
    late = short[short["as_of"] == "2024-02-01"]
    assert late["churned"].notna().all() and late["future_spend"].isna().all()
    # The 05-01 purchase is after the training date: "late" counts as churned at 02-01 anyway.
    assert short.set_index(["as_of", "customer_id"]).loc[("2024-02-01", "late"), "churned"] == 1.0


def test_training_set_refuses_cutoffs_it_cannot_label(history: Tables) -> None:
    with pytest.raises(ValueError, match="before the training date"):
        build_training_set(history, "2024-02-01", ["2024-02-01"])
    with pytest.raises(ValueError, match="complete label window"):
        build_training_set(
            history, "2024-02-01", ["2024-01-20"], churn_window_days=30, horizon_days=60
        )


def test_snapshot_features_match_features_as_of_the_cutoff(history: Tables) -> None:
    from features.build import build_features

    got = build_training_set(
        history, "2024-04-01", ["2024-02-01"], churn_window_days=30, horizon_days=30
    )
    direct = build_features(history, "2024-02-01")
    assert_frame_equal(got[direct.columns].reset_index(drop=True), direct)
    assert np.all(got["as_of"] == pd.Timestamp("2024-02-01"))


def _one_cutoff_at_a_time(
    tables: Tables, as_of: pd.Timestamp, cutoffs: list[pd.Timestamp], churn: int, horizon: int
) -> pd.DataFrame:
    """The stacked set as it was built before: features and labels per cutoff, concatenated."""
    from features.build import CATEGORICAL_FEATURES, build_features, default_event_types

    past = tables.before(as_of)
    types = default_event_types(past, as_of)
    snapshots = []
    for cutoff in cutoffs:
        features = build_features(past, cutoff, event_types=types)
        labels = build_labels(
            past,
            cutoff,
            churn if cutoff + pd.Timedelta(days=churn) <= as_of else None,
            horizon if cutoff + pd.Timedelta(days=horizon) <= as_of else None,
        )
        snapshot = features.merge(labels, on="customer_id", how="left")
        snapshot = snapshot.reindex(columns=[*features.columns, *LABEL_COLUMNS])
        stamp = pd.Series(cutoff, snapshot.index, name="as_of")
        snapshots.append(pd.concat([stamp, snapshot], axis=1))
    stacked = pd.concat(snapshots, ignore_index=True)
    categorical = [c for c in CATEGORICAL_FEATURES if c in stacked.columns]
    return stacked.astype(
        {c: "float64" for c in LABEL_COLUMNS} | dict.fromkeys(categorical, "category")
    )


@pytest.fixture(scope="module")
def shop() -> Tables:
    from features.synthetic import generate_tables

    return generate_tables(400, seed=3, end="2026-01-01", years=2.0)


SHOP_AS_OF = pd.Timestamp("2026-01-01")
# Training cutoffs of both labels and their validation cutoffs, one spend horizon still open.
SHOP_CUTOFFS = [pd.Timestamp(d) for d in ("2024-11-01", "2025-03-01", "2025-06-15", "2025-10-01")]


def test_the_stacked_build_equals_one_cutoff_at_a_time(shop: Tables) -> None:
    got = build_training_set(shop, SHOP_AS_OF, SHOP_CUTOFFS, churn_window_days=90, horizon_days=180)
    want = _one_cutoff_at_a_time(shop, SHOP_AS_OF, SHOP_CUTOFFS, 90, 180)
    assert got["future_spend"].isna().any() and got["future_spend"].notna().any()
    # Features, churn and orders to the bit; sums of money to rounding (Kahan sums before).
    sums = ["future_spend", "future_margin"]
    assert_frame_equal(got.drop(columns=sums), want.drop(columns=sums), check_exact=True)
    assert_frame_equal(got[sums], want[sums], check_exact=False, rtol=1e-12)


def test_a_snapshot_reads_no_row_at_or_after_its_cutoff_and_labels_only_its_window(
    shop: Tables,
) -> None:
    cutoff, churn, horizon = pd.Timestamp("2025-03-01"), 60, 120
    base = build_training_set(
        shop, SHOP_AS_OF, [cutoff], churn_window_days=churn, horizon_days=horizon
    )
    # Rows at or after the cutoff change, and the window's end is moved: features must not.
    tx = shop.transactions
    later = tx["ts"] >= cutoff
    outside = tx["ts"] >= cutoff + pd.Timedelta(days=horizon)
    scrambled = tx.assign(amount=np.where(later, tx["amount"] * 7 + 3, tx["amount"]))
    moved = build_training_set(
        replace_tables(shop, scrambled),
        SHOP_AS_OF,
        [cutoff],
        churn_window_days=churn,
        horizon_days=horizon,
    )
    features = [c for c in base.columns if c not in LABEL_COLUMNS]
    assert_frame_equal(moved[features], base[features])
    assert not moved["future_spend"].equals(base["future_spend"])  # the window is read
    # Rows after the label windows (still before as_of) change: nothing does.
    beyond = tx.assign(amount=np.where(outside, -tx["amount"] - 1, tx["amount"]))
    assert outside.any()
    assert_frame_equal(
        build_training_set(
            replace_tables(shop, beyond),
            SHOP_AS_OF,
            [cutoff],
            churn_window_days=churn,
            horizon_days=horizon,
        ),
        base,
    )


def replace_tables(tables: Tables, transactions: pd.DataFrame) -> Tables:
    from dataclasses import replace

    return replace(tables, transactions=transactions)


def test_a_sample_keeps_whole_customers_at_the_cutoffs_named(shop: Tables) -> None:
    full = build_training_set(
        shop, SHOP_AS_OF, SHOP_CUTOFFS, churn_window_days=90, horizon_days=180
    )
    sampled_cutoff = SHOP_CUTOFFS[1]
    got = build_training_set(
        shop,
        SHOP_AS_OF,
        SHOP_CUTOFFS,
        churn_window_days=90,
        horizon_days=180,
        sample={sampled_cutoff: 0.3},
        seed=5,
    )
    draws = dict(zip(full["customer_id"], customer_draws(full["customer_id"], 5), strict=False))
    at = full["as_of"] == sampled_cutoff
    kept = full[~at | full["customer_id"].map(draws).lt(0.3)].reset_index(drop=True)
    assert 0.15 < (got["as_of"] == sampled_cutoff).sum() / at.sum() < 0.45
    assert_frame_equal(got, kept.astype(got.dtypes.to_dict()))


def test_customer_draws_are_seeded_hashes_of_the_id() -> None:
    ids = pd.Series([f"C{i}" for i in range(20_000)], dtype="str")
    draws = customer_draws(ids, 1)
    assert np.array_equal(draws, customer_draws(ids.iloc[::-1], 1)[::-1])  # not row order
    assert np.array_equal(draws[:3], customer_draws(ids[:3].astype(object), 1))
    assert not np.array_equal(draws, customer_draws(ids, 2))
    assert ((draws >= 0) & (draws < 1)).all() and abs(draws.mean() - 0.5) < 0.01


def test_a_sample_share_must_be_a_share(shop: Tables) -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        build_training_set(shop, SHOP_AS_OF, SHOP_CUTOFFS[:1], sample={SHOP_CUTOFFS[0]: 0.0})


def test_float32_features_halve_the_memory_and_keep_the_values(shop: Tables) -> None:
    wide = build_training_set(shop, SHOP_AS_OF, SHOP_CUTOFFS, horizon_days=180)
    lean = build_training_set(
        shop, SHOP_AS_OF, SHOP_CUTOFFS, horizon_days=180, feature_dtype=np.float32
    )
    numbers = [c for c in wide.columns if wide[c].dtype == np.float64 and c not in LABEL_COLUMNS]
    assert (lean[numbers].dtypes == np.float32).all()
    assert lean[list(LABEL_COLUMNS)].dtypes.eq(np.float64).all()  # targets keep their precision
    assert_frame_equal(lean, wide.astype(dict.fromkeys(numbers, np.float32)))


def test_the_tables_are_encoded_once_for_every_cutoff(
    shop: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.build

    encoded: list[str] = []
    encode = features.build._encode

    def counting(frame: pd.DataFrame, *args: object, **kwargs: object) -> object:
        encoded.append(",".join(frame.columns))
        return encode(frame, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(features.build, "_encode", counting)
    build_training_set(shop, SHOP_AS_OF, SHOP_CUTOFFS, churn_window_days=90, horizon_days=180)
    assert len(SHOP_CUTOFFS) > 1 and len(encoded) == 3  # transactions, events, customers
