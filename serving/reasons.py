"""Reasons a person can read: a churn score's largest drivers, in the customer's own numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

Row = dict[str, float | str | None]


def _num(row: Row, key: str) -> float:
    value = row.get(key)
    if value is None or isinstance(value, str):
        return math.nan
    return float(value)


def _count(value: float, one: str, many: str | None = None) -> str:
    n = 0 if math.isnan(value) else round(value)
    plural = many or one + "s"
    return f"no {plural}" if n == 0 else f"{n} {one if n == 1 else plural}"


def _messages(row: Row) -> str:
    kinds = ("email_open_90d", "email_click_90d", "sms_click_90d", "push_open_90d")
    replies = sum(v for k in kinds if not math.isnan(v := _num(row, k)))
    return f"{_count(replies, 'reply', 'replies')} to messages in the last 90 days"


def _event(name: str) -> Callable[[Row], str]:
    def sentence(row: Row) -> str:
        days = _num(row, f"days_since_{name}")
        label = name.replace("_", " ")
        return f"no {label} recorded" if math.isnan(days) else f"last {label} {days:.0f} days ago"

    return sentence


def _recency(row: Row) -> str:
    days, ratio = _num(row, "recency_days"), _num(row, "overdue_ratio")
    text = f"no purchase for {days:.0f} days"
    if ratio >= 1.5:
        text += (
            f", about {ratio:.0f}x their usual gap"
            if ratio >= 2.5
            else f", {ratio:.1f}x their usual gap"
        )
    return text


def _activity(row: Row) -> str:
    days = _num(row, "days_since_last_event")
    session = _num(row, "days_since_session")
    if not math.isnan(session):
        return f"no visit for {session:.0f} days"
    if math.isnan(days):
        return "no activity recorded"
    return f"no activity for {days:.0f} days"


def _sessions(row: Row) -> str:
    recent, trend = _num(row, "session_30d"), _num(row, "sessions_trend_30d")
    if not math.isnan(trend) and trend < 0:
        return f"visits falling: {_count(recent, 'session')} in the last 30 days, fewer than before"
    return f"{_count(recent, 'session')} in the last 30 days"


def _tickets(row: Row) -> str:
    open_ = _num(row, "unresolved_tickets")
    if open_ >= 1:
        return f"{_count(open_, 'unresolved support ticket')}"
    return f"{_count(_num(row, 'support_ticket_90d'), 'support ticket')} in the last 90 days"


def _survey(name: str, scale: str, bad: float) -> Callable[[Row], str]:
    def sentence(row: Row) -> str:
        last = _num(row, f"{name}_last")
        if math.isnan(last):
            return f"no {name.upper()} answer"
        label = " (detractor)" if name == "nps" and last <= bad else ""
        return f"last {name.upper()} {last:.0f}{scale}{label}"

    return sentence


def _orders(row: Row) -> str:
    recent, trend = _num(row, "orders_90d"), _num(row, "orders_trend_90d")
    if not math.isnan(trend) and trend < 0:
        return f"fewer orders lately: {_count(recent, 'order')} in the last 90 days"
    return f"{_count(_num(row, 'n_orders'), 'order')} so far"


FAMILIES: dict[str, tuple[str, Callable[[Row], str]]] = {
    # family: (regex of its feature columns, sentence)
    "recency": (r"recency_days|overdue_ratio|gap_(mean|std)_days|btyd_.*", _recency),
    "activity": (r"days_since_(last_event|session)", _activity),
    "sessions": (r"session_(total|30d|90d)|sessions_trend_30d", _sessions),
    "tickets": (
        r"unresolved_tickets|(support_ticket|ticket_resolved)_.*|days_since_(support_ticket|ticket_resolved)",
        _tickets,
    ),
    "complaints": (
        r"complaint_.*|days_since_complaint",
        lambda r: f"{_count(_num(r, 'complaint_90d'), 'complaint')} in the last 90 days",
    ),
    "nps": (r"nps_.*|days_since_nps", _survey("nps", "", 6)),
    "csat": (r"csat_.*|days_since_csat", _survey("csat", " of 5", 2)),
    "ces": (r"ces_.*|days_since_ces", _survey("ces", " of 7", 2)),
    "content": (
        r"content_view_.*|days_since_content_view",
        lambda r: (
            "never used the educational content"
            if _num(r, "content_view_total") == 0
            else f"{_count(_num(r, 'content_view_90d'), 'content view')} in the last 90 days"
        ),
    ),
    "discounts": (
        r"discount_.*",
        lambda r: f"{_num(r, 'discount_order_share'):.0%} of orders on discount",
    ),
    "orders": (r"n_orders|n_purchase_days|orders_.*", _orders),
    "spend": (
        r"spend_.*|net_spend|last_order_.*|margin_total",
        lambda r: f"spent {_num(r, 'spend_90d'):,.0f} in the last 90 days",
    ),
    "tenure": (
        r"tenure_days|signup_days",
        lambda r: f"customer for {_num(r, 'tenure_days'):.0f} days",
    ),
    "refunds": (r"refund_.*", lambda r: f"{_count(_num(r, 'refund_count'), 'refund')}"),
    "payments": (
        r"payment_late_.*|days_since_payment_late",
        lambda r: f"{_count(_num(r, 'payment_late_total'), 'late payment')}",
    ),
    "channel": (r"dominant_channel.*", lambda r: f"buys mostly via {r.get('dominant_channel')}"),
    "messages": (
        r"(email_open|email_click|sms_click|push_open)_.*|days_since_(email_open|email_click|sms_click|push_open)",
        _messages,
    ),
    "views": (
        r"product_view.*|days_since_product_view",
        lambda r: (
            _count(_num(r, "product_views_since_purchase"), "product view")
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

    def top_reasons(
        self, contributions: np.ndarray, rows: pd.DataFrame, k: int = 3
    ) -> tuple[list[str], list[list[str]]]:
        """The k largest risk-raising families per row, as sentences joined by "; ".

        Returns:
            The reason text per row, and the family names behind it (for tests and logs).
        """
        by_family = self.family_contributions(contributions)
        order = np.argsort(-by_family, axis=1, kind="stable")[:, :k]
        records = rows.to_dict("records")
        texts, names = [], []
        for i, record in enumerate(records):
            chosen = [self.families[j] for j in order[i] if by_family[i, j] > 0]
            names.append(chosen)
            texts.append("; ".join(_sentence(family, record) for family in chosen))
        return texts, names


def _event_family(column: str) -> str | None:
    """Columns of an event type without a sentence of its own share one generic reason."""
    found = re.fullmatch(r"days_since_(.+)|(.+)_(total|30d|90d)", column)
    return None if found is None else f"event:{found.group(1) or found.group(2)}"


def _sentence(family: str, row: Row) -> str:
    if family in FAMILIES:
        return FAMILIES[family][1](row)
    if family.startswith("event:"):
        return _event(family.removeprefix("event:"))(row)
    value = row.get(family)
    shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
    return f"{family.replace('_', ' ')}: {shown}"
