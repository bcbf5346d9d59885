"""Labels and training snapshots on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.labels import LABEL_COLUMNS, build_labels, build_training_set, snapshot_cutoffs
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
