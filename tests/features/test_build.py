"""Feature values on hand-made customers, computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.build import CATEGORICAL_FEATURES, build_features, build_rfm_summary
from features.schema import KNOWN_EVENTS, Tables
from tests.factories import frame, ts

AS_OF = "2024-02-01"
NAN = np.nan


def select(features: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return features[["customer_id", *columns]].reset_index(drop=True)


def expected(rows: dict[str, list[object]]) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    out["customer_id"] = out["customer_id"].astype("str")
    return out.astype({c: "float64" for c in out.columns if c != "customer_id"})


def test_rfm_block_by_hand(shop: Tables) -> None:
    # a: orders 01-01 (10) and 01-11 (20, discounted), a refund of 5 on 01-11; 03-01 is after as_of.
    got = select(
        build_features(shop, AS_OF),
        [
            "recency_days",
            "tenure_days",
            "n_orders",
            "n_purchase_days",
            "spend_total",
            "spend_mean",
            "spend_max",
            "net_spend",
            "refund_count",
            "refund_total",
            "margin_total",
            "gap_mean_days",
            "overdue_ratio",
            "last_order_vs_mean",
            "discount_order_share",
            "n_categories",
            "orders_30d",
            "spend_30d",
            "orders_trend_90d",
        ],
    )
    want = expected(
        {
            "customer_id": ["a", "b", "c"],
            "recency_days": [21.0, 27.0, 12.0],
            "tenure_days": [31.0, 27.0, 12.0],
            "n_orders": [2, 1, 1],
            "n_purchase_days": [2, 1, 1],
            "spend_total": [30.0, 7.0, 3.0],
            "spend_mean": [15.0, 7.0, 3.0],
            "spend_max": [20.0, 7.0, 3.0],
            "net_spend": [25.0, 7.0, 3.0],
            "refund_count": [1, 0, 0],
            "refund_total": [5.0, 0.0, 0.0],
            "margin_total": [7.0, 2.0, 1.0],
            "gap_mean_days": [10.0, NAN, NAN],
            "overdue_ratio": [2.1, NAN, NAN],
            "last_order_vs_mean": [2.0, NAN, NAN],
            "discount_order_share": [0.5, 0.0, 1.0],
            "n_categories": [2, 0, 1],
            "orders_30d": [1, 1, 1],
            "spend_30d": [20.0, 7.0, 3.0],
            "orders_trend_90d": [1.0, 1.0, 1.0],
        }
    )
    assert_frame_equal(got, want)


def test_engagement_and_profile_by_hand(shop: Tables) -> None:
    got = build_features(shop, AS_OF)
    a = got.set_index("customer_id").loc["a"]
    assert a["nps_total"] == 2 and a["nps_last"] == 9.0 and a["nps_mean"] == 6.0
    assert a["days_since_nps"] == 12.0
    assert a["support_ticket_total"] == 1 and a["unresolved_tickets"] == 1
    assert a["product_views_since_purchase"] == 1  # viewed on 01-25, last bought 01-11
    assert a["signup_days"] == 62.0 and a["segment"] == "student"
    b = got.set_index("customer_id").loc["b"]
    assert b["wish_list_total"] == 1  # an unknown event name still gets its counts
    assert np.isnan(b["signup_days"])  # signed up on as_of itself: not yet known
    c = got.set_index("customer_id").loc["c"]
    assert c["nps_total"] == 0 and np.isnan(c["days_since_nps"]) and np.isnan(c["segment"])
    assert got["customer_id"].tolist() == ["a", "b", "c"]  # z has events only: not scored


def test_dominant_channel_ties_go_to_the_first_name(shop: Tables) -> None:
    got = build_features(shop, AS_OF).set_index("customer_id")
    assert got.loc["a", "dominant_channel"] == "app"  # one app order, one web order
    assert got.loc["a", "dominant_channel_share"] == 0.5
    assert got["dominant_channel"].dtype == "category"


@pytest.mark.parametrize(
    ("case", "rows", "want"),
    [
        (
            "one purchase",
            [("2024-01-10", 50.0, "o1")],
            {"n_orders": 1.0, "gap_mean_days": NAN, "gap_std_days": NAN, "recency_days": 22.0},
        ),
        (
            "same-day orders are one purchase day",
            [("2024-01-10", 5.0, "o1"), ("2024-01-10T18:00", 7.0, "o2"), ("2024-01-20", 1.0, "o3")],
            {"n_orders": 3.0, "n_purchase_days": 2.0, "gap_mean_days": 10.0, "spend_max": 7.0},
        ),
        (
            "lines of one order are summed",
            [("2024-01-10", 5.0, "o1"), ("2024-01-10", 7.0, "o1")],
            {"n_orders": 1.0, "spend_total": 12.0, "spend_max": 12.0, "last_order_amount": 12.0},
        ),
        (
            "identical duplicate lines both count",
            [("2024-01-10", 5.0, "o1"), ("2024-01-10", 5.0, "o1")],
            {"n_orders": 1.0, "spend_total": 10.0},
        ),
        (
            "refund only after a purchase",
            [("2024-01-01", 40.0, "o1"), ("2024-01-05", -40.0, "r1")],
            {"n_orders": 1.0, "net_spend": 0.0, "refund_total": 40.0, "recency_days": 31.0},
        ),
        (
            "rows on and after as_of are ignored",
            [
                ("2024-01-31T23:59:59", 1.0, "o1"),
                ("2024-02-01", 999.0, "o2"),
                ("2025-01-01", 5.0, "o3"),
            ],
            {"n_orders": 1.0, "spend_total": 1.0},
        ),
        (
            "gaps of 10 and 20 days",
            [("2024-01-01", 1.0, "o1"), ("2024-01-11", 1.0, "o2"), ("2024-01-31", 1.0, "o3")],
            {"gap_mean_days": 15.0, "gap_std_days": float(np.std([10, 20], ddof=1))},
        ),
        (
            "null order ids are orders of their own",
            [("2024-01-01", 1.0, None), ("2024-01-01", 2.0, None)],
            {"n_orders": 2.0, "spend_max": 2.0, "last_order_amount": 2.0},
        ),
        (
            "trend: all in the previous 90 days",
            [("2023-09-15", 10.0, "o1")],
            {"spend_trend_90d": -1.0, "spend_90d": 0.0, "spend_180d": 10.0},
        ),
    ],
)
def test_edge_cases(
    case: str, rows: list[tuple[str, float, str | None]], want: dict[str, float]
) -> None:
    transactions = frame(
        customer_id=["x"] * len(rows),
        ts=ts(*(r[0] for r in rows)),
        amount=[r[1] for r in rows],
        order_id=[r[2] for r in rows],
    )
    got = build_features(Tables(transactions), AS_OF).set_index("customer_id").loc["x"]
    for column, value in want.items():
        assert got[column] == pytest.approx(value, nan_ok=True), (case, column)


def test_transactions_only_data_has_no_engagement_columns() -> None:
    transactions = frame(
        customer_id=["x", "y"], ts=ts("2024-01-01", "2024-01-02"), amount=[1.0, 2.0]
    )
    got = build_features(Tables(transactions), AS_OF)
    assert len(got) == 2
    assert not any(c.startswith("days_since_") for c in got.columns)
    assert "margin_total" not in got.columns and "dominant_channel" not in got.columns
    assert got["recency_days"].tolist() == [31.0, 30.0]


def test_event_types_fix_the_columns(shop: Tables) -> None:
    got = build_features(shop, AS_OF, event_types=["nps", "brand_new"])
    assert {"nps_total", "brand_new_total", "brand_new_30d", "days_since_brand_new"} <= set(
        got.columns
    )
    assert "session_total" not in got.columns
    assert got["brand_new_total"].eq(0).all()
    default = build_features(shop, AS_OF)
    assert {f"{e}_total" for e in KNOWN_EVENTS} <= set(default.columns)


@pytest.mark.parametrize("as_of", [AS_OF, "2020-01-01"], ids=["customers", "nobody"])
def test_the_frame_has_its_final_dtypes(shop: Tables, as_of: str) -> None:
    got = build_features(shop, as_of)
    assert got["customer_id"].dtype == "str"
    assert {"dominant_channel", "segment"} <= set(got.columns)  # the shop has no others
    for name in [c for c in CATEGORICAL_FEATURES if c in got.columns]:
        assert isinstance(got[name].dtype, pd.CategoricalDtype)
        levels = got[name].cat.categories
        assert levels.dtype == "str" and levels.tolist() == sorted(got[name].dropna().unique())
    numbers = [c for c in got.columns if c != "customer_id" and c not in CATEGORICAL_FEATURES]
    assert (got[numbers].dtypes == np.float64).all()


def test_inputs_are_not_mutated(shop: Tables) -> None:
    before = {name: getattr(shop, name).copy() for name in ("transactions", "customers", "events")}
    build_features(shop, AS_OF)
    build_rfm_summary(shop, AS_OF)
    for name, copy in before.items():
        assert_frame_equal(getattr(shop, name), copy)


def test_rfm_summary_follows_the_btyd_convention(shop: Tables) -> None:
    got = build_rfm_summary(shop, AS_OF)
    want = expected(
        {
            "customer_id": ["a", "b", "c"],
            "frequency": [1.0, 0.0, 0.0],
            "recency": [10.0, 0.0, 0.0],
            "T": [31.0, 27.0, 12.0],
            "monetary_value": [20.0, 0.0, 0.0],
        }
    )
    assert_frame_equal(got, want)


def test_empty_history_before_as_of(shop: Tables) -> None:
    got = build_features(shop, "2020-01-01")
    assert len(got) == 0
    assert "recency_days" in got.columns
