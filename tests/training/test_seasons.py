"""The seasonal index of spend: the level of a peak, none from a short history, no peeking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.seasons import level_move_sd, season_index, seasonal_level

FIRST = pd.Timestamp("2023-01-01")


def daily_spend(days: int, december: float = 2.0, growth: float = 0.0) -> pd.DataFrame:
    """One transaction a day: December `december` times the rest, the base growing linearly."""
    ts = FIRST + pd.to_timedelta(np.arange(days), unit="D")
    amount = np.where(ts.month == 12, december, 1.0) * (1 + growth * np.arange(days) / 365)
    return pd.DataFrame({"customer_id": "c", "ts": ts, "amount": amount})


def test_a_december_window_is_indexed_at_its_share_of_the_year() -> None:
    as_of = pd.Timestamp("2025-12-01")
    index = season_index(daily_spend(1100), as_of, 31)
    # December is 2 per day against a year of 334 days at 1 and 31 at 2: 365 / 396 of 2.
    assert index == pytest.approx(2 * 365 / 396, rel=0.01)
    assert season_index(daily_spend(1100), pd.Timestamp("2025-06-01"), 30) == pytest.approx(
        365 / 396, rel=0.01
    )


def test_a_growing_base_does_not_read_as_a_season() -> None:
    index = season_index(
        daily_spend(1100, december=1.0, growth=0.5), pd.Timestamp("2025-09-01"), 90
    )
    assert index == pytest.approx(1.0, abs=0.01)


def test_a_history_that_does_not_hold_the_centred_year_gets_no_index() -> None:
    # A 90-day window: the year centred on it starts 365 - 45 + 182.5 = 502.5 days before T.
    as_of = FIRST + pd.Timedelta(days=502)
    assert season_index(daily_spend(1100), as_of, 90) is None
    assert season_index(daily_spend(1100), as_of + pd.Timedelta(days=1), 90) is not None
    assert season_index(daily_spend(1100), as_of, 400) is None  # longer than a year


def test_rows_from_the_cutoff_on_change_nothing() -> None:
    as_of = pd.Timestamp("2025-10-01")
    history = daily_spend(1000)
    later = pd.DataFrame(
        {"customer_id": "c", "ts": pd.date_range(as_of, periods=200, freq="D"), "amount": 50.0}
    )
    assert season_index(pd.concat([history, later]), as_of, 90) == season_index(
        history[history["ts"] < as_of], as_of, 90
    )


def test_the_index_is_kept_only_where_validation_does_not_refute_it() -> None:
    transactions = daily_spend(1100)
    as_of, valid = pd.Timestamp("2025-12-01"), pd.Timestamp("2024-12-01")
    actual = np.full(10, 2.0)  # the validation window spent at the peak level
    at_base = np.full(10, 2.0 * 365 / 396 / (2 * 365 / 396))  # the base's yearly average: 1
    level = seasonal_level(transactions, as_of, 31, valid, 31, actual, at_base)
    assert level.used and level.validation_index is not None
    assert abs(level.validation_error or 0) < abs(level.validation_error_without or 0)
    assert level.log_shift == pytest.approx(np.log(level.index or 0))
    refuted = seasonal_level(transactions, as_of, 31, valid, 31, np.full(10, 0.8), at_base)
    assert not refuted.used and refuted.log_shift == 0.0
    assert "worse" in str(refuted.describe()["decision"])
    unvalidated = seasonal_level(transactions, as_of, 31, None, 31, np.zeros(0), np.zeros(0))
    assert unvalidated.used and "not validated" in str(unvalidated.describe()["decision"])


def test_level_moves_are_the_root_mean_square_of_past_log_errors() -> None:
    cutoffs = [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")]
    totals = [(cutoffs[0], 110.0, 100.0), (cutoffs[1], 90.0, 100.0)]
    expected = np.sqrt((np.log(1.1) ** 2 + np.log(0.9) ** 2) / 2)
    assert level_move_sd(totals, daily_spend(10), 30, seasonal=False) == pytest.approx(expected)
    assert level_move_sd([(cutoffs[0], 0.0, 100.0)], daily_spend(10), 30, seasonal=False) == 0.0


def test_level_moves_net_out_the_season_the_model_forecasts() -> None:
    """A December window that spent at the peak is no move once its seasonal index is applied."""
    transactions = daily_spend(1100)
    cutoff = pd.Timestamp("2025-12-01")
    index = season_index(transactions, cutoff, 31)
    assert index is not None
    totals = [(cutoff, 100.0 * index, 100.0)]
    assert level_move_sd(totals, transactions, 31, seasonal=True) == pytest.approx(0.0, abs=1e-9)
    assert level_move_sd(totals, transactions, 31, seasonal=False) > 0.1
