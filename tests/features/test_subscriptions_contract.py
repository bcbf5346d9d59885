"""The subscriptions table of the contract: loading, its rules, quarantine and point in time."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from features.io import load_tables, validate_folder, write_tables
from features.schema import SUBSCRIPTIONS, TABLE_SPECS, Tables, future_from, terms_known_at
from features.validation import (
    REASON_BOOL,
    REASON_CANCEL_AFTER_END,
    REASON_END_NOT_AFTER_START,
    REASON_OVERLAP,
    REASON_TIMESTAMP,
    REASON_WHOLE,
    DataValidationError,
    Problem,
)

TRANSACTIONS_CSV = """\
customer_id,ts,amount
c1,2026-01-05,20
c2,2026-01-10,12
"""
HEADER = (
    "customer_id,start_ts,end_ts,plan,amount,billing_period_months,discount,quantity,"
    "cancel_ts,trial\n"
)
# c1 renews monthly (a term starting as the last ends is no overlap) with an add-on beside it;
# c2 is annual and gave notice; c3 has a term and no transaction.
SUBSCRIPTIONS_CSV = HEADER + (
    "c1,2026-01-01,2026-02-01,pro,30,1,0.1,3,,no\n"
    "c1,2026-02-01,2026-03-01,pro,30,1,,3,,False\n"
    "c1,2026-01-15,2026-02-15,seats-addon,5,1,,2,,\n"
    "c2,2025-06-01T12:00:00+02:00,2026-06-01T10:00:00Z,basic,120,12,0,1,2026-02-20,YES\n"
    "c3,2026-01-01,2026-01-15,,0,,,,,1\n"
)


def _folder(tmp_path: Path, subscriptions: str, transactions: str = TRANSACTIONS_CSV) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transactions.csv").write_text(transactions)
    (folder / "subscriptions.csv").write_text(textwrap.dedent(subscriptions))
    return folder


def _errors(folder: Path) -> list[Problem]:
    with pytest.raises(DataValidationError) as caught:
        load_tables(folder)
    return caught.value.problems


def test_the_table_is_optional_and_in_the_contract() -> None:
    assert TABLE_SPECS["subscriptions"] is SUBSCRIPTIONS and not SUBSCRIPTIONS.required
    assert SUBSCRIPTIONS.column_names == [
        "customer_id",
        "start_ts",
        "end_ts",
        "plan",
        "amount",
        "billing_period_months",
        "discount",
        "quantity",
        "cancel_ts",
        "trial",
    ]
    assert [c.name for c in SUBSCRIPTIONS.columns if c.required] == [
        "customer_id",
        "start_ts",
        "end_ts",
    ]


def test_csv_loads_typed_terms(tmp_path: Path) -> None:
    loaded = load_tables(_folder(tmp_path, SUBSCRIPTIONS_CSV))
    subs = loaded.tables.subscriptions

    assert subs is not None and len(subs) == 5
    assert subs.dtypes.astype(str).to_dict() == {
        "customer_id": "str",
        "start_ts": "datetime64[us]",
        "end_ts": "datetime64[us]",
        "plan": "str",
        "amount": "float64",
        "billing_period_months": "float64",
        "discount": "float64",
        "quantity": "float64",
        "cancel_ts": "datetime64[us]",
        "trial": "boolean",
    }
    assert subs["trial"].tolist() == [False, False, pd.NA, True, True]
    # Zoned times are converted to naive UTC, as in every table.
    assert subs.loc[3, "start_ts"] == pd.Timestamp("2025-06-01T10:00:00")
    assert subs.loc[3, "end_ts"] == pd.Timestamp("2026-06-01T10:00:00")
    assert pd.isna(subs.loc[4, "plan"]) and np.isnan(subs.loc[4, "billing_period_months"])
    infos = [p.render() for p in loaded.report.infos]
    assert any("1 customer in subscriptions without any transaction" in i for i in infos)
    assert any("c3" in i for i in infos)
    assert loaded.report.ok and not loaded.report.warnings


def test_parquet_loads_as_csv_does(tmp_path: Path) -> None:
    from_csv = load_tables(_folder(tmp_path / "csv", SUBSCRIPTIONS_CSV)).tables.subscriptions
    assert from_csv is not None
    folder = tmp_path / "parquet"
    folder.mkdir()
    (folder / "transactions.csv").write_text(TRANSACTIONS_CSV)
    native = pa.table(
        {
            "customer_id": from_csv["customer_id"].to_list(),
            "start_ts": pa.array(from_csv["start_ts"], pa.timestamp("ms")),
            "end_ts": pa.array(from_csv["end_ts"], pa.timestamp("ms")),
            "plan": pa.array(from_csv["plan"], pa.string(), from_pandas=True),
            "amount": from_csv["amount"].to_numpy(),
            # Parquet writers often store whole numbers as integers.
            "billing_period_months": pa.array([1, 1, 1, 12, None], pa.int32()),
            "discount": from_csv["discount"].to_numpy(),
            "quantity": from_csv["quantity"].to_numpy(),
            "cancel_ts": pa.array(from_csv["cancel_ts"], pa.timestamp("us")),
            "trial": pa.array([False, False, None, True, True], pa.bool_()),
        }
    )
    pq.write_table(native, folder / "subscriptions.parquet")

    from_parquet = load_tables(folder).tables.subscriptions

    assert_frame_equal(from_parquet, from_csv)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_tables_round_trip(tmp_path: Path, fmt: str) -> None:
    loaded = load_tables(_folder(tmp_path, SUBSCRIPTIONS_CSV)).tables
    out = tmp_path / "out"

    written = write_tables(loaded, out, fmt)  # type: ignore[arg-type]
    again = load_tables(out).tables

    assert written["subscriptions"].name == f"subscriptions.{fmt}"
    assert again.subscriptions is not None and loaded.subscriptions is not None
    assert_frame_equal(again.subscriptions, loaded.subscriptions)
    # A folder written without the table loses the stale file.
    write_tables(replace(loaded, subscriptions=None), out, fmt)  # type: ignore[arg-type]
    assert load_tables(out).tables.subscriptions is None


@pytest.mark.parametrize("spelling", ["true", "False", " yes ", "NO", "1", "0"])
def test_flags_take_the_documented_spellings(tmp_path: Path, spelling: str) -> None:
    text = HEADER + f"c1,2026-01-01,2026-02-01,pro,1,1,0,1,,{spelling}\n"
    subs = load_tables(_folder(tmp_path, text)).tables.subscriptions
    assert subs is not None
    assert subs["trial"].tolist() == [spelling.strip().lower() in ("true", "yes", "1")]


@pytest.mark.parametrize("spelling", ["maybe", "2", "t", "y", "-1", "1.5"])
def test_other_flag_spellings_are_refused_naming_the_line(tmp_path: Path, spelling: str) -> None:
    text = HEADER + "c1,2026-01-01,2026-02-01,pro,1,1,0,1,,yes\n"
    text += f"c1,2026-02-01,2026-03-01,pro,1,1,0,1,,{spelling}\n"
    problems = _errors(_folder(tmp_path, text))
    assert [(p.column, p.message, p.rows) for p in problems] == [("trial", REASON_BOOL, (3,))]


def test_parquet_flags_as_numbers_are_0_or_1(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transactions.csv").write_text(TRANSACTIONS_CSV)
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c1", "c1"],
                "start_ts": pa.array([pd.Timestamp(f"2026-0{m}-01") for m in (1, 2, 3)]),
                "end_ts": pa.array([pd.Timestamp(f"2026-0{m}-01") for m in (2, 3, 4)]),
                "trial": pa.array([1, 0, 2], pa.int8()),
            }
        ),
        folder / "subscriptions.parquet",
    )
    problems = _errors(folder)
    assert [(p.column, p.message, p.rows) for p in problems] == [("trial", REASON_BOOL, (3,))]


# Each rule: the bad rows (CSV lines; the header is line 1) and the problem that names them.
RULES = {
    "end at start": ("c1,2026-03-01,2026-03-01,pro,,,,,,\n", "end_ts", REASON_END_NOT_AFTER_START),
    "end before start": (
        "c1,2026-03-01,2026-02-01,pro,,,,,,\n",
        "end_ts",
        REASON_END_NOT_AFTER_START,
    ),
    "notice after the end": (
        "c1,2026-03-01,2026-04-01,pro,,,,,2026-04-02,\n",
        "cancel_ts",
        REASON_CANCEL_AFTER_END,
    ),
    "discount above 1": ("c1,2026-03-01,2026-04-01,pro,,,1.2,,,\n", "discount", "maximum 1"),
    "discount below 0": ("c1,2026-03-01,2026-04-01,pro,,,-0.1,,,\n", "discount", "minimum 0"),
    "negative price": ("c1,2026-03-01,2026-04-01,pro,-5,,,,,\n", "amount", "minimum 0"),
    "no seats": ("c1,2026-03-01,2026-04-01,pro,,,,0,,\n", "quantity", "not above 0"),
    "zero months": ("c1,2026-03-01,2026-04-01,pro,,0,,,,\n", "billing_period_months", "minimum 1"),
    "a fraction of a month": (
        "c1,2026-03-01,2026-04-01,pro,,1.5,,,,\n",
        "billing_period_months",
        REASON_WHOLE,
    ),
}
GOOD_TERM = "c1,2026-01-01,2026-02-01,pro,30,1,0,1,2026-01-20,no\n"


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_names_its_row(tmp_path: Path, rule: str) -> None:
    row, column, reason = RULES[rule]
    problems = _errors(_folder(tmp_path, HEADER + GOOD_TERM + row))

    assert len(problems) == 1
    assert problems[0].column == column and reason in problems[0].message
    assert problems[0].rows == (3,) and problems[0].n_rows == 1
    assert problems[0].path is not None and problems[0].path.endswith("subscriptions.csv")


def test_notice_on_the_last_day_is_fine(tmp_path: Path) -> None:
    text = HEADER + "c1,2026-03-01,2026-04-01,pro,,,,,2026-04-01,\n"
    assert validate_folder(_folder(tmp_path, text)).ok


@pytest.mark.parametrize(
    ("rows", "overlapping"),
    [
        # A renewal starting as the last term ends, and another customer's term: no overlap.
        (
            [
                "c1,2026-01-01,2026-02-01,pro",
                "c1,2026-02-01,2026-03-01,pro",
                "c2,2026-01-15,2026-02-15,pro",
            ],
            (),
        ),
        # Another plan (an add-on) runs beside the main plan.
        (["c1,2026-01-01,2026-02-01,pro", "c1,2026-01-15,2026-02-15,addon"], ()),
        # The same plan twice at once: both named, whatever the file order.
        (
            [
                "c1,2026-02-01,2026-03-01,pro",
                "c1,2026-01-01,2026-02-01,pro",
                "c1,2026-02-15,2026-03-15,pro",
            ],
            (2, 4),
        ),
        # One long term over two short ones that follow each other: all three.
        (
            [
                "c1,2026-01-01,2026-12-01,pro",
                "c1,2026-03-01,2026-04-01,pro",
                "c1,2026-04-01,2026-05-01,pro",
                "c1,2027-01-01,2027-02-01,pro",
            ],
            (2, 3, 4),
        ),
        # Terms without a plan are one plan of the customer.
        (["c1,2026-01-01,2026-02-01,", "c1,2026-01-31,2026-02-28,"], (2, 3)),
        # Same start: both.
        (["c1,2026-01-01,2026-02-01,pro", "c1,2026-01-01,2026-01-10,pro"], (2, 3)),
    ],
)
def test_overlapping_terms_of_one_plan_are_named(
    tmp_path: Path, rows: list[str], overlapping: tuple[int, ...]
) -> None:
    text = "customer_id,start_ts,end_ts,plan\n" + "".join(r + "\n" for r in rows)
    report = validate_folder(_folder(tmp_path, text))

    found = [p for p in report.errors if p.message == REASON_OVERLAP]
    if not overlapping:
        assert report.ok, report.render()
    else:
        assert len(found) == 1 and report.errors == found
        assert found[0].rows == overlapping and found[0].n_rows == len(overlapping)


def test_without_a_plan_column_a_customers_terms_must_not_overlap(tmp_path: Path) -> None:
    text = "customer_id,start_ts,end_ts\nc1,2026-01-01,2026-02-01\nc1,2026-01-20,2026-02-20\n"
    text += "c2,2026-01-20,2026-02-20\n"
    problems = _errors(_folder(tmp_path, text))
    assert [(p.message, p.rows) for p in problems] == [(REASON_OVERLAP, (2, 3))]


def test_a_term_refused_for_its_dates_is_not_also_an_overlap(tmp_path: Path) -> None:
    text = "customer_id,start_ts,end_ts,plan\nc1,2026-01-01,2026-02-01,pro\n"
    text += "c1,2026-01-20,2026-01-10,pro\nc1,2026-01-20,not-a-date,pro\n"
    problems = _errors(_folder(tmp_path, text))
    assert [(p.column, p.message, p.rows) for p in problems] == [
        ("end_ts", REASON_TIMESTAMP, (4,)),
        ("end_ts", REASON_END_NOT_AFTER_START, (3,)),
    ]


def test_missing_required_columns_and_values_are_errors(tmp_path: Path) -> None:
    no_end = _errors(_folder(tmp_path / "a", "customer_id,start_ts\nc1,2026-01-01\n"))
    assert [(p.column, p.message) for p in no_end] == [("end_ts", "missing required column")]
    empty_start = _errors(_folder(tmp_path / "b", "customer_id,start_ts,end_ts\nc1,,2026-01-01\n"))
    assert [(p.column, p.message, p.rows) for p in empty_start] == [
        ("start_ts", "missing value", (2,))
    ]


def test_quarantine_sets_bad_terms_aside_and_loads_the_rest(tmp_path: Path) -> None:
    rows = [
        GOOD_TERM,
        "c1,2026-02-01,2026-03-01,pro,30,1,0,1,,maybe\n",  # line 3: a bad flag
        "c2,2026-01-01,2026-02-01,basic,10,1,0,1,,\n",  # lines 4-5: overlapping
        "c2,2026-01-20,2026-02-20,basic,10,1,0,1,,\n",
        "c3,2026-01-01,2026-02-01,basic,10,1,0,1,2026-03-01,\n",  # line 6: notice after the end
    ]
    folder = _folder(tmp_path, HEADER + "".join(rows))
    quarantine = tmp_path / "quarantine"

    result = load_tables(folder, quarantine_dir=quarantine)

    subs = result.tables.subscriptions
    assert subs is not None and subs["customer_id"].tolist() == ["c1"]
    assert result.report.quarantined == {"subscriptions": 4}
    set_aside = pd.read_csv(quarantine / "subscriptions.csv", dtype=str)
    assert set_aside["source_row"].astype(int).tolist() == [3, 4, 5, 6]
    problems = set_aside.set_index(set_aside["source_row"].astype(int))["problem"]
    assert problems[3] == f"trial: {REASON_BOOL}"
    assert problems[4] == problems[5] == f"start_ts: {REASON_OVERLAP}"
    assert problems[6] == f"cancel_ts: {REASON_CANCEL_AFTER_END}"
    assert set_aside.loc[0, "trial"] == "maybe"  # raw values kept
    assert all(p.quarantined for p in result.report.warnings)


def test_a_future_start_or_notice_is_flagged_and_a_future_end_is_not(tmp_path: Path) -> None:
    ahead = future_from()
    later = (ahead + pd.Timedelta(days=40)).date()
    soon = (ahead + pd.Timedelta(days=5)).date()
    text = HEADER + (
        f"c1,2026-01-01,{later},pro,,,,,,\n"  # an annual term running on: normal
        f"c2,{soon},{later},pro,,,,,,\n"  # a term not started yet
        f"c3,2026-01-01,{later},pro,,,,,{soon},\n"  # a notice not given yet
    )
    folder = _folder(tmp_path, text)

    report = validate_folder(folder)
    kept = load_tables(folder).tables.subscriptions
    quarantined = load_tables(folder, quarantine_dir=tmp_path / "q")

    assert report.ok
    flagged = {(p.column, p.rows) for p in report.warnings if "in the future" in p.message}
    assert flagged == {("start_ts", (3,)), ("cancel_ts", (4,))}
    assert kept is not None and len(kept) == 3  # kept with a warning, as future transactions
    set_aside = quarantined.tables.subscriptions
    assert set_aside is not None and set_aside["customer_id"].tolist() == ["c1"]


# --- point in time ------------------------------------------------------------------------------


def _terms() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.array(["a", "a", "b", "c"], dtype="str"),
            "start_ts": pd.to_datetime(
                ["2026-01-01", "2026-02-01", "2026-01-10", "2026-03-01"]
            ).astype("datetime64[us]"),
            "end_ts": pd.to_datetime(
                ["2026-02-01", "2026-03-01", "2027-01-10", "2026-04-01"]
            ).astype("datetime64[us]"),
            "cancel_ts": pd.to_datetime([None, "2026-02-10", "2026-02-01", None]).astype(
                "datetime64[us]"
            ),
            "trial": pd.array([True, False, None, False], dtype="boolean"),
        }
    )


def test_terms_known_at_drop_later_starts_and_later_notices() -> None:
    terms = _terms()
    before = terms.copy()
    cutoff = pd.Timestamp("2026-02-01")

    known = terms_known_at(terms, cutoff)

    # a's second term starts at the cutoff (not before it), c's after: both unknown.
    assert known["customer_id"].tolist() == ["a", "b"]
    # b's notice was given at the cutoff: not known yet. Its end in 2027 is known (scheduled).
    assert known["cancel_ts"].isna().all()
    assert known["end_ts"].tolist() == [pd.Timestamp("2026-02-01"), pd.Timestamp("2027-01-10")]
    assert_frame_equal(terms, before)  # the input is not changed
    later = terms_known_at(terms, pd.Timestamp("2026-02-01T00:00:01"))
    assert later["cancel_ts"].tolist()[2] == pd.Timestamp("2026-02-01")


def test_tables_before_applies_the_terms_rule() -> None:
    tables = Tables(
        transactions=pd.DataFrame(
            {
                "customer_id": pd.array(["a"], dtype="str"),
                "ts": pd.to_datetime(["2026-01-05"]).astype("datetime64[us]"),
                "amount": [1.0],
            }
        ),
        subscriptions=_terms(),
    )
    cutoff = pd.Timestamp("2026-02-05")
    past = tables.before(cutoff)
    assert past.subscriptions is not None
    assert_frame_equal(past.subscriptions, terms_known_at(_terms(), cutoff))
    assert past.subscriptions["cancel_ts"].tolist()[1:] == [pd.NaT, pd.Timestamp("2026-02-01")]
    assert Tables(transactions=tables.transactions).before(cutoff).subscriptions is None


@pytest.mark.parametrize("seed", range(5))
def test_nothing_at_or_after_the_cutoff_changes_what_is_known(seed: int) -> None:
    """Point in time: rewriting every future fact (later terms, later notices) changes nothing."""
    rng = np.random.default_rng(seed)
    n = 40
    start = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 200, n), unit="D")
    length = pd.to_timedelta(rng.integers(1, 400, n), unit="D")
    notice = start + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    terms = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i % 7}" for i in range(n)], dtype="str"),
            "start_ts": start.astype("datetime64[us]"),
            "end_ts": (start + length).astype("datetime64[us]"),
            "cancel_ts": notice.where(rng.random(n) < 0.5).astype("datetime64[us]"),
        }
    )
    cutoff = pd.Timestamp("2026-04-01")
    rewritten = terms.copy()
    later_notice = rewritten["cancel_ts"] >= cutoff
    rewritten.loc[later_notice, "cancel_ts"] = cutoff + pd.Timedelta(days=1)
    not_started = rewritten["start_ts"] >= cutoff
    rewritten.loc[not_started, "end_ts"] = pd.Timestamp("2030-01-01")
    extra = rewritten.head(3).assign(start_ts=cutoff, end_ts=cutoff + pd.Timedelta(days=30))
    rewritten = pd.concat([rewritten, extra], ignore_index=True)

    known = terms_known_at(terms, cutoff).reset_index(drop=True)
    assert_frame_equal(known, terms_known_at(rewritten, cutoff).reset_index(drop=True))
    assert (known["start_ts"] < cutoff).all()
    assert not (known["cancel_ts"] >= cutoff).any()


@pytest.mark.parametrize("seed", range(3))
def test_overlaps_match_a_pairwise_check(tmp_path: Path, seed: int) -> None:
    """The sorted sweep names exactly the terms a comparison of every pair names."""
    rng = np.random.default_rng(seed)
    n = 60
    start, length = rng.integers(0, 90, n), rng.integers(1, 25, n)
    customer, plan = rng.choice(["a", "b", "c"], n), rng.choice(["p", "q", ""], n)
    day = pd.Timestamp("2026-01-01")
    text = "customer_id,start_ts,end_ts,plan\n" + "".join(
        f"{c},{(day + pd.Timedelta(days=int(s))).date()},"
        f"{(day + pd.Timedelta(days=int(s + d))).date()},{p}\n"
        for c, s, d, p in zip(customer, start, length, plan, strict=True)
    )
    end = start + length
    expected = [
        i + 2  # the CSV line
        for i in range(n)
        if any(
            j != i
            and (customer[j], plan[j]) == (customer[i], plan[i])
            and start[i] < end[j]
            and start[j] < end[i]
            for j in range(n)
        )
    ]

    quarantine = tmp_path / "quarantine"
    load_tables(_folder(tmp_path, text), quarantine_dir=quarantine)

    set_aside = pd.read_csv(quarantine / "subscriptions.csv")
    assert expected and set_aside["source_row"].tolist() == expected
    assert (set_aside["problem"] == f"start_ts: {REASON_OVERLAP}").all()
