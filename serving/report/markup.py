"""The dashboard's HTML building blocks: number formats, escaping, inline SVG charts, tables."""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd


def money(value: float | None) -> str:
    """A currency amount, compact (1.2M, 35.4k) for the cards."""
    if value is None or not math.isfinite(value):
        return "n/a"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.1f}{suffix}"
    return f"{value:,.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    """A share in 0-1 as a percentage."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def number(value: float | None, digits: int = 0) -> str:
    """A plain number with thousands separators."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def esc(value: object) -> str:
    """Text for HTML."""
    return html.escape(str(value), quote=True)


def svg(
    draw: Callable[[Any], None], width: float = 7.0, height: float = 3.2, title: str = ""
) -> str:
    """A matplotlib figure as inline SVG: text stays text, nothing is fetched."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        fig = plt.figure(figsize=(width, height))
        try:
            draw(fig)
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
        finally:
            plt.close(fig)
    text = buffer.getvalue()
    start = text.find("<svg")
    label = f' role="img" aria-label="{esc(title)}"' if title else ""
    return f'<div class="chart"{label}>{text[start:]}</div>'


def card(label: str, value: str, sub: str = "", warn: bool = False) -> str:
    """One headline figure."""
    kind = "kpi warn" if warn else "kpi"
    return (
        f'<div class="{kind}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div><div class="sub">{esc(sub)}</div></div>'
    )


def missing(what: str) -> str:
    """The sentence a section shows when the data does not have its figures."""
    return f'<p class="missing">{esc(what)}: not in this data.</p>'


def html_table(
    frame: pd.DataFrame,
    formats: Mapping[str, Callable[[Any], str]],
    headers: Mapping[str, str],
    text_columns: Iterable[str] = (),
    css: Mapping[str, str] | None = None,
) -> str:
    """A frame as an HTML table, each column formatted by `formats` (default: str)."""
    text = set(text_columns)
    css = css or {}
    columns = list(frame.columns)

    def cls(column: str) -> str:
        name = css.get(column, "text" if column in text else "")
        return f' class="{name}"' if name else ""

    head = "".join(f"<th{cls(c)}>{esc(headers.get(c, c))}</th>" for c in columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(columns, record, strict=True):
            shown = "" if _is_missing(value) else formats.get(column, str)(value)
            cells.append(f"<td{cls(column)}>{esc(shown)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
