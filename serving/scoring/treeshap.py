"""Exact TreeSHAP of a LightGBM booster, summed by groups of features, for every customer at once.

LightGBM's `pred_contrib` runs the TreeSHAP recursion for each row: about leaves × depth² steps
per tree, which made reasons four fifths of the nightly scoring time. For a tree of bounded depth, a
leaf's share of each SHAP value depends only on which of the leaf's path features the row
agrees with: at most 2^depth cases, tabled once per model (the idea of Fast TreeSHAP v2,
Yang 2021). A row then costs a look-up per leaf (compiled with Numba), its features already
summed by group (reason family), so the work no longer grows with depth squared. The
values are `pred_contrib`'s, to rounding; `tests/serving/test_treeshap.py` holds them together,
missing values and categorical splits included.

Path-dependent TreeSHAP, per leaf l with value v and unique path features P: a feature j gets
v (o_j - z_j) Σ_{S ⊆ P∖j} |S|! (|P|-|S|-1)! / |P|! Π_{k∈S} o_k Π_{k∈P∖S∖j} z_k, where z_k is
the share of the training rows that followed the path's splits on k and o_k is 1 when the row
itself does. The o's are the table's index.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np

# Beyond this many distinct features on one path the tables (2^n rows per leaf) stop paying;
# such models (trained before the depth cap) are explained by `pred_contrib` instead.
MAX_PATH_FEATURES = 12
MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold: |x| at or below it counts as zero
ROWS_PER_TASK = 256
_LAUNCH = threading.Lock()


@dataclass(frozen=True)
class GroupedTreeShap:
    """A booster's trees as flat arrays and leaf tables; call it on a float64 matrix.

    Attributes:
        n_groups: how many groups of features; the output has one column per group.
        arrays: the trees and tables, in the order `_grouped_shap` takes them.
    """

    n_groups: int
    arrays: tuple[np.ndarray, ...]

    @classmethod
    def for_booster(
        cls, booster: lgb.Booster, groups: np.ndarray, n_groups: int
    ) -> GroupedTreeShap | None:
        """The explainer of `booster`, or None for trees too deep to table (see module docs).

        Args:
            booster: the trained model.
            groups: the group (e.g. reason family) of each booster feature.
            n_groups: how many groups.
        """
        forest = _flatten(booster.dump_model()["tree_info"])
        if forest is None:
            return None
        slot_group = np.asarray(groups, dtype=np.int64)[forest["slot_feature"]]
        by_slot = _leaf_tables(
            forest["leaf_value"], forest["leaf_slots"], forest["slot_zero"], forest["leaf_table"]
        )
        leaf_columns, column_group, leaf_table, table = _sum_by_group(
            by_slot, forest["leaf_slots"], forest["leaf_table"], slot_group
        )
        arrays = (
            forest["tree_nodes"],
            forest["tree_leaves"],
            forest["node_feature"],
            forest["node_threshold"],
            forest["node_categorical"],
            forest["node_default_left"],
            forest["node_missing"],
            forest["node_cats"],
            forest["cats"],
            forest["node_left"],
            forest["node_right"],
            forest["node_slot"],
            forest["leaf_slots"],
            leaf_columns,
            column_group,
            leaf_table,
            table,
        )
        return cls(n_groups, arrays)

    def __call__(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """SHAP values summed per group (rows x groups) for rows of the booster's features.

        `num_threads` as LightGBM's: 0 for every core, 1 for an online request.
        """
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        if len(rows) == 0:
            return np.zeros((0, self.n_groups))
        threads = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        # Numba's own thread pool (its fallback without OpenMP or TBB) aborts the process on
        # launches from two threads at once: the service's scoring thread and a model load
        # scoring its example, say. One launch at a time, whichever pool is in use.
        with _LAUNCH:
            numba.set_num_threads(min(num_threads, threads) if num_threads > 0 else threads)
            return _grouped_shap(rows, self.n_groups, *self.arrays)


def _flatten(trees: list[dict[str, Any]]) -> dict[str, np.ndarray] | None:
    """The trees of `dump_model` as arrays the compiled functions read; None if too deep.

    Internal nodes are numbered by `split_index` within their tree (a parent before its
    children), leaves by `leaf_index`; a child code c >= 0 is an internal node, c < 0 the
    leaf ~c. A node's slot is the place of its feature among the distinct features of the
    path above it, the same for every leaf below it.
    """
    names = [
        *("node_feature", "node_threshold", "node_categorical", "node_default_left"),
        *("node_missing", "node_left", "node_right", "node_slot"),
        *("leaf_value", "slot_feature", "slot_zero"),
    ]
    out: dict[str, list[Any]] = {name: [] for name in names}
    tree_nodes, tree_leaves, node_cats, leaf_slots, leaf_table = [0], [0], [0], [0], [0]
    cats: list[int] = []
    for tree in trees:
        internal: dict[int, tuple[dict[str, Any], int]] = {}  # split_index: (node, slot)
        leaves: dict[int, tuple[float, list[int], list[float]]] = {}
        _walk(tree["tree_structure"], [], [], internal, leaves)
        for index in range(len(internal)):
            node, slot = internal[index]
            categorical = node["decision_type"] == "=="
            out["node_feature"].append(node["split_feature"])
            out["node_threshold"].append(0.0 if categorical else float(node["threshold"]))
            out["node_categorical"].append(categorical)
            out["node_default_left"].append(bool(node["default_left"]))
            out["node_missing"].append(MISSING_TYPES[node["missing_type"]])
            out["node_left"].append(_child_code(node["left_child"]))
            out["node_right"].append(_child_code(node["right_child"]))
            out["node_slot"].append(slot)
            if categorical:
                cats.extend(int(c) for c in str(node["threshold"]).split("||"))
            node_cats.append(len(cats))
        for index in range(len(leaves)):
            value, slots, zero = leaves[index]
            if len(slots) > MAX_PATH_FEATURES:
                return None
            out["leaf_value"].append(float(value))
            out["slot_feature"].extend(slots)
            out["slot_zero"].extend(zero)
            leaf_slots.append(len(out["slot_feature"]))
            leaf_table.append(leaf_table[-1] + (len(slots) << len(slots)))
        tree_nodes.append(len(out["node_feature"]))
        tree_leaves.append(len(out["leaf_value"]))
    floats = {"node_threshold", "leaf_value", "slot_zero"}
    booleans = {"node_categorical", "node_default_left"}
    flat = {
        name: np.asarray(
            values,
            dtype=np.float64 if name in floats else np.bool_ if name in booleans else np.int64,
        )
        for name, values in out.items()
    }
    for name, values in (
        ("tree_nodes", tree_nodes),
        ("tree_leaves", tree_leaves),
        ("node_cats", node_cats),
        ("cats", cats),
        ("leaf_slots", leaf_slots),
        ("leaf_table", leaf_table),
    ):
        flat[name] = np.asarray(values, dtype=np.int64)
    return flat


def _walk(
    node: dict[str, Any],
    slots: list[int],
    zero: list[float],
    internal: dict[int, tuple[dict[str, Any], int]],
    leaves: dict[int, tuple[float, list[int], list[float]]],
) -> None:
    """Record each internal node's slot, and each leaf's path features and their shares."""
    if "split_index" not in node:
        leaves[node.get("leaf_index", 0)] = (node.get("leaf_value", 0.0), slots, zero)
        return
    feature = node["split_feature"]
    slot = slots.index(feature) if feature in slots else len(slots)
    internal[node["split_index"]] = (node, slot)
    for child in (node["left_child"], node["right_child"]):
        count = child.get("internal_count", child.get("leaf_count", 0))
        share = count / max(node["internal_count"], 1)
        if slot < len(slots):
            shares = [*zero[:slot], zero[slot] * share, *zero[slot + 1 :]]
            _walk(child, slots, shares, internal, leaves)
        else:
            _walk(child, [*slots, feature], [*zero, share], internal, leaves)


def _child_code(node: dict[str, Any]) -> int:
    return int(node["split_index"]) if "split_index" in node else ~int(node.get("leaf_index", 0))


@numba.njit(cache=True)
def _leaf_tables(
    leaf_value: np.ndarray, leaf_slots: np.ndarray, slot_zero: np.ndarray, leaf_table: np.ndarray
) -> np.ndarray:
    """Per leaf, per agreement mask of its path features, each feature's SHAP share."""
    table = np.zeros(leaf_table[-1])
    coefficients = np.zeros(MAX_PATH_FEATURES + 1)
    for leaf in range(len(leaf_value)):
        first, n = leaf_slots[leaf], leaf_slots[leaf + 1] - leaf_slots[leaf]
        if n == 0:
            continue
        zero = slot_zero[first : first + n]
        # |S|! (n - |S| - 1)! / n!
        weight = np.empty(n)
        for size in range(n):
            weight[size] = 1.0 / (n * _binomial(n - 1, size))
        for mask in range(1 << n):
            for j in range(n):
                # Coefficients of Π over the other features: (t + z_k) if the row agrees
                # with k's splits (t marks "k is in S"), else z_k.
                coefficients[:] = 0.0
                coefficients[0] = 1.0
                degree = 0
                for k in range(n):
                    if k == j:
                        continue
                    if (mask >> k) & 1:
                        degree += 1
                        for t in range(degree, 0, -1):
                            coefficients[t] = coefficients[t] * zero[k] + coefficients[t - 1]
                        coefficients[0] *= zero[k]
                    else:
                        for t in range(degree + 1):
                            coefficients[t] *= zero[k]
                total = 0.0
                for t in range(degree + 1):
                    total += weight[t] * coefficients[t]
                agrees = 1.0 if (mask >> j) & 1 else 0.0
                share = (agrees - zero[j]) * total
                table[leaf_table[leaf] + mask * n + j] = leaf_value[leaf] * share
    return table


@numba.njit(cache=True)
def _sum_by_group(
    by_slot: np.ndarray, leaf_slots: np.ndarray, slot_table: np.ndarray, slot_group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tables with a leaf's features of one group summed: one column per group."""
    n_leaves = len(leaf_slots) - 1
    leaf_columns = np.zeros(n_leaves + 1, dtype=np.int64)
    leaf_table = np.zeros(n_leaves + 1, dtype=np.int64)
    column_group = np.empty(len(slot_group), dtype=np.int64)
    column_of_slot = np.empty(len(slot_group), dtype=np.int64)
    for leaf in range(n_leaves):
        first, n = leaf_slots[leaf], leaf_slots[leaf + 1] - leaf_slots[leaf]
        width = 0
        for j in range(n):
            column = width
            for c in range(width):
                if column_group[leaf_columns[leaf] + c] == slot_group[first + j]:
                    column = c
            if column == width:
                column_group[leaf_columns[leaf] + width] = slot_group[first + j]
                width += 1
            column_of_slot[first + j] = column
        leaf_columns[leaf + 1] = leaf_columns[leaf] + width
        leaf_table[leaf + 1] = leaf_table[leaf] + (width << n)
    table = np.zeros(leaf_table[-1])
    for leaf in range(n_leaves):
        first, n = leaf_slots[leaf], leaf_slots[leaf + 1] - leaf_slots[leaf]
        width = leaf_columns[leaf + 1] - leaf_columns[leaf]
        for mask in range(1 << n):
            for j in range(n):
                table[leaf_table[leaf] + mask * width + column_of_slot[first + j]] += by_slot[
                    slot_table[leaf] + mask * n + j
                ]
    return leaf_columns, column_group[: leaf_columns[-1]], leaf_table, table


@numba.njit(cache=True)
def _binomial(n: int, k: int) -> float:
    out = 1.0
    for i in range(k):
        out = out * (n - i) / (i + 1)
    return out


@numba.njit(cache=True, inline="always")
def _goes_left(
    value: float,
    threshold: float,
    categorical: bool,
    default_left: bool,
    missing: int,
    cats: np.ndarray,
    first: int,
    last: int,
) -> bool:
    """LightGBM's NumericalDecision and CategoricalDecision (include/LightGBM/tree.h)."""
    if categorical:
        if np.isnan(value) or value < 0 or int(value) < 0:
            return False
        category = int(value)
        for at in range(first, last):  # noqa: SIM110 (Numba compiles loops, not any())
            if cats[at] == category:
                return True
        return False
    if np.isnan(value) and missing != 2:
        value = 0.0
    if (missing == 1 and abs(value) <= ZERO_THRESHOLD) or (missing == 2 and np.isnan(value)):
        return default_left
    return value <= threshold


@numba.njit(cache=True, parallel=True)
def _grouped_shap(
    rows: np.ndarray,
    n_groups: int,
    tree_nodes: np.ndarray,
    tree_leaves: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_categorical: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_cats: np.ndarray,
    cats: np.ndarray,
    node_left: np.ndarray,
    node_right: np.ndarray,
    node_slot: np.ndarray,
    leaf_slots: np.ndarray,
    leaf_columns: np.ndarray,
    column_group: np.ndarray,
    leaf_table: np.ndarray,
    table: np.ndarray,
) -> np.ndarray:
    n_rows, n_trees = rows.shape[0], len(tree_nodes) - 1
    out = np.zeros((n_rows, n_groups))
    widest_nodes, widest_leaves = 1, 1
    for tree in range(n_trees):
        widest_nodes = max(widest_nodes, tree_nodes[tree + 1] - tree_nodes[tree])
        widest_leaves = max(widest_leaves, tree_leaves[tree + 1] - tree_leaves[tree])
    # Trees outside, rows inside: a tree's tables stay in cache for a task's rows.
    for task in numba.prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        node_mask = np.empty(widest_nodes, dtype=np.int64)
        leaf_mask = np.empty(widest_leaves, dtype=np.int64)
        for tree in range(n_trees):
            first_node, first_leaf = tree_nodes[tree], tree_leaves[tree]
            n_nodes = tree_nodes[tree + 1] - first_node
            for row in range(task * ROWS_PER_TASK, min(n_rows, (task + 1) * ROWS_PER_TASK)):
                # Which path features the row agrees with, top-down: bit s is cleared below a
                # node on slot s whose split the row does not take.
                node_mask[0] = -1
                for local in range(n_nodes):
                    node = first_node + local
                    mask = node_mask[local]
                    bit = np.int64(1) << node_slot[node]
                    if _goes_left(
                        rows[row, node_feature[node]],
                        node_threshold[node],
                        node_categorical[node],
                        node_default_left[node],
                        node_missing[node],
                        cats,
                        node_cats[node],
                        node_cats[node + 1],
                    ):
                        left_mask, right_mask = mask, mask & ~bit
                    else:
                        left_mask, right_mask = mask & ~bit, mask
                    child = node_left[node]
                    if child >= 0:
                        node_mask[child] = left_mask
                    else:
                        leaf_mask[~child] = left_mask
                    child = node_right[node]
                    if child >= 0:
                        node_mask[child] = right_mask
                    else:
                        leaf_mask[~child] = right_mask
                for local in range(tree_leaves[tree + 1] - first_leaf):
                    leaf = first_leaf + local
                    n = leaf_slots[leaf + 1] - leaf_slots[leaf]
                    first_column = leaf_columns[leaf]
                    width = leaf_columns[leaf + 1] - first_column
                    at = leaf_table[leaf] + (leaf_mask[local] & ((1 << n) - 1)) * width
                    for c in range(width):
                        out[row, column_group[first_column + c]] += table[at + c]
    return out
