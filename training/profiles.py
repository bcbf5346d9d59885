"""Profile comparison of two customer groups: what sets the churned apart from the VIPs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.schema import ID

# Columns that identify a row rather than describe a customer.
NOT_COMPARED = (ID, "as_of")
# A text or categorical column with more levels than this is not compared (ids, free text).
MAX_LEVELS = 20


def compare_profiles(
    features: pd.DataFrame,
    group_a: pd.Series,
    group_b: pd.Series,
    names: tuple[str, str] = ("vip", "churned"),
    *,
    max_levels: int = MAX_LEVELS,
) -> pd.DataFrame:
    """Feature by feature differences between two groups of customers, largest first.

    Every numeric (or boolean) column is compared on its non-null values. A categorical or
    text column with at most `max_levels` levels is compared level by level, each level as a
    0/1 indicator over the rows where the column is not null (so `mean_*` is the level's
    share). `customer_id`, `as_of` and datetime columns are skipped.

    The standardised difference of a feature is

        std_diff = (mean_a - mean_b) / sqrt((var_a + var_b) / 2)

    with sample variances (ddof=1) of each group's non-null values: the balance measure of
    the propensity-score literature, which weighs both groups equally whatever their sizes.
    It is NaN when a group has fewer than two values or both groups are constant at the same
    value, and +-inf when both are constant at different values (a perfect separation).
    |std_diff| above about 0.2 is a noticeable difference, above 0.8 a large one.

    Args:
        features: one row per customer (e.g. `features.build.build_features`); not modified.
        group_a: boolean mask over `features.index` of the first group (e.g. VIPs).
        group_b: boolean mask over `features.index` of the second group (e.g. churned). The
            groups may overlap; `vip_and_churned` makes them disjoint.
        names: suffixes of the per-group columns.
        max_levels: categorical and text columns with more levels are skipped.

    Returns:
        One row per numeric feature or categorical level, sorted by |std_diff| (largest first,
        NaN last; ties in feature order) with a fresh index and columns:
        feature: the column name.
        level: the category level (missing for numeric features).
        mean_<a>, mean_<b>: the group means (shares for levels).
        std_diff: the standardised difference, positive when group a has more.
        present_<a>, present_<b>: share of the group's rows where the column is not null.

    Raises:
        ValueError: a mask is not boolean or not indexed like `features`, or `names` are equal.
    """
    a = _mask(features, group_a, "group_a")
    b = _mask(features, group_b, "group_b")
    name_a, name_b = names
    if name_a == name_b:
        raise ValueError(f"the two group names must differ, got {names!r}")
    rows = [
        _compare(column, level, values, a, b)
        for column, level, values in _comparable(features, max_levels)
    ]
    columns = [
        "feature",
        "level",
        f"mean_{name_a}",
        f"mean_{name_b}",
        "std_diff",
        f"present_{name_a}",
        f"present_{name_b}",
    ]
    table = pd.DataFrame(rows, columns=columns).astype(
        {"feature": "str", "level": "str"} | {c: "float64" for c in columns[2:]}
    )
    order = table["std_diff"].abs().sort_values(ascending=False, na_position="last", kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def vip_and_churned(
    features: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    value: str = "clv",
    churn: str = "churned",
    vip_share: float = 0.1,
    churn_threshold: float = 0.5,
) -> tuple[pd.Series, pd.Series]:
    """The VIP and churned masks over `features.index`, for `compare_profiles`.

    VIPs are the customers we want more of: in the top `vip_share` by `value` (ties at the cut
    all count) and not churned. Churned customers are those whose `churn` column is at least
    `churn_threshold`: an observed 0/1 label (`churned` from `features.labels.build_labels`)
    or a predicted probability (`churn_probability`). A valuable customer who churned counts as
    churned, so the groups never overlap. Customers without an outcome row are in neither.

    Args:
        features: one row per customer with `customer_id`; not modified.
        outcomes: `customer_id` plus the `value` and `churn` columns, e.g. model scores joined
            with labels.
        value: the column ranking VIPs (`clv`, `predicted_spend`, `future_spend`, ...).
        churn: the label or probability column.
        vip_share: share of the scored customers that make the top group.
        churn_threshold: label or probability from which a customer counts as churned.

    Returns:
        The boolean masks (vip, churned), indexed like `features`.

    Raises:
        ValueError: a column is missing, `customer_id` repeats in `outcomes`, or `vip_share`
            is not in (0, 1].
    """
    if not 0 < vip_share <= 1:
        raise ValueError(f"vip_share must be in (0, 1], got {vip_share}")
    missing = [c for c in (ID, value, churn) if c not in outcomes.columns]
    if missing or ID not in features.columns:
        where = "outcomes" if missing else "features"
        raise ValueError(f"{where} lack the column(s) {missing or [ID]}")
    if outcomes[ID].duplicated().any():
        raise ValueError("customer_id repeats in outcomes: expected one row per customer")
    aligned = features[[ID]].merge(outcomes[[ID, value, churn]], on=ID, how="left")
    aligned.index = features.index
    churned = aligned[churn].ge(churn_threshold)
    scored = aligned[value].dropna()
    cut = math.ceil(vip_share * len(scored))
    rank = aligned[value].rank(ascending=False, method="min")
    top = rank.le(cut) & aligned[value].notna()
    return (top & ~churned).rename("vip"), churned.rename("churned")


def _mask(features: pd.DataFrame, mask: pd.Series, what: str) -> np.ndarray:
    """A group mask as a numpy bool array, checked against the feature rows."""
    if not pd.api.types.is_bool_dtype(mask):
        raise ValueError(f"{what} must be a boolean Series, got dtype {mask.dtype}")
    if not mask.index.equals(features.index):
        raise ValueError(f"{what} must have the same index as features")
    return mask.to_numpy(dtype=bool)


def _comparable(features: pd.DataFrame, max_levels: int) -> list[tuple[str, str | None, pd.Series]]:
    """(column, level, float values with NaN where unknown) for every comparable column."""
    out: list[tuple[str, str | None, pd.Series]] = []
    for column in features.columns:
        if column in NOT_COMPARED:
            continue
        values = features[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values):
            levels = sorted(str(v) for v in values.dropna().unique())
            if len(levels) > max_levels:
                continue
            text = values.astype("str").where(values.notna())
            for level in levels:
                indicator = text.eq(level).astype("float64").where(values.notna())
                out.append((column, level, indicator))
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            out.append((column, None, values.astype("float64")))
    return out


def _compare(
    column: str, level: str | None, values: pd.Series, a: np.ndarray, b: np.ndarray
) -> tuple[object, ...]:
    """One output row: means, standardised difference and non-null shares of both groups."""
    in_a, in_b = values[a], values[b]
    mean_a, mean_b = in_a.mean(), in_b.mean()
    pooled = math.sqrt((in_a.var() + in_b.var()) / 2)
    gap = mean_a - mean_b
    if math.isnan(pooled):
        std_diff = float("nan")
    elif pooled > 0:
        std_diff = gap / pooled
    else:
        # Both groups constant: equal says nothing, different separates them perfectly.
        std_diff = float("nan") if gap == 0 else math.copysign(math.inf, gap)
    return (
        column,
        level,
        mean_a,
        mean_b,
        std_diff,
        _present(in_a),
        _present(in_b),
    )


def _present(values: pd.Series) -> float:
    """Share of non-null values (NaN for an empty group)."""
    return float(values.notna().mean()) if len(values) else float("nan")
