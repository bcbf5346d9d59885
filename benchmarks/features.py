"""Speed and memory of the feature build, against a DuckDB query of the RFM block in the same run.

Run from the repository root:

    .venv/bin/python -m benchmarks.features                # 250k, 500k and 1M customers
    .venv/bin/python -m benchmarks.features --quick --online

For each size the data is generated once (`generate_tables(n, seed=0)`, ~20 transaction and
~20 event rows per customer) and written as Parquet; every measurement then runs in a fresh
process that loads it with `load_tables`, so its peak memory is its own. Three measurements:

- build: `build_features` on all three tables.
- rfm: our RFM block alone, `build_features` on the transactions only (the customer encoding,
  `transaction_features` and the frame assembly: the same columns the SQL computes).
- duckdb: one hand-written DuckDB query computing the RFM block from the same pandas frame.

Times are the best of `--repeat` runs; peak memory is the child's peak RSS (ru_maxrss) while
measuring, counted from the RSS after loading (the peak is reset after the load where Linux
allows it), so it includes the loaded input. The machine is shared: compare the columns of
one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
SIZES = (250_000, 500_000, 1_000_000)
QUICK_SIZES = (20_000, 40_000)
CHECK_SIZE = 5_000
KINDS = ("build", "rfm", "duckdb")

# The RFM block of `features.rfm.transaction_features`, written as a DuckDB user would: one
# scan of the lines, orders grouped once and reused, conditional aggregates with FILTER, the
# purchase-day gaps with a window, ties broken with arg_max/arg_min over a struct.
RFM_SQL = """
WITH lines AS (
    SELECT customer_id, ts, amount, order_id, margin, category, discount, channel
    FROM transactions
    WHERE ts < $as_of
),
line_features AS (
    SELECT customer_id,
        sum(amount) AS net_spend,
        count(*) FILTER (amount < 0)::DOUBLE AS refund_count,
        coalesce(-sum(amount) FILTER (amount < 0), 0) AS refund_total,
        coalesce(sum(margin), 0) AS margin_total,
        coalesce(sum(discount), 0) AS discount_total,
        count(DISTINCT category)::DOUBLE AS n_categories
    FROM lines
    GROUP BY customer_id
),
orders AS MATERIALIZED (
    SELECT customer_id, min(ts) AS ts, sum(amount) AS amount,
        coalesce(bool_or(discount > 0), false) AS discounted, min(channel) AS channel
    FROM lines
    WHERE amount >= 0 AND order_id IS NOT NULL
    GROUP BY customer_id, order_id
    UNION ALL
    SELECT customer_id, ts, amount, coalesce(discount > 0, false), channel
    FROM lines
    WHERE amount >= 0 AND order_id IS NULL
),
aged AS (
    SELECT *, (epoch_us($as_of) - epoch_us(ts)) / 86400000000.0::DOUBLE AS age
    FROM orders
),
order_features AS (
    SELECT customer_id,
        count(*)::DOUBLE AS n_orders,
        min(age) AS recency_days,
        max(age) AS tenure_days,
        sum(amount) AS spend_total,
        avg(amount) AS spend_mean,
        max(amount) AS spend_max,
        arg_max(amount, {'ts': ts, 'amount': amount}) AS last_order_amount,
        count(*) FILTER (age < 30)::DOUBLE AS orders_30d,
        count(*) FILTER (age < 90)::DOUBLE AS orders_90d,
        count(*) FILTER (age < 180)::DOUBLE AS orders_180d,
        count(*) FILTER (age < 365)::DOUBLE AS orders_365d,
        coalesce(sum(amount) FILTER (age < 30), 0) AS spend_30d,
        coalesce(sum(amount) FILTER (age < 90), 0) AS spend_90d,
        coalesce(sum(amount) FILTER (age < 180), 0) AS spend_180d,
        coalesce(sum(amount) FILTER (age < 365), 0) AS spend_365d,
        count(*) FILTER (age >= 90 AND age < 180)::DOUBLE AS orders_prev,
        coalesce(sum(amount) FILTER (age >= 90 AND age < 180), 0) AS spend_prev,
        avg(discounted::DOUBLE) AS discount_order_share
    FROM aged
    GROUP BY customer_id
),
gaps AS (
    SELECT customer_id, day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap
    FROM (SELECT DISTINCT customer_id, ts::DATE AS day FROM orders)
),
gap_features AS (
    SELECT customer_id,
        count(*)::DOUBLE AS n_purchase_days,
        avg(gap) AS gap_mean_days,
        stddev_samp(gap) AS gap_std_days
    FROM gaps
    GROUP BY customer_id
),
channel_features AS (
    SELECT customer_id,
        arg_min(channel, {'n': -n, 'channel': channel}) AS dominant_channel,
        max(n) / sum(n) AS dominant_channel_share
    FROM (
        SELECT customer_id, channel, count(*) AS n
        FROM orders
        WHERE channel IS NOT NULL
        GROUP BY customer_id, channel
    )
    GROUP BY customer_id
)
SELECT l.*,
    o.* EXCLUDE (customer_id, orders_prev, spend_prev),
    g.* EXCLUDE (customer_id),
    CASE WHEN o.orders_90d + o.orders_prev > 0
        THEN (o.orders_90d - o.orders_prev) / (o.orders_90d + o.orders_prev) END
        AS orders_trend_90d,
    CASE WHEN o.spend_90d + o.spend_prev > 0
        THEN (o.spend_90d - o.spend_prev) / (o.spend_90d + o.spend_prev) END
        AS spend_trend_90d,
    CASE WHEN o.n_orders > 1 AND (o.spend_total - o.last_order_amount) / (o.n_orders - 1) > 0
        THEN o.last_order_amount / ((o.spend_total - o.last_order_amount) / (o.n_orders - 1))
        END AS last_order_vs_mean,
    CASE WHEN g.gap_mean_days > 0 THEN o.recency_days / g.gap_mean_days END AS overdue_ratio,
    c.* EXCLUDE (customer_id)
FROM line_features l
LEFT JOIN order_features o USING (customer_id)
LEFT JOIN gap_features g USING (customer_id)
LEFT JOIN channel_features c USING (customer_id)
ORDER BY customer_id
"""


def duckdb_rfm(transactions: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The RFM block computed by DuckDB straight from the pandas frame, sorted by customer_id."""
    import duckdb

    with duckdb.connect() as con:
        con.register("transactions", transactions)
        return con.execute(RFM_SQL, {"as_of": as_of.to_pydatetime()}).df()


# --- measuring, in a child process ---------------------------------------------------------------


def _rss_gb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def _reset_peak() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux: clear_refs 5); False if denied."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _as_of(transactions: pd.DataFrame) -> pd.Timestamp:
    """The CLI's default cutoff: the day after the last transaction."""
    return pd.Timestamp(transactions["ts"].max()).normalize() + pd.Timedelta(days=1)


def child(kind: str, data: Path, repeat: int = 1) -> dict[str, object]:
    """Load the folder, then time `kind` `repeat` times; the figures of one measurement."""
    from features.build import build_features
    from features.io import load_tables
    from features.schema import Tables

    start = time.perf_counter()
    tables = load_tables(data).tables
    load_seconds = time.perf_counter() - start
    as_of = _as_of(tables.transactions)
    runs = {
        "build": lambda: build_features(tables, as_of),
        "rfm": lambda: build_features(Tables(tables.transactions), as_of),
        "duckdb": lambda: duckdb_rfm(tables.transactions, as_of),
    }
    gc.collect()
    # Loading leaves freed buffers in Arrow's allocator; they are not the input's size.
    pa.default_memory_pool().release_unused()
    loaded = _rss_gb()
    reset = _reset_peak()
    seconds, peak = [], 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        result = runs[kind]()
        seconds.append(time.perf_counter() - start)
        peak = max(peak, _peak_gb())
        del result
        gc.collect()
        reset = _reset_peak() and reset
    return {
        "kind": kind,
        "rows": len(tables.transactions),
        "event_rows": 0 if tables.events is None else len(tables.events),
        "seconds": seconds,
        "load_seconds": load_seconds,
        "loaded_gb": loaded,
        "peak_gb": peak,
        "peak_reset": reset,
    }


def _run_child(args: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.features", *args],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _seconds(run: dict[str, object]) -> list[float]:
    seconds = run["seconds"]
    assert isinstance(seconds, list)
    return [float(x) for x in seconds]


def _merged(runs: list[dict[str, object]]) -> dict[str, object]:
    """One measurement from its repeats: every time, the largest peak, the first input size."""
    return {
        **runs[0],
        "seconds": [x for run in runs for x in _seconds(run)],
        "peak_gb": max(float(run["peak_gb"]) for run in runs),  # type: ignore[arg-type]
        "peak_reset": all(bool(run["peak_reset"]) for run in runs),
    }


def generate(n: int, out: Path) -> None:
    """Write the generated tables for `n` customers as Parquet (in a child: its memory goes)."""
    from features.io import write_tables
    from features.synthetic import generate_tables

    write_tables(generate_tables(n, seed=0), out)


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Row:
    """The three measurements at one size."""

    size: int
    figures: dict[str, dict[str, object]]

    def best(self, kind: str) -> float:
        """The best time of a measurement, in seconds."""
        seconds = self.figures[kind]["seconds"]
        assert isinstance(seconds, list)
        return float(min(seconds))

    def value(self, kind: str, key: str) -> float:
        """A number recorded by a measurement."""
        value = self.figures[kind][key]
        assert isinstance(value, int | float)
        return float(value)


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'customers':>10} {'tx rows':>11} {'build s':>8} {'rfm s':>7} {'duckdb s':>9} "
        f"{'rfm/duck':>8} {'build/duck':>10} {'input GB':>8} {'build GB':>8} {'rfm GB':>7} "
        f"{'duck GB':>7} {'build s/M':>9} {'rfm s/M':>7} {'duck s/M':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        tx = row.value("build", "rows")
        build, rfm, duck = row.best("build"), row.best("rfm"), row.best("duckdb")
        per_m = 1e6 / tx
        print(
            f"{row.size:>10,} {int(tx):>11,} {build:>8.2f} {rfm:>7.2f} {duck:>9.2f} "
            f"{rfm / duck:>8.2f} {build / duck:>10.2f} {row.value('build', 'loaded_gb'):>8.2f} "
            f"{row.value('build', 'peak_gb'):>8.2f} {row.value('rfm', 'peak_gb'):>7.2f} "
            f"{row.value('duckdb', 'peak_gb'):>7.2f} {build * per_m:>9.3f} {rfm * per_m:>7.3f} "
            f"{duck * per_m:>8.3f}"
        )
    print(
        "times: best of the repeats, in seconds; s/M: seconds per million transaction rows "
        "(flat across sizes = linear); GB: peak RSS of the measuring process (input GB: "
        "its RSS after loading the tables, included in the peaks)"
    )
    if not all(bool(f["peak_reset"]) for row in rows for f in row.figures.values()):
        print("note: the peak could not be reset after loading; peaks include the load")
    print("ratios within each round (the kinds ran back to back, so under the same load):")
    for row in rows:
        rounds = zip(*(_seconds(row.figures[kind]) for kind in KINDS), strict=True)
        pairs = [f"{build / duck:.2f} / {rfm / duck:.2f}" for build, rfm, duck in rounds]
        print(f"  {row.size:>10,}  build/duck / rfm/duck: {', '.join(pairs)}")


def check_duckdb(n: int) -> None:
    """Compare the DuckDB query with our RFM block on small generated data, and say so."""
    from features.build import build_features
    from features.schema import Tables
    from features.synthetic import generate_tables

    tables = generate_tables(n, seed=0)
    as_of = _as_of(tables.transactions)
    # A cutoff inside the data, so windows, trends and refunds-only customers all occur.
    for cutoff in (as_of, as_of - pd.Timedelta(days=200)):
        ours = build_features(Tables(tables.transactions), cutoff)
        theirs = duckdb_rfm(tables.transactions, cutoff)
        mismatched = _mismatched_columns(ours, theirs)
        verdict = "yes" if not mismatched else f"NO, columns differ: {mismatched}"
        print(
            f"DuckDB equals our RFM block ({len(ours):,} customers x {theirs.shape[1]} columns, "
            f"as of {cutoff.date()}, float tolerance 1e-9): {verdict}"
        )


def _mismatched_columns(ours: pd.DataFrame, theirs: pd.DataFrame) -> list[str]:
    if len(ours) != len(theirs) or set(ours.columns) != set(theirs.columns):
        return sorted(set(ours.columns) ^ set(theirs.columns)) or ["(row count)"]
    bad = []
    for column in ours.columns:
        mine, other = ours[column], theirs[column]
        if mine.dtype == "float64":
            same = np.allclose(
                mine.to_numpy(),
                other.to_numpy(dtype=np.float64),
                rtol=1e-9,
                atol=1e-9,
                equal_nan=True,
            )
        else:
            same = bool((mine.astype(str).to_numpy() == other.astype(str).to_numpy()).all())
        if not same:
            bad.append(column)
    return bad


def online(calls: int) -> None:
    """The online case: one customer with about 50 transactions and 100 events, per call."""
    from features.build import build_features
    from features.schema import Tables
    from features.synthetic import generate_tables

    tables = generate_tables(3_000, seed=0)
    assert tables.events is not None and tables.customers is not None
    tx_counts = tables.transactions["customer_id"].value_counts()
    event_counts = (
        tables.events["customer_id"].value_counts().reindex(tx_counts.index, fill_value=0)
    )
    distance = (tx_counts - 50).abs() + (event_counts - 100).abs()
    who = distance.idxmin()
    one = Tables(
        tables.transactions[tables.transactions["customer_id"] == who].reset_index(drop=True),
        tables.customers[tables.customers["customer_id"] == who].reset_index(drop=True),
        tables.events[tables.events["customer_id"] == who].reset_index(drop=True),
    )
    as_of = _as_of(tables.transactions)
    for _ in range(20):
        build_features(one, as_of)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        build_features(one, as_of)
        times.append(time.perf_counter() - start)
    print(
        f"online: one customer ({len(one.transactions)} transactions, "
        f"{len(one.events) if one.events is not None else 0} events), build_features median "
        f"{statistics.median(times) * 1e6:,.0f} µs over {calls} calls "
        f"(p10 {np.percentile(times, 10) * 1e6:,.0f}, p90 {np.percentile(times, 90) * 1e6:,.0f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="customers")
    parser.add_argument("--quick", action="store_true", help="20k and 40k customers: a smoke test")
    parser.add_argument(
        "--repeat", type=int, default=2, help="fresh processes per measurement (best time kept)"
    )
    parser.add_argument("--online", action="store_true", help="also time the one-customer call")
    parser.add_argument("--calls", type=int, default=300, help="calls of the online timing")
    parser.add_argument(
        "--data-dir", type=Path, help="keep generated data here (reused if present)"
    )
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.generate is not None:
        generate(args.generate, args.data)
        return
    if args.child is not None:
        print(json.dumps(child(args.child, args.data, args.repeat)))
        return

    sizes = list(QUICK_SIZES) if args.quick else args.sizes
    if sizes:
        batch(sizes, args.repeat, args.data_dir)
    if args.online:
        print()
        online(args.calls)


def batch(sizes: list[int], repeat: int, data_dir: Path | None) -> None:
    """The table: each size generated once, then measured in fresh processes."""
    check_duckdb(CHECK_SIZE)
    with tempfile.TemporaryDirectory() as scratch:
        base = data_dir or Path(scratch)
        rows = []
        for size in sizes:
            data = base / f"customers-{size}"
            if not (data / "transactions.parquet").exists():
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.features",
                        "--generate",
                        str(size),
                        "--data",
                        str(data),
                    ],
                    cwd=ROOT,
                    check=True,
                )
                print(f"generated {size:,} customers in {time.perf_counter() - start:.0f} s")
            runs: dict[str, list[dict[str, object]]] = {kind: [] for kind in KINDS}
            # Kinds take turns, so a burst of load from elsewhere hits all three alike.
            for _ in range(repeat):
                for kind in KINDS:
                    run = _run_child(["--child", kind, "--data", str(data), "--repeat", "1"])
                    runs[kind].append(run)
                    print(
                        f"  {size:,} {kind}: {_seconds(run)[0]:.2f} s, "
                        f"peak {run['peak_gb']:.2f} GB (load {run['load_seconds']:.0f} s)",
                        flush=True,
                    )
            rows.append(Row(size, {kind: _merged(found) for kind, found in runs.items()}))
        print()
        print_table(rows)


if __name__ == "__main__":
    main()
