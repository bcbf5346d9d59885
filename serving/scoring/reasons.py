"""Reasons a person can read: a churn score's largest drivers, in the customer's own numbers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.columns import ColumnData, numbers, row_count

Texts = npt.NDArray[np.object_]


class _Rows:
    """The columns sentences read, for some rows of a frame; sentences are built per column."""

    def __init__(self, data: ColumnData, rows: np.ndarray, n_data: int) -> None:
        self.data = data
        self.rows = rows
        self.n = len(rows)
        self.n_data = n_data

    def number(self, name: str) -> np.ndarray:
        """The column as floats; NaN where it is missing, or for a column of text."""
        return numbers(self.data, name, self.n_data)[self.rows]

    def shown(self, name: str, spec: str = "") -> Texts:
        """`f"{value}"` of each value (`spec` for floats); `None` where the frame lacks it."""
        if name not in self.data:
            return np.full(self.n, "None", dtype=object)
        column = self.data[name]
        if pd.api.types.is_float_dtype(column.dtype):
            return _format(numbers(self.data, name, self.n_data)[self.rows], spec)
        codes, uniques = pd.factorize(
            np.asarray(column, dtype=object)[self.rows], use_na_sentinel=False
        )
        labels = [format(v, spec) if isinstance(v, float) else str(v) for v in uniques]
        return _texts(labels)[codes]


def _texts(labels: list[str]) -> Texts:
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    return out


def _format(values: np.ndarray, spec: str) -> Texts:
    """`format(value, spec)` of every value, each distinct value formatted once."""
    values = np.asarray(values, dtype=np.float64)
    if spec.endswith(".0f"):
        # The same text (both round half to even on the exact binary value) from far fewer
        # distinct values.
        values = np.rint(values)
    # Distinct bit patterns, not values: -0.0 and 0.0 print differently.
    codes, uniques = pd.factorize(values.view(np.int64))
    return _texts([format(v, spec) for v in uniques.view(np.float64).tolist()])[codes]


def _count(values: np.ndarray, one: str, many: str | None = None) -> Texts:
    """A count (NaN counts as none) with its noun: `no orders`, `1 order`, `3 orders`."""
    plural = many or one + "s"
    counts = np.where(np.isnan(values), 0.0, np.rint(values))
    codes, uniques = pd.factorize(counts)
    labels = []
    for value in uniques.tolist():
        n = int(value)
        labels.append(f"no {plural}" if n == 0 else f"{n} {one if n == 1 else plural}")
    return _texts(labels)[codes]


def _fixed(rows: _Rows, text: str) -> Texts:
    return np.full(rows.n, text, dtype=object)


def _messages(rows: _Rows) -> Texts:
    replies = np.zeros(rows.n)
    for kind in ("email_open_90d", "email_click_90d", "sms_click_90d", "push_open_90d"):
        value = rows.number(kind)
        replies += np.where(np.isnan(value), 0.0, value)
    return _count(replies, "reply", "replies") + " to messages in the last 90 days"


def _event(name: str) -> Callable[[_Rows], Texts]:
    def sentence(rows: _Rows) -> Texts:
        days = rows.number(f"days_since_{name}")
        label = name.replace("_", " ")
        out = _fixed(rows, f"no {label} recorded")
        seen = ~np.isnan(days)
        out[seen] = f"last {label} " + _format(days[seen], ".0f") + " days ago"
        return out

    return sentence


def _recency(rows: _Rows) -> Texts:
    days, ratio = rows.number("recency_days"), rows.number("overdue_ratio")
    out = "no purchase for " + _format(days, ".0f") + " days"
    with np.errstate(invalid="ignore"):
        about = ratio >= 2.5
        some = (ratio >= 1.5) & ~about
    out[about] += ", about " + _format(ratio[about], ".0f") + "x their usual gap"
    out[some] += ", " + _format(ratio[some], ".1f") + "x their usual gap"
    return out


def _activity(rows: _Rows) -> Texts:
    days = rows.number("days_since_last_event")
    session = rows.number("days_since_session")
    out = _fixed(rows, "no activity recorded")
    active = ~np.isnan(days)
    out[active] = "no activity for " + _format(days[active], ".0f") + " days"
    visited = ~np.isnan(session)
    out[visited] = "no visit for " + _format(session[visited], ".0f") + " days"
    return out


def _sessions(rows: _Rows) -> Texts:
    recent = _count(rows.number("session_30d"), "session")
    with np.errstate(invalid="ignore"):
        falling = rows.number("sessions_trend_30d") < 0
    out = recent + " in the last 30 days"
    out[falling] = "visits falling: " + recent[falling] + " in the last 30 days, fewer than before"
    return out


def _tickets(rows: _Rows) -> Texts:
    open_ = rows.number("unresolved_tickets")
    out = _count(rows.number("support_ticket_90d"), "support ticket") + " in the last 90 days"
    with np.errstate(invalid="ignore"):
        unresolved = open_ >= 1
    out[unresolved] = _count(open_[unresolved], "unresolved support ticket")
    return out


def _survey(name: str, scale: str, bad: float) -> Callable[[_Rows], Texts]:
    def sentence(rows: _Rows) -> Texts:
        last = rows.number(f"{name}_last")
        out = _fixed(rows, f"no {name.upper()} answer")
        answered = ~np.isnan(last)
        text = f"last {name.upper()} " + _format(last[answered], ".0f") + scale
        if name == "nps":
            text[last[answered] <= bad] += " (detractor)"
        out[answered] = text
        return out

    return sentence


def _orders(rows: _Rows) -> Texts:
    with np.errstate(invalid="ignore"):
        falling = rows.number("orders_trend_90d") < 0
    out = _count(rows.number("n_orders"), "order") + " so far"
    out[falling] = (
        "fewer orders lately: "
        + _count(rows.number("orders_90d")[falling], "order")
        + " in the last 90 days"
    )
    return out


def _content(rows: _Rows) -> Texts:
    out = _count(rows.number("content_view_90d"), "content view") + " in the last 90 days"
    out[rows.number("content_view_total") == 0] = "never used the educational content"
    return out


def _renewal(rows: _Rows) -> Texts:
    days = rows.number("days_to_renewal")
    out = "renewal due in " + _format(days, ".0f") + " days"
    out[np.isnan(days)] = "holds no subscription term"
    return out


def _contract(rows: _Rows) -> Texts:
    mrr = rows.number("mrr")
    out = "pays " + _format(mrr, ",.0f") + " a month"
    out[np.isnan(mrr)] = "holds no subscription term"
    return out


def _notice(rows: _Rows) -> Texts:
    out = _fixed(rows, "no notice given")
    given = rows.number("notice_given") == 1
    ends = "gave notice: the subscription ends in " + _format(
        rows.number("days_to_noticed_end"), ".0f"
    )
    out[given] = ends[given] + " days"
    return out


def _trial(rows: _Rows) -> Texts:
    out = _fixed(rows, "not on a trial")
    on = rows.number("on_trial") == 1
    left = "on a trial, " + _format(rows.number("trial_days_left"), ".0f") + " days left"
    out[on] = left[on]
    return out


def _plan_changes(rows: _Rows) -> Texts:
    return (
        _count(rows.number("downgrades"), "downgrade")
        + ", "
        + _count(rows.number("upgrades"), "upgrade")
    )


def _payments(rows: _Rows) -> Texts:
    return (
        _count(rows.number("payment_failed_90d"), "failed payment")
        + " and "
        + _count(rows.number("payment_late_90d"), "late payment")
        + " in the last 90 days"
    )


FAMILIES: dict[str, tuple[str, Callable[[_Rows], Texts]]] = {
    # family: (regex of its feature columns, its sentences for the rows given)
    "recency": (r"recency_days|overdue_ratio|gap_(mean|std)_days|btyd_.*", _recency),
    "activity": (r"days_since_(last_event|session)", _activity),
    "sessions": (r"session_(total|30d|90d)|sessions_trend_30d", _sessions),
    "tickets": (
        r"unresolved_tickets|(support_ticket|ticket_resolved)_.*|days_since_(support_ticket|ticket_resolved)",
        _tickets,
    ),
    "complaints": (
        r"complaint_.*|days_since_complaint",
        lambda r: _count(r.number("complaint_90d"), "complaint") + " in the last 90 days",
    ),
    "nps": (r"nps_.*|days_since_nps", _survey("nps", "", 6)),
    "csat": (r"csat_.*|days_since_csat", _survey("csat", " of 5", 2)),
    "ces": (r"ces_.*|days_since_ces", _survey("ces", " of 7", 2)),
    "content": (r"content_view_.*|days_since_content_view", _content),
    "discounts": (
        r"discount_.*",
        lambda r: _format(r.number("discount_order_share"), ".0%") + " of orders on discount",
    ),
    "orders": (r"n_orders|n_purchase_days|orders_.*", _orders),
    "spend": (
        r"spend_.*|net_spend|last_order_.*|margin_total",
        lambda r: "spent " + _format(r.number("spend_90d"), ",.0f") + " in the last 90 days",
    ),
    "tenure": (
        r"tenure_days|signup_days",
        lambda r: "customer for " + _format(r.number("tenure_days"), ".0f") + " days",
    ),
    "refunds": (r"refund_.*", lambda r: _count(r.number("refund_count"), "refund")),
    "payments": (r"payment_(late|failed)_.*|days_since_payment_(late|failed)", _payments),
    # Subscriptions (features.subscriptions).
    "renewal": (r"days_to_renewal|renewal_within_(30|90)d|billing_period_months", _renewal),
    "contract": (
        r"mrr|price|plan|term_discount|seats|n_addons|n_terms|renewals|subscription_tenure_days",
        _contract,
    ),
    "plan_changes": (r"upgrades|downgrades|plan_changes", _plan_changes),
    "notice": (r"notice_given|days_to_noticed_end", _notice),
    "trial": (r"on_trial|trial_days_left", _trial),
    "breadth": (
        r"event_breadth_30d",
        lambda r: (
            "used "
            + _format(r.number("event_breadth_30d"), ".0f")
            + " kinds of activity in 30 days"
        ),
    ),
    "channel": (r"dominant_channel.*", lambda r: "buys mostly via " + r.shown("dominant_channel")),
    "messages": (
        r"(email_open|email_click|sms_click|push_open)_.*|days_since_(email_open|email_click|sms_click|push_open)",
        _messages,
    ),
    "views": (
        r"product_view.*|days_since_product_view",
        lambda r: (
            _count(r.number("product_views_since_purchase"), "product view")
            + " since the last purchase"
        ),
    ),
}


@dataclass(frozen=True)
class ReasonModel:
    """Which model columns belong to which reason, precomputed once per model."""

    columns: list[str]
    families: list[str]
    indicator: np.ndarray  # columns x families, 1 where the column belongs to the family

    @classmethod
    def for_columns(cls, columns: list[str]) -> ReasonModel:
        """Map every model column to a family; columns of no named family stand alone."""
        families: list[str] = []
        owner: list[int] = []
        for column in columns:
            family = next(
                (name for name, (pattern, _) in FAMILIES.items() if re.fullmatch(pattern, column)),
                _event_family(column) or column,
            )
            if family not in families:
                families.append(family)
            owner.append(families.index(family))
        indicator = np.zeros((len(columns), len(families)))
        indicator[np.arange(len(columns)), owner] = 1.0
        return cls(columns, families, indicator)

    def family_contributions(self, contributions: np.ndarray) -> np.ndarray:
        """Per-row contributions summed by family (rows x families), from rows x columns."""
        return contributions[:, : len(self.columns)] @ self.indicator

    def top_families(self, by_family: np.ndarray, k: int = 3) -> np.ndarray:
        """Per row, the codes of its k largest risk-raising families, largest first (rows x k).

        -1 fills the places of a row with fewer than k risk-raising families; of two equal
        contributions the family listed first comes first.
        """
        order = np.argsort(-by_family, axis=1, kind="stable")[:, :k]
        raising = np.take_along_axis(by_family, order, axis=1) > 0
        return np.where(raising, order, -1)

    def texts(
        self,
        by_family: np.ndarray,
        frame: ColumnData,
        k: int = 3,
        rows: np.ndarray | None = None,
        none: str = "",
        n: int | None = None,
    ) -> Texts:
        """The reason text per row: its top families' sentences (`top_families`), "; "-joined.

        Each family's sentences are built at once for all the rows that chose it.

        Args:
            by_family: TreeSHAP values summed by family (`family_contributions`).
            frame: the feature rows the sentences quote.
            k: reasons per row, at most.
            rows: positions in `frame` of the contributions' rows (default: all, in order).
            none: the text of a row where nothing raises the risk.
            n: the rows in `frame` (read from a frame when not given).
        """
        n = row_count(frame, n)
        top = self.top_families(by_family, k)
        positions = np.arange(n) if rows is None else np.asarray(rows)
        pieces = np.full(top.shape, "", dtype=object)
        for code in np.unique(top[top >= 0]).tolist():
            at_row, at_rank = np.nonzero(top == code)
            pieces[at_row, at_rank] = _sentences(
                self.families[code], _Rows(frame, positions[at_row], n)
            )
        out = pieces[:, 0].copy()
        for rank in range(1, top.shape[1]):
            more = top[:, rank] >= 0
            out[more] += "; " + pieces[more, rank]
        out[top[:, 0] < 0] = none
        return out

    def top_reasons(
        self, contributions: np.ndarray, rows: pd.DataFrame, k: int = 3
    ) -> tuple[list[str], list[list[str]]]:
        """The k largest risk-raising families per row, as sentences joined by "; ".

        Returns:
            The reason text per row, and the family names behind it (for tests and logs).
        """
        by_family = self.family_contributions(contributions)
        top = self.top_families(by_family, k)
        names = [[self.families[j] for j in row if j >= 0] for row in top.tolist()]
        return self.texts(by_family, rows, k).tolist(), names


def _event_family(column: str) -> str | None:
    """Columns of an event type without a sentence of its own share one generic reason."""
    found = re.fullmatch(r"days_since_(.+)|(.+)_(total|30d|90d|trend_30v60|30d_per_seat)", column)
    return None if found is None else f"event:{found.group(1) or found.group(2)}"


def _sentences(family: str, rows: _Rows) -> Texts:
    if family in FAMILIES:
        return FAMILIES[family][1](rows)
    if family.startswith("event:"):
        return _event(family.removeprefix("event:"))(rows)
    return f"{family.replace('_', ' ')}: " + rows.shown(family, ",.1f")
