"""The campaign's 0/1 knapsack: the better of greedy and best-single-first (`plan` says why)."""

from __future__ import annotations

from typing import Literal

import numpy as np

Rule = Literal["greedy", "best_single_first"]

RULE_TEXT: dict[Rule, str] = {
    "greedy": "greedy by expected net value per unit of cost",
    "best_single_first": (
        "best single customer first (by expected net value), then greedy by net value per unit "
        "of cost: it beat the plain greedy"
    ),
}

# Budget comparisons forgive float rounding of summed costs (0.1 + 0.2 > 0.3).
_REL_TOL = 1e-9


def select(cost: np.ndarray, net: np.ndarray, budget: float) -> tuple[np.ndarray, Rule]:
    """Positions (into `cost`/`net`) of the chosen items in the order taken, and the rule used.

    Ties in value per unit of cost go to the larger net value, then to the earlier position.
    """
    if not len(cost):
        return np.empty(0, dtype=np.int64), "greedy"
    priced = cost > 0
    ratio = np.where(priced, net / np.where(priced, cost, 1.0), np.inf)
    # lexsort's last key is the primary one; the position makes the order total.
    order = np.lexsort((np.arange(len(cost)), -net, -ratio))
    limit = budget + _REL_TOL * max(budget, 1.0)

    greedy = order[greedy_fill(cost[order], limit)]
    greedy_net = net[greedy].sum()

    fits = cost[order] <= limit
    if not fits.any():
        return greedy, "greedy"
    # argmax takes the first maximum: the tie goes to the better ratio.
    best_pos = int(np.flatnonzero(fits)[np.argmax(net[order][fits])])
    best = order[best_pos]
    rest = np.delete(order, best_pos)
    filled = rest[greedy_fill(cost[rest], limit - cost[best])]
    single_first = np.concatenate(([best], filled))
    if net[single_first].sum() > greedy_net:
        return single_first, "best_single_first"
    return greedy, "greedy"


def greedy_fill(cost: np.ndarray, limit: float) -> np.ndarray:
    """Positions taken by walking `cost` in order, taking each item that fits what is left.

    Vectorised by rounds: among the items that fit on their own, the longest prefix whose running
    total fits is taken; the next one (the first that did not fit) is passed over, and so is every
    item at least as dear, since the budget left is now below its cost. Each round therefore
    retires a distinct cost value: with per-action costs, a handful of rounds.
    """
    taken: list[np.ndarray] = []
    left = limit
    pending = np.arange(len(cost))
    while pending.size:
        pending = pending[cost[pending] <= left]
        if not pending.size:
            break
        spent = np.cumsum(cost[pending])
        n_fit = int(np.searchsorted(spent, left, side="right"))
        taken.append(pending[:n_fit])
        left -= float(spent[n_fit - 1])
        pending = pending[n_fit + 1 :]
    return np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)
