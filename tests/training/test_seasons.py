"""The seasonal level of spend: last year's miss of the base; none from a short history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import Tables
from features.synthetic import generate_tables
from training import seasons
from training.seasons import last_year_level, level_move_sd, seasonal_level

END = pd.Timestamp("2026-11-01")


@pytest.fixture(scope="module")
def shop() -> Tables:
    """Three years of a shop with a December peak (the generator's default season)."""
    return generate_tables(2000, seed=5, end=END)


def test_the_base_misses_with_the_calendar_and_last_year_measures_it(shop: Tables) -> None:
    """Before the peak the base is short of what follows; after it, over."""
    october = last_year_level(shop, pd.Timestamp("2026-10-01"), 90, "bgnbd")
    january = last_year_level(shop, pd.Timestamp("2026-01-01"), 90, "bgnbd")
    assert october is not None and january is not None
    assert october > 1.15 and january < 0.9


def test_rows_from_the_cutoff_on_change_nothing(shop: Tables) -> None:
    as_of = pd.Timestamp("2026-06-01")
    later = shop.transactions[shop.transactions["ts"] >= as_of]
    doubled = later.assign(amount=later["amount"] * 10.0, order_id=later["order_id"] + "-x")
    with_more = Tables(
        transactions=pd.concat([shop.transactions, doubled], ignore_index=True),
        customers=shop.customers,
        events=shop.events,
    )
    assert last_year_level(with_more, as_of, 90, "bgnbd") == last_year_level(
        shop, as_of, 90, "bgnbd"
    )


def test_a_history_without_a_base_a_year_earlier_gets_no_level(shop: Tables) -> None:
    first = shop.transactions["ts"].min()
    too_soon = (first + pd.DateOffset(years=1) + pd.Timedelta(days=60)).normalize()
    assert last_year_level(shop, too_soon, 90, "bgnbd") is None
    assert last_year_level(shop, too_soon + pd.Timedelta(days=60), 90, "bgnbd") is not None
    assert last_year_level(shop, END, 400, "bgnbd") is None  # a window longer than the year


def test_the_level_is_kept_only_where_validation_does_not_refute_it(
    monkeypatch: pytest.MonkeyPatch, shop: Tables
) -> None:
    as_of, valid = pd.Timestamp("2026-10-01"), pd.Timestamp("2026-04-01")
    levels = {as_of: 1.4, valid: 1.2}
    monkeypatch.setattr(seasons, "last_year_level", lambda _t, cutoff, _d, _f: levels[cutoff])
    at_base = np.full(10, 1.0)
    level = seasonal_level(shop, as_of, 90, valid, 90, np.full(10, 1.25), at_base, "bgnbd")
    assert level.used and level.index == 1.4 and level.validation_index == 1.2
    assert level.validation_error == pytest.approx(1.2 / 1.25 - 1)
    assert level.log_shift == pytest.approx(np.log(1.4))
    refuted = seasonal_level(shop, as_of, 90, valid, 90, np.full(10, 0.9), at_base, "bgnbd")
    assert not refuted.used and refuted.log_shift == 0.0
    assert "worse" in str(refuted.describe()["decision"])
    unvalidated = seasonal_level(shop, as_of, 90, None, 90, np.zeros(0), np.zeros(0), "bgnbd")
    assert unvalidated.used and "not validated" in str(unvalidated.describe()["decision"])


def test_level_moves_are_the_root_mean_square_of_past_log_errors() -> None:
    cutoffs = [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")]
    totals = [(cutoffs[0], 110.0, 100.0), (cutoffs[1], 90.0, 100.0)]
    expected = np.sqrt((np.log(1.1) ** 2 + np.log(0.9) ** 2) / 2)
    assert level_move_sd(totals) == pytest.approx(expected)
    assert level_move_sd([(cutoffs[0], 0.0, 100.0)]) == 0.0
    # A window that spent what its seasonal level said is no move.
    assert level_move_sd(totals, {cutoffs[0]: 1.1, cutoffs[1]: 0.9}.get) == pytest.approx(0.0)
