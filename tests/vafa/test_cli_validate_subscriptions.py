"""`vafa validate` on a subscriptions table: each rule names its rows and exits 3.

The command runs in this process through `vafa.cli.app.run`, the entry point, so exit codes
and messages are the user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from features.validation import (
    REASON_BOOL,
    REASON_CANCEL_AFTER_END,
    REASON_END_NOT_AFTER_START,
    REASON_OVERLAP,
)

TRANSACTIONS = "customer_id,ts,amount\nc1,2026-01-05,10\nc2,2026-02-01,5\n"
HEADER = "customer_id,start_ts,end_ts,plan,discount,cancel_ts,trial\n"
GOOD = "c1,2026-01-01,2026-02-01,pro,0.2,2026-01-25,yes\nc1,2026-02-01,2026-03-01,pro,,,no\n"


def _folder(tmp_path: Path, subscriptions: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transactions.csv").write_text(TRANSACTIONS)
    (folder / "subscriptions.csv").write_text(subscriptions)
    return folder


def test_a_valid_table_passes_and_is_counted(vafa: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, HEADER + GOOD + "c9,2026-01-01,2026-02-01,,,,\n")

    done = vafa("validate", "--data", str(folder))

    assert done.code == 0, done.out
    assert f"subscriptions: 3 rows from {folder / 'subscriptions.csv'}" in done.out
    assert "1 customer in subscriptions without any transaction" in done.out


# Rows appended after the two good terms (lines 2-3): the column, reason and lines named.
RULES = {
    "end not after start": (
        "c2,2026-03-01,2026-02-28,pro,,,\n",
        f"column 'end_ts': {REASON_END_NOT_AFTER_START}; 1 row: line 4 '2026-02-28'",
    ),
    "notice after the end": (
        "c2,2026-03-01,2026-04-01,pro,,2026-04-03,\n",
        f"column 'cancel_ts': {REASON_CANCEL_AFTER_END}; 1 row: line 4 '2026-04-03'",
    ),
    "discount over 1": (
        "c2,2026-03-01,2026-04-01,pro,1.5,,\n",
        "column 'discount': value above the maximum 1; 1 row: line 4 '1.5'",
    ),
    "discount under 0": (
        "c2,2026-03-01,2026-04-01,pro,-0.5,,\n",
        "column 'discount': value below the minimum 0; 1 row: line 4 '-0.5'",
    ),
    "overlap of one plan": (
        "c1,2026-02-15,2026-03-15,pro,,,\n",
        f"column 'start_ts': {REASON_OVERLAP}; 2 rows: line 3 '2026-02-01', line 4 '2026-02-15'",
    ),
    "a flag spelled otherwise": (
        "c2,2026-03-01,2026-04-01,pro,,,sometimes\n",
        f"column 'trial': {REASON_BOOL}; 1 row: line 4 'sometimes'",
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_exits_3_naming_file_column_and_rows(
    vafa: Any, tmp_path: Path, rule: str
) -> None:
    row, expected = RULES[rule]
    folder = _folder(tmp_path, HEADER + GOOD + row)

    done = vafa("validate", "--data", str(folder))

    assert done.code == 3
    assert "INVALID (1 error," in done.out
    assert f"{folder / 'subscriptions.csv'}, {expected}" in done.out


def test_without_a_plan_column_overlapping_terms_of_a_customer_exit_3(
    vafa: Any, tmp_path: Path
) -> None:
    text = "customer_id,start_ts,end_ts\nc1,2026-01-01,2026-03-01\nc2,2026-01-01,2026-03-01\n"
    folder = _folder(tmp_path, text + "c1,2026-02-01,2026-04-01\n")

    done = vafa("validate", "--data", str(folder))

    assert done.code == 3
    assert f"column 'start_ts': {REASON_OVERLAP}; 2 rows: line 2 '2026-01-01', line 4" in done.out
