"""The subscription cards: MRR, renewals due, churned MRR and net revenue retention; not retail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.report.build import build_dashboard
from serving.report.figures import (
    churned_mrr,
    mrr_figures,
    net_revenue_retention,
    subscriber_mrr,
    subscription_figures,
)
from serving.report.render import render_html
from tests.serving.report.factories import scores_frame, write_run

NAN = np.nan


def subscription_scores(mrr: list[float], days: list[float]) -> pd.DataFrame:
    """The four customers a-d of `scores_frame` with their MRR and days to renewal."""
    return scores_frame(mrr=mrr, days_to_renewal=days)


def mrr_of(**by_customer: float) -> pd.Series:
    return pd.Series(by_customer, dtype="float64", name="mrr")


def test_a_retail_run_has_no_subscription_figures() -> None:
    assert subscriber_mrr(scores_frame()) is None
    assert mrr_figures(scores_frame()) is None
    nobody = subscription_scores([NAN] * 4, [NAN] * 4)  # scored by the new scorer, no terms
    assert subscriber_mrr(nobody) is None
    assert subscription_figures(nobody, [(pd.Timestamp("2024-06-01"), None)]) is None


def test_mrr_and_renewals_due_within_30_and_90_days() -> None:
    # a renews in 10 days, b in 30 (counted), c holds no term, d in 91 days.
    frame = subscription_scores([100.0, 50.0, NAN, 20.0], [10.0, 30.0, NAN, 91.0])
    assert mrr_figures(frame) == {
        "subscribers": 3.0,
        "mrr": 170.0,
        "renewals_30d": 2.0,
        "renewals_30d_mrr": 150.0,
        "renewals_90d": 2.0,
        "renewals_90d_mrr": 150.0,
    }
    later = subscription_scores([100.0, 50.0, NAN, 20.0], [31.0, 90.0, 5.0, 0.0])
    figures = mrr_figures(later)
    assert figures is not None
    assert (figures["renewals_30d"], figures["renewals_30d_mrr"]) == (1.0, 20.0)
    assert (figures["renewals_90d"], figures["renewals_90d_mrr"]) == (3.0, 170.0)


def test_churned_mrr_is_the_previous_mrr_of_subscribers_who_hold_no_term_now() -> None:
    previous = mrr_of(a=100.0, b=50.0, c=30.0)
    current = mrr_of(a=120.0, d=10.0)  # b and c gone; d is new, a upgraded
    assert churned_mrr(previous, current) == {"churned_subscribers": 2.0, "churned_mrr": 80.0}
    assert churned_mrr(previous, previous) == {"churned_subscribers": 0.0, "churned_mrr": 0.0}


def test_net_revenue_retention_follows_the_base_subscribers_only() -> None:
    base = mrr_of(a=100.0, b=50.0, c=30.0)
    current = mrr_of(a=120.0, c=40.0, d=500.0)  # b churned, a and c grew, d is new
    assert net_revenue_retention(base, current) == pytest.approx(160.0 / 180.0)
    assert net_revenue_retention(mrr_of(a=0.0), current) is None  # only trials then


def test_subscription_figures_compare_with_the_previous_and_the_earliest_run() -> None:
    days = [NAN] * 4
    latest = subscription_scores([120.0, NAN, 40.0, NAN], days)
    runs = [
        (pd.Timestamp("2023-01-01"), mrr_of(a=1000.0)),  # more than a year before: not the base
        (pd.Timestamp("2023-07-01"), mrr_of(a=100.0, b=50.0, c=30.0)),
        (pd.Timestamp("2023-12-01"), None),  # a retail run in between
        (pd.Timestamp("2024-05-01"), mrr_of(a=100.0, c=30.0, d=25.0)),
        (pd.Timestamp("2024-06-01"), subscriber_mrr(latest)),
    ]
    figures = subscription_figures(latest, runs)
    assert figures is not None
    assert figures["mrr"] == 160.0
    assert figures["churned_since"] == pd.Timestamp("2024-05-01")
    assert (figures["churned_subscribers"], figures["churned_mrr"]) == (1.0, 25.0)
    assert figures["nrr_since"] == pd.Timestamp("2023-07-01")
    assert figures["net_revenue_retention"] == pytest.approx(160.0 / 180.0)
    # The previous run had no MRR: no churned MRR; a single run: no NRR either.
    no_previous = subscription_figures(latest, [*runs[:3], runs[-1]])
    assert no_previous is not None
    assert no_previous["churned_since"] is None and no_previous["churned_mrr"] is None
    assert no_previous["nrr_since"] == pd.Timestamp("2023-07-01")
    alone = subscription_figures(latest, runs[-1:])
    assert alone is not None
    assert alone["nrr_since"] is None and alone["net_revenue_retention"] is None


def test_the_dashboard_shows_subscription_cards_for_subscription_runs(tmp_path: Path) -> None:
    write_run(tmp_path, "2024-05-01", subscription_scores([100.0, 50.0, 30.0, NAN], [NAN] * 4))
    write_run(
        tmp_path, "2024-06-01", subscription_scores([120.0, NAN, 40.0, 10.0], [5.0, NAN, 60, 200])
    )
    dashboard = build_dashboard(tmp_path)
    figures = dashboard.subscriptions
    assert figures is not None
    assert (figures["mrr"], figures["churned_mrr"]) == (170.0, 50.0)
    assert figures["net_revenue_retention"] == pytest.approx(160.0 / 180.0)
    assert dashboard.trend["mrr"].tolist() == [180.0, 170.0]
    page = render_html(dashboard)
    section = page[
        page.index('id="subscriptions"') : page.index(
            "</section>", page.index('id="subscriptions"')
        )
    ]
    for text in ("MRR", "Renewals due, 30 days", "Renewals due, 90 days", "Churned MRR"):
        assert text in section
    assert "88.9%" in section  # 160 / 180
    assert "2024-05-01 to 2024-06-01" in section


def test_a_retail_dashboard_has_no_subscription_cards(tmp_path: Path) -> None:
    write_run(tmp_path, "2024-06-01", scores_frame())
    dashboard = build_dashboard(tmp_path)
    assert dashboard.subscriptions is None
    page = render_html(dashboard)
    assert 'id="subscriptions"' not in page
    assert "Churned MRR" not in page
