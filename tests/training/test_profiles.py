"""Profile comparison on a tiny hand-made frame with hand-computed differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from training.profiles import compare_profiles, vip_and_churned

NAN, INF = float("nan"), float("inf")
# A 0/1 indicator with shares 1/3 and 1 (or 2/3 and 0): variances 1/3 and 0, so the pooled
# std is sqrt(1/6) and the difference 2/3 standardises to 2/3 * sqrt(6).
LEVEL_GAP = 2 / 3 * math.sqrt(6)


@pytest.fixture
def customers() -> pd.DataFrame:
    """a, b, c are the VIPs, d, e, f the churned; g is in neither group."""
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f", "g"],
            # means 2 and 4, variances 1 and 1: (2 - 4) / 1
            "x": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 100.0],
            # non-null: 10, 20 (mean 15, var 50) and 10, 10 (mean 10, var 0): 5 / sqrt(25)
            "y": [10.0, NAN, 20.0, 10.0, 10.0, NAN, 0.0],
            # every VIP 2, every churned 0: a perfect separation
            "content_views": [2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 7.0],
            "const": [1.0] * 7,
            "segment": pd.Categorical(["s", "s", "p", "p", "p", None, "other"]),
            # shares 1/3 and 0, variances 1/3 and 0: (1/3) / sqrt(1/6)
            "flag": [True, False, False, False, False, False, True],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )


def _groups(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    ids = frame["customer_id"]
    return ids.isin(["a", "b", "c"]), ids.isin(["d", "e", "f"])


def test_compare_profiles_hand_computed(customers: pd.DataFrame) -> None:
    vip, churned = _groups(customers)
    before = customers.copy()

    result = compare_profiles(customers, vip, churned)

    expected = pd.DataFrame(
        {
            "feature": [
                "content_views",
                "x",
                "segment",
                "segment",
                "y",
                "flag",
                "const",
                "segment",
            ],
            "level": [None, None, "p", "s", None, None, None, "other"],
            "mean_vip": [2.0, 2.0, 1 / 3, 2 / 3, 15.0, 1 / 3, 1.0, 0.0],
            "mean_churned": [0.0, 4.0, 1.0, 0.0, 10.0, 0.0, 1.0, 0.0],
            "std_diff": [INF, -2.0, -LEVEL_GAP, LEVEL_GAP, 1.0, math.sqrt(6) / 3, NAN, NAN],
            "present_vip": [1.0, 1.0, 1.0, 1.0, 2 / 3, 1.0, 1.0, 1.0],
            "present_churned": [1.0, 1.0, 2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 2 / 3],
        }
    ).astype({"feature": "str", "level": "str"})
    assert_frame_equal(result, expected)
    assert_frame_equal(customers, before)


def test_group_names_name_the_columns(customers: pd.DataFrame) -> None:
    vip, churned = _groups(customers)

    result = compare_profiles(customers[["customer_id", "x"]], churned, vip, names=("lost", "kept"))

    assert list(result.columns) == [
        "feature",
        "level",
        "mean_lost",
        "mean_kept",
        "std_diff",
        "present_lost",
        "present_kept",
    ]
    assert result.loc[0, "std_diff"] == pytest.approx(2.0)


def test_many_level_text_columns_are_skipped(customers: pd.DataFrame) -> None:
    vip, churned = _groups(customers)
    frame = customers[["customer_id", "x"]].assign(note=list("abcdefg"), channel="app")

    result = compare_profiles(frame, vip, churned, max_levels=3)

    assert list(zip(result["feature"], result["level"].fillna(""), strict=True)) == [
        ("x", ""),
        ("channel", "app"),
    ]


@pytest.mark.parametrize(
    ("size_a", "size_b", "expected"),
    [
        (1, 3, NAN),  # one customer has no sample variance
        (0, 3, NAN),  # an empty group has no mean
        (2, 2, -2 * math.sqrt(2)),  # x: means 1.5 and 3.5, variances 0.5 and 0.5
    ],
)
def test_small_groups(size_a: int, size_b: int, expected: float) -> None:
    frame = pd.DataFrame({"customer_id": list("abcdef"), "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    a = pd.Series([i < size_a for i in range(6)])
    b = pd.Series([2 <= i < 2 + size_b for i in range(6)])

    result = compare_profiles(frame, a, b)

    assert result.loc[0, "std_diff"] == pytest.approx(expected, nan_ok=True)


def test_masks_must_be_boolean_and_aligned(customers: pd.DataFrame) -> None:
    vip, churned = _groups(customers)
    with pytest.raises(ValueError, match="boolean"):
        compare_profiles(customers, vip.astype(int), churned)
    with pytest.raises(ValueError, match="same index"):
        compare_profiles(customers, vip.reset_index(drop=True), churned)
    with pytest.raises(ValueError, match="differ"):
        compare_profiles(customers, vip, churned, names=("x", "x"))


@pytest.fixture
def outcomes() -> pd.DataFrame:
    """Scores of nine of the ten customers of `ten`: j has none."""
    return pd.DataFrame(
        {
            "customer_id": list("abcdefghi"),
            "clv": [100.0, 90.0, 90.0, 10.0, 5.0, 5.0, 1.0, 0.0, 0.0],
            "churned": [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            "churn_probability": [0.9, 0.5, 0.1, 0.2, 0.49, 0.7, 0.0, 0.0, 1.0],
        }
    )


@pytest.fixture
def ten() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list("jihgfedcba"), "x": range(10)}, index=range(20, 30))


def test_vip_and_churned_from_labels(ten: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    vip, churned = vip_and_churned(ten, outcomes, vip_share=0.2)

    # Top ceil(0.2 x 9) = 2 by clv: a, then b and c tied at the cut; a churned, so it is not
    # a VIP. j has no outcome and is in neither group.
    assert_series_equal(vip, pd.Series([c in "bc" for c in "jihgfedcba"], ten.index, name="vip"))
    assert_series_equal(
        churned, pd.Series([c in "aefi" for c in "jihgfedcba"], ten.index, name="churned")
    )


def test_vip_and_churned_from_probabilities(ten: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    vip, churned = vip_and_churned(ten, outcomes, churn="churn_probability", vip_share=0.2)

    assert list(ten["customer_id"][churned]) == ["i", "f", "b", "a"]  # p >= 0.5
    assert list(ten["customer_id"][vip]) == ["c"]
    assert not np.any(vip & churned)


def test_vip_and_churned_rejects_bad_input(ten: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="lack"):
        vip_and_churned(ten, outcomes.drop(columns="clv"))
    with pytest.raises(ValueError, match="repeats"):
        vip_and_churned(ten, pd.concat([outcomes, outcomes]))
    with pytest.raises(ValueError, match="vip_share"):
        vip_and_churned(ten, outcomes, vip_share=0.0)
