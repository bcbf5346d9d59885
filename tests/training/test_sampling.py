"""Training rows at scale: whole customers, the population's class balance, within the budget."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.labels import build_training_set
from features.schema import Tables
from features.synthetic import generate_tables
from training.sampling import plan_sample, snapshot_rows

AS_OF = pd.Timestamp("2026-01-01")
TRAIN = [pd.Timestamp(d) for d in ("2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01")]
VALID = pd.Timestamp("2025-10-01")


@pytest.fixture(scope="module")
def shop() -> Tables:
    return generate_tables(3000, seed=21, end="2026-01-01", years=2.0)


@pytest.fixture(scope="module")
def stacked(shop: Tables) -> pd.DataFrame:
    return build_training_set(shop, AS_OF, [*TRAIN, VALID], churn_window_days=90, horizon_days=90)


def test_rows_per_snapshot_are_the_customers_seen_before_it(
    shop: Tables, stacked: pd.DataFrame
) -> None:
    counts = snapshot_rows(shop, [*TRAIN, VALID])
    assert counts == stacked.groupby("as_of").size().to_dict()


def test_within_the_budget_every_row_is_kept(shop: Tables, stacked: pd.DataFrame) -> None:
    sample = plan_sample(shop, {"churn": TRAIN}, max_rows=len(stacked), seed=1)
    assert sample.shares == {"churn": 1.0} and sample.by_cutoff() == {}
    train = stacked[stacked["as_of"].isin(TRAIN)]
    assert sample.take("churn", train) is train


def test_a_sample_keeps_whole_customers_and_the_class_balance(
    shop: Tables, stacked: pd.DataFrame
) -> None:
    train = stacked[stacked["as_of"].isin(TRAIN)].reset_index(drop=True)
    sample = plan_sample(shop, {"churn": TRAIN}, max_rows=len(train) // 4, seed=1)
    kept = sample.take("churn", train)
    assert sample.shares["churn"] == pytest.approx(0.25, abs=0.01)
    assert len(kept) == pytest.approx(len(train) // 4, rel=0.15)
    # A customer is in the sample at every cutoff where they have a snapshot, or at none.
    rows = train.groupby("customer_id").size()
    taken = kept.groupby("customer_id").size()
    assert taken.eq(rows[taken.index]).all()
    # The class balance, overall and at each cutoff, is the population's.
    assert kept["churned"].mean() == pytest.approx(train["churned"].mean(), abs=0.03)
    by_cutoff = kept.groupby("as_of")["churned"].mean() - train.groupby("as_of")["churned"].mean()
    assert by_cutoff.abs().max() < 0.06
    share = kept.groupby("as_of").size() / train.groupby("as_of").size()
    assert share.between(0.18, 0.32).all()


def test_sampling_while_building_gives_the_rows_sampling_afterwards_gives(
    shop: Tables, stacked: pd.DataFrame
) -> None:
    plan = {"churn": TRAIN, "spend": TRAIN[:2]}
    sample = plan_sample(shop, plan, max_rows=1500, seed=3)
    shares = sample.by_cutoff(whole=[VALID])
    assert VALID not in shares and set(shares) == set(TRAIN)
    # A cutoff in both splits keeps the larger share: the smaller one's customers are in it.
    assert shares[TRAIN[0]] == max(sample.shares.values())
    built = build_training_set(
        shop,
        AS_OF,
        [*TRAIN, VALID],
        churn_window_days=90,
        horizon_days=90,
        sample=shares,
        seed=3,
    )
    for name, dates in plan.items():
        want = sample.take(name, stacked[stacked["as_of"].isin(dates)].reset_index(drop=True))
        got = sample.take(name, built[built["as_of"].isin(dates)].reset_index(drop=True))
        assert_frame_equal(got, want.astype(got.dtypes.to_dict()))
    assert_frame_equal(
        built[built["as_of"] == VALID].reset_index(drop=True),
        stacked[stacked["as_of"] == VALID].reset_index(drop=True),
    )


def test_the_budget_must_be_positive(shop: Tables) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        plan_sample(shop, {"churn": TRAIN}, max_rows=0)
