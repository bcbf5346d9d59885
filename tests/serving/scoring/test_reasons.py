"""Reasons: they are the model's own largest contributions, told in the customer's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.scoring.reasons import ReasonModel
from serving.scoring.scorer import Scorer
from tests.serving.scoring.conftest import COLUMNS
from training.model import ModelBundle


def customers() -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "customer_id": ["lapsed", "ticket", "happy"],
            "recency_days": [124.0, 5.0, 3.0],
            "overdue_ratio": [3.1, 0.2, 0.1],
            "unresolved_tickets": [0.0, 2.0, 0.0],
            "nps_last": [8.0, 3.0, 10.0],
            "content_view_total": [0.0, 1.0, 4.0],
            "spend_90d": [0.0, 80.0, 300.0],
            "wishlist_add_total": [0.0, 1.0, 2.0],
            "days_since_wishlist_add": [np.nan, 12.0, 3.0],
            "tenure_days": [400.0, 300.0, 800.0],
            "n_orders": [4.0, 6.0, 20.0],
            "gap_mean_days": [40.0, 25.0, 30.0],
        }
    )
    return rows


def test_reasons_follow_the_largest_contributions(bundle: ModelBundle) -> None:
    rows = customers()
    scorer = Scorer(bundle, "7")
    contributions, families = scorer.explain(rows)
    expected = ReasonModel.for_columns(COLUMNS)
    # Independently: sum each row's TreeSHAP values by family and rank them.
    raw = bundle.churn.predict(rows[COLUMNS], pred_contrib=True)
    np.testing.assert_allclose(contributions, raw)
    by_family = {
        f: raw[
            :,
            [
                i
                for i, c in enumerate(COLUMNS)
                if expected.families[int(np.argmax(expected.indicator[i]))] == f
            ],
        ].sum(axis=1)
        for f in expected.families
    }
    for i in range(len(rows)):
        positive = sorted(((v[i], f) for f, v in by_family.items() if v[i] > 0), reverse=True)
        assert families[i] == [f for _, f in positive[:3]]
    assert families[0][0] == "recency" and families[1][0] == "tickets"


def test_reason_sentences_use_the_customers_numbers(bundle: ModelBundle) -> None:
    scores = Scorer(bundle, "7").score(customers(), pd.Timestamp("2026-01-01"), reasons="all")
    lapsed, ticket = scores["reasons"].iloc[0], scores["reasons"].iloc[1]
    assert lapsed.startswith("no purchase for 124 days, about 3x their usual gap")
    assert "2 unresolved support tickets" in ticket
    assert "last NPS 3 (detractor)" in ticket
    assert scores["model_version"].eq("7").all()


def test_tabled_treeshap_and_lightgbms_give_the_same_reasons(bundle: ModelBundle) -> None:
    rows = pd.concat([customers()] * 5, ignore_index=True)
    rows["recency_days"] += np.arange(len(rows)) * 9.0  # different customers, different drivers
    as_of = pd.Timestamp("2026-01-01")
    tabled = Scorer(bundle, "7")
    fast = tabled.score(rows, as_of, reasons="all")
    assert tabled.__dict__.get("_explainer") is not None  # the tabled path did run
    plain = Scorer(bundle, "7")
    plain._explainer = None  # as for a model too deep to table: LightGBM's pred_contrib
    assert fast["reasons"].tolist() == plain.score(rows, as_of, reasons="all")["reasons"].tolist()
    assert len(set(fast["reasons"])) > 1


def test_a_prepared_scorer_builds_nothing_on_its_first_reasons(
    bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = Scorer(bundle, "7", num_threads=1)
    scorer.prepare()  # as the online service does before a model serves

    def build_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("TreeSHAP tables built while scoring a request")

    monkeypatch.setattr("serving.scoring.scorer.GroupedTreeShap.for_booster", build_again)
    scores = scorer.score(customers(), pd.Timestamp("2026-01-01"), reasons="all")
    assert scores["reasons"].str.len().gt(0).all()


def test_reasons_only_where_someone_reads_them(bundle: ModelBundle) -> None:
    scores = Scorer(bundle, "7").score(customers(), pd.Timestamp("2026-01-01"), reasons="none")
    assert scores["reasons"].eq("").all()


def test_no_reasons_behind_a_newsletter(bundle: ModelBundle) -> None:
    scorer = Scorer(bundle, "7")
    scores = scorer.score(customers(), pd.Timestamp("2026-01-01"))
    quiet = scores["recommended_action"].isin(["newsletter", "no_action"])
    assert quiet.any() and not quiet.all()
    assert scores.loc[quiet, "reasons"].eq("").all()
    assert scores.loc[~quiet, "reasons"].ne("").all()
    everyone = scorer.score(customers(), pd.Timestamp("2026-01-01"), reasons="all")
    assert everyone["reasons"].ne("").all()
    assert everyone.loc[~quiet, "reasons"].tolist() == scores.loc[~quiet, "reasons"].tolist()


SENTENCE_COLUMNS = [
    "recency_days",
    "overdue_ratio",
    "days_since_session",
    "days_since_last_event",
    "nps_last",
    "session_30d",
    "sessions_trend_30d",
    "wishlist_add_total",
    "days_since_wishlist_add",
    "n_categories",
    "dominant_channel",
]


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        (
            "recency_days",
            {"recency_days": 124.0, "overdue_ratio": 3.1},
            "no purchase for 124 days, about 3x their usual gap",
        ),
        (
            "recency_days",
            {"recency_days": 10.0, "overdue_ratio": 1.75},
            "no purchase for 10 days, 1.8x their usual gap",
        ),
        ("recency_days", {"recency_days": 10.5}, "no purchase for 10 days"),  # half to even
        ("days_since_last_event", {"days_since_last_event": 12.0}, "no activity for 12 days"),
        (
            "days_since_last_event",
            {"days_since_session": 3.0, "days_since_last_event": 1.0},
            "no visit for 3 days",
        ),
        ("days_since_last_event", {}, "no activity recorded"),
        ("nps_last", {"nps_last": 6.0}, "last NPS 6 (detractor)"),
        ("nps_last", {"nps_last": 7.0}, "last NPS 7"),
        ("nps_last", {}, "no NPS answer"),
        (
            "session_30d",
            {"session_30d": 1.0, "sessions_trend_30d": -0.5},
            "visits falling: 1 session in the last 30 days, fewer than before",
        ),
        ("session_30d", {"session_30d": 2.0}, "2 sessions in the last 30 days"),
        ("session_30d", {}, "no sessions in the last 30 days"),
        ("wishlist_add_total", {"days_since_wishlist_add": 4.0}, "last wishlist add 4 days ago"),
        ("wishlist_add_total", {}, "no wishlist add recorded"),
        ("n_categories", {"n_categories": 1234.5}, "n categories: 1,234.5"),
        ("dominant_channel", {"dominant_channel": "app"}, "buys mostly via app"),
        ("dominant_channel", {}, "buys mostly via nan"),
    ],
)
def test_reason_sentences_in_edge_cases(
    column: str, values: dict[str, float | str], expected: str
) -> None:
    model = ReasonModel.for_columns(SENTENCE_COLUMNS)
    row = {c: np.nan for c in SENTENCE_COLUMNS} | values
    frame = pd.DataFrame([row]).astype({"dominant_channel": pd.CategoricalDtype(["app", "web"])})
    contributions = np.zeros((1, len(SENTENCE_COLUMNS) + 1))
    contributions[0, SENTENCE_COLUMNS.index(column)] = 1.0
    texts, families = model.top_reasons(contributions, frame)
    assert texts == [expected]
    assert len(families[0]) == 1


def test_reasons_join_the_largest_first_and_skip_what_lowers_risk() -> None:
    model = ReasonModel.for_columns(SENTENCE_COLUMNS)
    frame = pd.DataFrame(
        {c: [np.nan, np.nan] for c in SENTENCE_COLUMNS} | {"recency_days": [30.0, 40.0]}
    )
    contributions = np.zeros((2, len(SENTENCE_COLUMNS) + 1))
    contributions[0, [0, 4, 9]] = [0.5, 0.9, -0.2]  # recency, nps, n_categories
    contributions[1, 4] = -1.0
    by_family = model.family_contributions(contributions)
    texts = model.texts(by_family, frame, k=3)
    assert texts.tolist() == ["no NPS answer; no purchase for 30 days", ""]
    said = model.texts(by_family, frame, k=3, none="nothing raises the risk")
    assert said.tolist() == ["no NPS answer; no purchase for 30 days", "nothing raises the risk"]
    shifted = model.texts(by_family[[1]], frame, k=3, rows=np.array([1]))
    assert shifted.tolist() == [""]
    first = model.texts(by_family[[0]], frame, k=1, rows=np.array([1]))
    assert first.tolist() == ["no NPS answer"]


def test_no_customers_scores_to_no_rows(bundle: ModelBundle) -> None:
    empty = customers().iloc[:0]
    scores = Scorer(bundle, "7").score(empty, pd.Timestamp("2026-01-01"), reasons="all")
    assert scores.empty
    assert {"customer_id", "churn_probability", "reasons", "model_version"} <= set(scores.columns)


SUBSCRIPTION_COLUMNS = [
    "days_to_renewal",
    "mrr",
    "plan",
    "notice_given",
    "days_to_noticed_end",
    "on_trial",
    "trial_days_left",
    "upgrades",
    "downgrades",
    "payment_failed_90d",
    "payment_late_90d",
    "login_trend_30v60",
    "login_30d_per_seat",
    "event_breadth_30d",
]


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("days_to_renewal", {"days_to_renewal": 12.4}, "renewal due in 12 days"),
        ("days_to_renewal", {}, "holds no subscription term"),
        ("plan", {"mrr": 1250.0}, "pays 1,250 a month"),
        (
            "days_to_noticed_end",
            {"notice_given": 1.0, "days_to_noticed_end": 20.0},
            "gave notice: the subscription ends in 20 days",
        ),
        ("notice_given", {"notice_given": 0.0}, "no notice given"),
        ("trial_days_left", {"on_trial": 1.0, "trial_days_left": 3.0}, "on a trial, 3 days left"),
        ("downgrades", {"downgrades": 1.0, "upgrades": 0.0}, "1 downgrade, no upgrades"),
        (
            "payment_failed_90d",
            {"payment_failed_90d": 2.0},
            "2 failed payments and no late payments in the last 90 days",
        ),
        ("login_trend_30v60", {}, "no login recorded"),  # trends join their event's reason
        ("login_30d_per_seat", {}, "no login recorded"),
        ("event_breadth_30d", {"event_breadth_30d": 2.0}, "used 2 kinds of activity in 30 days"),
    ],
)
def test_subscription_reasons_in_words(
    column: str, values: dict[str, float], expected: str
) -> None:
    model = ReasonModel.for_columns(SUBSCRIPTION_COLUMNS)
    frame = pd.DataFrame([{c: np.nan for c in SUBSCRIPTION_COLUMNS} | values])
    frame["plan"] = pd.Categorical(["pro"])
    contributions = np.zeros((1, len(SUBSCRIPTION_COLUMNS) + 1))
    contributions[0, SUBSCRIPTION_COLUMNS.index(column)] = 1.0
    texts, _ = model.top_reasons(contributions, frame)
    assert texts == [expected]
