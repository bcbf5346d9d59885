"""`/score` on subscription rows: a contractual model gives the batch's scores, lapses included."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.schema import Tables
from features.synthetic_subscriptions import generate_subscription_tables
from serving.online.champion import Champion
from serving.online.requests import score_customers
from serving.online.schema import CustomerHistory
from serving.scoring.scorer import Scorer
from training.train import TrainOptions, TrainResult, train_models

AS_OF = pd.Timestamp("2026-09-01")


@pytest.fixture(scope="module")
def trained() -> tuple[Tables, TrainResult]:
    tables = generate_subscription_tables(1200, seed=4)
    options = TrainOptions(trials=1, seed=1, n_snapshots=3, spacing_days=30, num_threads=1)
    return tables, train_models(tables, pd.Timestamp("2026-08-01"), options)


def crm_body(tables: Tables, ids: list[str]) -> list[CustomerHistory]:
    """What the CRM sends: each customer's rows of every table, as JSON."""

    def rows(frame: pd.DataFrame | None, cid: str) -> list[dict[str, Any]]:
        assert frame is not None
        own = frame[frame["customer_id"] == cid].drop(columns="customer_id")
        return json.loads(own.to_json(orient="records", date_format="iso", date_unit="us"))

    return [
        CustomerHistory.model_validate(
            {
                "customer_id": cid,
                "transactions": rows(tables.transactions, cid),
                "events": rows(tables.events, cid),
                "subscriptions": rows(tables.subscriptions, cid),
                "profile": (rows(tables.customers, cid) or [None])[0],
            }
        )
        for cid in ids
    ]


def test_a_contractual_model_scores_online_as_the_batch_does(
    trained: tuple[Tables, TrainResult],
) -> None:
    tables, result = trained
    assert result.bundle.churn_definition == "contractual"
    features = build_features(tables, AS_OF, event_types=result.bundle.spec.event_types)
    subscribers = features.loc[features["holds_term"] == 1, "customer_id"].head(8).tolist()
    lapsed = features.loc[features["holds_term"] == 0, "customer_id"].head(3).tolist()
    ids = subscribers + lapsed
    scorer = Scorer(result.bundle, "7", num_threads=1)
    champion = Champion(scorer, "7", dt.datetime.now(dt.UTC))
    body = score_customers(champion, crm_body(tables, ids), AS_OF)
    online = pd.DataFrame([row for row in body.model_dump()["scores"]]).set_index("customer_id")
    expected = scorer.score(
        features[features["customer_id"].isin(ids)].reset_index(drop=True), AS_OF
    ).set_index("customer_id")
    assert sorted(online.index) == sorted(ids)
    online = online.loc[expected.index]
    for column in ("churn_probability", "predicted_spend", "clv", "mrr", "days_to_renewal"):
        np.testing.assert_allclose(
            online[column].astype(float), expected[column], rtol=1e-9, err_msg=column
        )
    assert online["recommended_action"].tolist() == expected["recommended_action"].tolist()
    # Without a term at the date the subscription has lapsed: churn is certain.
    assert (expected.loc[lapsed, "churn_probability"] == 1.0).all()
    assert expected.loc[subscribers, "churn_probability"].lt(1.0).all()
