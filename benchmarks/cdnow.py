"""Convert the public CDNOW transactions shipped with `lifetimes` into a Vafa data folder.

Source: `lifetimes/datasets/CDNOW_master.txt` in the installed wheel (found with
`importlib.util.find_spec`; `lifetimes` itself is never imported, it may not import with numpy 2).
It is the full CDNOW cohort of Fader & Hardie: every customer made a first purchase at the online
CD shop CDNOW in the first quarter of 1997, and the file follows them to the end of June 1998.

Format (checked against the file): plain text, CRLF line ends, one header line
` customer_id  date number_of_cds  dollar_value`, then 69,659 rows of four whitespace-separated
fields:

1. customer id: five digits, zero-padded (`00001` to `23570`; 23,570 customers);
2. date of the purchase: `yyyymmdd`, 1997-01-01 to 1998-06-30 (no time of day);
3. number of CDs bought: integer >= 1;
4. dollar value of the purchase: decimal >= 0 (80 rows are 0.00).

A customer can have several rows on one day (1,774 customer-days do), and 255 rows repeat an
earlier line exactly (all four fields): they are kept, as Vafa keeps duplicates, and validation
reports them as a warning. The file has no order number, no refund, no margin and no profile or
engagement data.

Mapping to the contract's `transactions` (the only table written): `customer_id` is the id as
written (leading zeros kept), `ts` the date at midnight UTC, `amount` the dollar value. With
`--orders day` (the default) rows of one customer and day share an `order_id`
(`<customer_id>-<yyyymmdd>`), the convention of the BTYD literature and of `lifetimes`, which
count repeat purchase days; `--orders row` writes no `order_id`, so every row is an order. The
CD count has no contract column and is dropped; without a margin column the configured margin
rate applies.

Usage: `.venv/bin/python benchmarks/cdnow.py --out /tmp/cdnow [--format csv] [--orders row]` (or
`-m benchmarks.cdnow` from the repository root)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and training.py
    # would shadow the packages of those names: import from the repository root instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import pandas as pd

from features.io import validate_folder, write_tables
from features.schema import Tables

SOURCE_COLUMNS = ("customer_id", "date", "number_of_cds", "dollar_value")
EXPECTED_ROWS = 69_659


def source_path() -> Path:
    """Where the installed `lifetimes` wheel keeps CDNOW_master.txt (without importing it).

    Raises:
        FileNotFoundError: `lifetimes` is not installed or ships no CDNOW_master.txt.
    """
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lifetimes package is not installed (it is a dev dependency)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed lifetimes wheel")
    return path


def read_cdnow(path: Path) -> pd.DataFrame:
    """The raw file as a frame with the four source columns, checked field by field.

    Raises:
        ValueError: the file does not have the format the module docstring describes.
    """
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=0,
        names=list(SOURCE_COLUMNS),
        dtype={"customer_id": "str", "date": "str", "number_of_cds": "int64"},
    )
    dates = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce")
    problems = {
        "customer id is not five digits": ~raw["customer_id"].str.fullmatch(r"\d{5}"),
        "date is not yyyymmdd": dates.isna(),
        "number of CDs below 1": raw["number_of_cds"] < 1,
        "dollar value missing or negative": ~(raw["dollar_value"] >= 0),
    }
    for what, bad in problems.items():
        if bad.any():
            rows = (bad[bad].index[:5] + 2).tolist()  # 1-based, after the header line
            raise ValueError(f"{path}: {int(bad.sum())} rows where the {what} (lines {rows})")
    return raw.assign(date=dates)


def to_transactions(raw: pd.DataFrame, orders: str = "day") -> pd.DataFrame:
    """The contract's transactions table from the raw rows (see the module docstring)."""
    transactions = pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype("str"),
            "ts": raw["date"].astype("datetime64[us]"),
            "amount": raw["dollar_value"].astype("float64"),
        }
    )
    if orders == "day":
        day = raw["date"].dt.strftime("%Y%m%d")
        transactions["order_id"] = transactions["customer_id"] + "-" + day
    return transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="data folder to write")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument(
        "--orders",
        choices=("day", "row"),
        default="day",
        help="day: one order per customer and day (BTYD convention); row: every row an order",
    )
    args = parser.parse_args()

    path = source_path()
    raw = read_cdnow(path)
    if len(raw) != EXPECTED_ROWS:
        print(f"note: {len(raw):,} rows where the published file has {EXPECTED_ROWS:,}")
    transactions = to_transactions(raw, args.orders)
    written = write_tables(Tables(transactions=transactions), args.out, fmt=args.format)

    days = raw.groupby(["customer_id", "date"]).size()
    print(f"read {path}")
    print(
        f"wrote {written['transactions']}: {len(transactions):,} rows, "
        f"{transactions['customer_id'].nunique():,} customers, "
        f"{transactions['ts'].min().date()} to {transactions['ts'].max().date()}, "
        f"${transactions['amount'].sum():,.2f} in total; "
        f"{int((transactions['amount'] == 0).sum())} rows of $0, "
        f"{int((days > 1).sum()):,} customer-days with several rows"
    )
    first = raw.groupby("customer_id")["date"].min()
    print(f"first purchases: {first.min().date()} to {first.max().date()} (one cohort)")
    report = validate_folder(args.out)
    print(report.render())
    if not report.ok:
        raise SystemExit(3)


if __name__ == "__main__":
    main()
