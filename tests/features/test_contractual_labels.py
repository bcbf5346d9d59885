"""Contractual churn on hand-made subscription histories: who is a subscriber, who lapses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.build import build_features
from features.labels import (
    CHURN_DEFINITIONS,
    build_labels,
    build_training_set,
    contractual_labels,
    label_days,
)
from features.population import subscriber_mask
from features.schema import Tables
from features.subscriptions import GRACE_DAYS
from tests.factories import frame, ts

T = pd.Timestamp("2024-03-01")  # window of 90 days: [03-01, 05-30); grace 7: terms to 06-06
TERMS = [
    # customer, start, end, plan, cancel_ts, trial
    ("renewed", "2024-01-01", "2024-02-01", "basic", None, False),
    ("renewed", "2024-02-01", "2024-03-01", "basic", None, False),  # ends at T: held at T
    ("renewed", "2024-03-01", "2024-04-01", "basic", None, False),  # starts at T
    ("renewed", "2024-04-01", "2024-05-01", "basic", None, False),
    ("renewed", "2024-05-01", "2024-06-01", "basic", None, False),
    ("gap3", "2024-02-10", "2024-03-10", "basic", None, False),
    ("gap3", "2024-03-13", "2024-04-13", "basic", None, False),  # 3 days late: in the grace
    ("gap3", "2024-04-13", "2024-06-13", "basic", None, False),
    ("lapsed", "2024-02-15", "2024-03-15", "basic", None, False),
    ("lapsed", "2024-03-15", "2024-04-15", "basic", None, False),
    ("upgraded", "2024-02-01", "2024-05-01", "basic", None, False),
    ("upgraded", "2024-03-20", "2024-04-20", "pro", None, False),  # overlaps the old plan
    ("upgraded", "2024-04-20", "2024-07-20", "pro", None, False),
    ("noticed", "2024-02-10", "2024-04-10", "basic", "2024-02-20", False),
    ("annual", "2023-06-01", "2024-06-01", "pro", None, False),
    ("trial", "2024-02-20", "2024-03-05", "pro", None, True),
    ("gone", "2023-10-01", "2024-01-01", "basic", None, False),
    ("addon", "2023-09-01", "2024-09-01", "pro", None, False),
    ("addon", "2024-02-15", "2024-03-15", "seats-pack", None, False),  # add-on lapses
    ("late_gap", "2024-02-27", "2024-05-27", "basic", None, False),
    ("late_gap", "2024-06-02", "2024-09-02", "basic", None, False),  # after T+90, in grace
    ("edge_lapse", "2024-02-27", "2024-05-27", "basic", None, False),
    ("edge_lapse", "2024-06-05", "2024-09-05", "basic", None, False),  # 9 days: past grace
    ("window_end", "2024-02-29", "2024-05-30", "basic", None, False),  # lapses at T + 90
    ("starts_at_t", "2024-03-01", "2024-04-01", "basic", None, False),
]


def subscriptions(rows: list[tuple[str, str, str, str, str | None, bool]]) -> pd.DataFrame:
    who, start, end, plan, cancel, trial = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(who, dtype="str"),
            "start_ts": ts(*start),
            "end_ts": ts(*end),
            "plan": pd.Series(plan, dtype="str"),
            "cancel_ts": pd.Series(pd.to_datetime(list(cancel))).astype("datetime64[us]"),
            "trial": list(trial),
        }
    )


@pytest.fixture
def history() -> Tables:
    transactions = frame(
        customer_id=["renewed", "lapsed", "gone", "shopper"],
        ts=ts("2024-01-01", "2024-02-15", "2023-10-01", "2024-02-01"),
        amount=[10.0, 10.0, 10.0, 50.0],
    )
    return Tables(transactions, subscriptions=subscriptions(TERMS))


WANT = {
    # customer: (churned, lapse date)
    "addon": (0.0, None),
    "annual": (0.0, None),  # its only term ends 06-01, after the window
    "edge_lapse": (1.0, "2024-05-27"),
    "gap3": (0.0, None),
    "lapsed": (1.0, "2024-04-15"),
    "late_gap": (0.0, None),
    "noticed": (1.0, "2024-04-10"),
    "renewed": (0.0, None),
    "trial": (1.0, "2024-03-05"),
    "upgraded": (0.0, None),
    "window_end": (0.0, None),
}


def test_contractual_labels_by_hand(history: Tables) -> None:
    assert history.subscriptions is not None
    got = contractual_labels(history.subscriptions, T, churn_window_days=90)
    want = pd.DataFrame(
        {
            "customer_id": pd.Series(list(WANT), dtype="str"),
            "churned": [c for c, _ in WANT.values()],
            "lapse_ts": pd.Series(pd.to_datetime([d for _, d in WANT.values()])).astype(
                "datetime64[us]"
            ),
        }
    )
    # "gone" ended before T and "starts_at_t" starts at T (unknown then): not subscribers.
    assert_frame_equal(got, want)


def test_a_longer_grace_bridges_a_longer_gap(history: Tables) -> None:
    assert history.subscriptions is not None
    got = contractual_labels(history.subscriptions, T, 90, grace_days=10).set_index("customer_id")
    assert got.loc["edge_lapse", "churned"] == 0.0
    assert got.loc["lapsed", "churned"] == 1.0


def test_terms_after_the_window_and_grace_are_never_read(history: Tables) -> None:
    assert history.subscriptions is not None
    # From T + window + grace (06-06) on, a term cannot bridge a lapse inside the window.
    later = subscriptions(
        [
            ("edge_lapse", "2024-06-06", "2024-07-06", "basic", None, False),
            ("window_end", "2024-06-06", "2024-07-06", "basic", None, False),
        ]
    )
    plus = pd.concat([history.subscriptions, later], ignore_index=True)
    want = contractual_labels(history.subscriptions, T, 90)
    assert_frame_equal(contractual_labels(plus, T, 90), want)
    # A term starting in the grace after the lapse (05-27 + 6 days) bridges it.
    bridging = subscriptions([("edge_lapse", "2024-06-02", "2024-07-02", "basic", None, False)])
    bridged = pd.concat([history.subscriptions, bridging], ignore_index=True)
    got = contractual_labels(bridged, T, 90).set_index("customer_id")
    assert got.loc["edge_lapse", "churned"] == 0.0


def test_build_labels_contractual_population_and_spend(history: Tables) -> None:
    got = build_labels(history, T, 90, 120, definition="contractual").set_index("customer_id")
    # Churn is the subscribers'; spend everyone's the features describe: "gone" and "shopper"
    # bought before T but hold no term, so their churn is unlabelled.
    buyers = build_labels(history, T, None, 120).set_index("customer_id")
    assert list(got.index) == sorted(set(WANT) | set(buyers.index))
    assert got["churned"].dropna().to_dict() == {k: c for k, (c, _) in WANT.items()}
    assert got.loc[got["churned"].isna()].index.difference(buyers.index).empty
    spend = ["future_orders", "future_spend", "future_margin"]
    assert_frame_equal(got.loc[buyers.index, spend], buyers[spend])
    assert (got.loc[list(WANT), spend].drop(index=buyers.index, errors="ignore") == 0.0).all().all()
    inactivity = build_labels(history, T, 90, 120)
    assert sorted(inactivity["customer_id"]) == ["gone", "lapsed", "renewed", "shopper"]


def test_unknown_definition_or_missing_table_is_refused(history: Tables) -> None:
    assert CHURN_DEFINITIONS == ("inactivity", "contractual")
    with pytest.raises(ValueError, match="unknown churn definition 'tenure'"):
        build_labels(history, T, definition="tenure")  # type: ignore[arg-type]
    no_terms = Tables(history.transactions)
    with pytest.raises(ValueError, match="needs a subscriptions table"):
        build_labels(no_terms, T, definition="contractual")
    with pytest.raises(ValueError, match="needs a subscriptions table"):
        build_training_set(no_terms, "2024-07-01", [T], definition="contractual")


def test_training_set_contractual_rows_and_labels(history: Tables) -> None:
    as_of = T + pd.Timedelta(days=label_days("contractual", 90))
    assert label_days("contractual", 90) == 90 + GRACE_DAYS == label_days("inactivity", 97)
    late = T + pd.Timedelta(days=20)  # its window + grace runs past as_of: label left null
    stacked = build_training_set(
        history, as_of, [T, late], churn_window_days=90, horizon_days=90, definition="contractual"
    )
    at_t = stacked[stacked["as_of"] == T].set_index("customer_id")
    buyers = build_labels(history, T, None, 90)["customer_id"]
    assert list(at_t.index) == sorted(set(WANT) | set(buyers))  # subscribers and buyers
    assert at_t["churned"].dropna().to_dict() == {k: c for k, (c, _) in WANT.items()}
    assert np.isnan(stacked.loc[stacked["as_of"] == late, "churned"]).all()
    # A subscriber without a transaction still has features (spend undefined, contract known).
    assert np.isnan(at_t.loc["annual", "spend_total"])
    assert at_t.loc["annual", "days_to_renewal"] == 92.0
    # One day short of the grace (and a longer spend horizon): no complete label at all.
    with pytest.raises(ValueError, match="complete label window"):
        build_training_set(
            history,
            as_of - pd.Timedelta(days=1),
            [T],
            churn_window_days=90,
            horizon_days=365,
            definition="contractual",
        )


def test_training_set_matches_build_labels_at_each_cutoff(history: Tables) -> None:
    cutoffs = [pd.Timestamp("2024-02-20"), T, pd.Timestamp("2024-03-10")]
    as_of = pd.Timestamp("2024-07-01")
    for definition in CHURN_DEFINITIONS:
        stacked = build_training_set(
            history, as_of, cutoffs, churn_window_days=90, horizon_days=100, definition=definition
        )
        for cutoff in cutoffs:
            rows = stacked[stacked["as_of"] == cutoff].reset_index(drop=True)
            want = build_labels(history, cutoff, 90, 100, definition=definition)
            assert_frame_equal(rows[want.columns], want, check_dtype=False)


def test_inactivity_training_set_is_unchanged_by_a_subscriptions_table(history: Tables) -> None:
    plain = Tables(history.transactions)
    as_of = pd.Timestamp("2024-07-01")
    with_terms = build_training_set(history, as_of, [T], churn_window_days=90, horizon_days=90)
    without = build_training_set(plain, as_of, [T], churn_window_days=90, horizon_days=90)
    assert_frame_equal(with_terms[without.columns], without)


def test_the_feature_population_rule_is_the_label_population(history: Tables) -> None:
    assert history.subscriptions is not None
    features = build_features(history, T)
    subscribers = features.loc[subscriber_mask(features), "customer_id"].tolist()
    assert subscribers == contractual_labels(history.subscriptions, T)["customer_id"].tolist()
    # "gone" (a sale, no term at T) and "shopper" are feature rows but not subscribers.
    assert {"gone", "shopper"} <= set(features["customer_id"]) - set(subscribers)
    assert not subscriber_mask(build_features(Tables(history.transactions), T)).any()
