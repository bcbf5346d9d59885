"""Batch scoring on Apache Spark: the same feature builders and Scorer, one call per id bucket."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.build import build_features
from features.coercion import coerce_table
from features.schema import ID, TABLE_SPECS, Tables, to_timestamp
from features.validation import (
    MAX_SHOWN,
    DataValidationError,
    Problem,
    RawTable,
    ValidationReport,
)
from serving.batch.engines import FeatureSink, Scored, split_by_customer
from serving.batch.spark_schema import arrow_schema, score_schema, to_arrow
from serving.scoring.policy.schema import Policy
from serving.scoring.scorer import Scorer
from training.model import ModelBundle

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

BUCKET = "_vafa_bucket"
TABLE = "_vafa_table"
ROW = "_vafa_row"
# Customers per Python call: enough that the per-call cost (Arrow hand-over, building the
# frames, one LightGBM call) is spread thin, few enough that a bucket's rows fit in a worker.
CUSTOMERS_PER_BUCKET = 20_000
DEFAULT_BUCKETS = 16

# One Scorer per Python worker and bundle: loading boosters per bucket would cost more than
# scoring a small bucket. Spark reuses its Python workers, so this lives across tasks.
_SCORERS: dict[str, Scorer] = {}


@dataclass(frozen=True)
class _Source:
    """One table as Spark read it: the columns present and whether it was text (CSV)."""

    name: str
    columns: tuple[str, ...]
    text: bool


def spark_session(
    app_name: str = "vafa-score",
    master: str | None = "local[2]",
    *,
    shuffle_partitions: int = 4,
    driver_memory: str = "2g",
) -> SparkSession:
    """A SparkSession set up for Vafa: workers on this interpreter, UTC, Arrow on.

    Python workers must run the interpreter that has the project and its dependencies, and
    local mode needs a loopback address on machines whose hostname does not resolve; both
    are set only when the environment does not already say otherwise.

    Args:
        app_name: the Spark application name.
        master: the master URL; None keeps what `spark-submit` configured.
        shuffle_partitions: `spark.sql.shuffle.partitions` (Spark's 200 suits clusters).
        driver_memory: driver heap; only takes effect when this call starts the JVM.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master).config("spark.driver.memory", driver_memory)
    return (
        builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        # Naive timestamps are UTC everywhere in Vafa.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def read_tables(spark: SparkSession, data_dir: str | Path) -> dict[str, tuple[DataFrame, bool]]:
    """The contract tables of a data folder as Spark frames, with whether each was CSV.

    CSV is read as text (no schema inference) so that each bucket is parsed by the same code
    as `features.io.load_tables`. A table is `NAME.parquet` (a file or a Spark output folder)
    or `NAME.csv`; folder-level problems raise here, on the driver, before any job runs.

    Raises:
        DataValidationError: a missing required table or column, or both formats present.
    """
    report = ValidationReport(data_dir=str(data_dir))
    found: dict[str, tuple[DataFrame, bool]] = {}
    root = str(data_dir).rstrip("/")
    local = "://" not in root
    for name, spec in TABLE_SPECS.items():
        parquet, csv_path = f"{root}/{name}.parquet", f"{root}/{name}.csv"
        if local and Path(parquet).exists() and Path(csv_path).exists():
            report.add(
                Problem(
                    "error",
                    f"both {name}.parquet and {name}.csv exist: keep only one",
                    table=name,
                    path=root,
                )
            )
            continue
        frame, text = _read_one(spark, parquet, csv_path, local)
        if frame is None:
            if spec.required:
                report.add(
                    Problem(
                        "error",
                        f"missing required table '{name}' (expected {name}.parquet or {name}.csv)",
                        table=name,
                        path=root,
                    )
                )
            continue
        for column in spec.columns:
            if column.required and column.name not in frame.columns:
                report.add(
                    Problem(
                        "error",
                        "missing required column",
                        table=name,
                        path=csv_path if text else parquet,
                        column=column.name,
                    )
                )
        found[name] = (frame, text)
    if report.errors:
        raise DataValidationError(report)
    return found


def _read_one(
    spark: SparkSession, parquet: str, csv_path: str, local: bool
) -> tuple[DataFrame | None, bool]:
    from pyspark.errors import AnalysisException

    if local:
        if Path(parquet).exists():
            return spark.read.parquet(parquet), False
        if Path(csv_path).exists():
            return _read_csv(spark, csv_path), True
        return None, False
    for path, text in ((parquet, False), (csv_path, True)):
        try:
            return (_read_csv(spark, path) if text else spark.read.parquet(path)), text
        except AnalysisException:  # PATH_NOT_FOUND on object stores and HDFS
            continue
    return None, False


def _read_csv(spark: SparkSession, path: str) -> DataFrame:
    frame = spark.read.option("header", True).option("inferSchema", False).csv(path)
    # As the local loader: stray spaces (and a UTF-8 byte order mark) around header names.
    return frame.toDF(*[c.strip().lstrip("\ufeff").strip() for c in frame.columns])


def score_with_spark(
    spark: SparkSession,
    data: str | Path | Tables,
    as_of: str | pd.Timestamp,
    bundle: ModelBundle,
    version: str,
    *,
    buckets: int | None = None,
    policy: Policy | None = None,
) -> DataFrame:
    """Score every customer with a transaction before `as_of` on Spark, as `score_all` does.

    Rows of every table read are tagged with a bucket (a hash of the customer id, so one
    customer's rows always meet), and each bucket goes to one Python call
    (`groupBy(bucket).applyInArrow`) that decodes it with the loader's coercion, calls
    `build_features` with the bundle's event types and scores it with the `Scorer`: the same
    code as the local engine, on many customers per call (a call per customer would cost more
    than the scoring). The scores are the same as the local engine's row for row.

    Args:
        spark: the session (see `spark_session`).
        data: a data folder (local path or any URL Spark reads) or already loaded tables.
        as_of: the cutoff; only rows with ts < as_of shape a score.
        bundle: the model bundle; shipped to the executors as bytes with the job.
        version: the registry version written on every score row.
        buckets: number of id buckets (Python calls); default one per ~20k customers, at
            least 16.
        policy: the retention policy; None = the default one.

    Returns:
        A lazy Spark frame of score rows (the local engine's columns; categoricals as
        strings, timestamps as naive UTC `timestamp_ntz`). Nothing runs until it is written
        or collected.

    Raises:
        ValueError: the bundle stores no segment thresholds (each bucket would cut its own
            quantiles, unlike a whole-population run), or `buckets` < 1.
        DataValidationError: folder-level problems; row-level ones fail the job with the
            table, column, count and first values.
    """
    from pyspark.sql import functions as F

    if not bundle.config.get("segments"):
        raise ValueError(
            "the bundle stores no segment thresholds: on Spark each bucket would take its own "
            "quantiles and segments would depend on bucketing; retrain with `vafa train`"
        )
    cutoff = to_timestamp(as_of)
    frames = _spark_tables(spark, data)
    if buckets is None:
        n_ids = frames["transactions"][0].select(ID).distinct().count()
        buckets = max(DEFAULT_BUCKETS, -(-n_ids // CUSTOMERS_PER_BUCKET))
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")

    sources: dict[str, _Source] = {}
    tagged: list[DataFrame] = []
    for name, (frame, text) in frames.items():
        spec = TABLE_SPECS[name]
        present = tuple(c for c in spec.column_names if c in frame.columns)
        sources[name] = _Source(name, present, text)
        tagged.append(
            frame.select(
                # Spark returns rows in no particular order; the read order keeps ties
                # (same-second events) resolved as the local loader resolves them.
                F.monotonically_increasing_id().alias(ROW),
                F.lit(name).alias(TABLE),
                F.pmod(F.xxhash64(_clean_id(F.col(ID))), F.lit(buckets)).alias(BUCKET),
                *[F.col(c).alias(f"{name}__{c}") for c in present],
            )
        )
    long = tagged[0]
    for frame in tagged[1:]:
        long = long.unionByName(frame, allowMissingColumns=True)

    files = _bundle_files(bundle)
    key = hashlib.sha256(
        b"".join(k.encode() + v for k, v in sorted(files.items())) + version.encode()
    ).hexdigest()
    shipped = spark.sparkContext.broadcast(files)
    event_types = list(bundle.spec.event_types) or None
    columns_read = {name: source.columns for name, source in sources.items()}
    schema = score_schema(bundle, version, columns_read, cutoff, policy, event_types)
    rows_schema = arrow_schema(schema)

    def score_bucket(table: pa.Table) -> pa.Table:
        scorer = _scorer(key, shipped.value, version, policy)
        return _score_rows(table, sources, cutoff, scorer, event_types, rows_schema)

    return long.groupBy(BUCKET).applyInArrow(score_bucket, schema)


def _spark_tables(
    spark: SparkSession, data: str | Path | Tables
) -> dict[str, tuple[DataFrame, bool]]:
    """Spark frames of the tables; loaded tables go over as they are (already coerced)."""
    if not isinstance(data, Tables):
        return read_tables(spark, data)
    out = {}
    for name in TABLE_SPECS:
        frame = getattr(data, name)
        if frame is not None:
            out[name] = (
                spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False)),
                False,
            )
    return out


def _clean_id(column: Column) -> Column:
    """The id as the loader keeps it (surrounding whitespace stripped), so rows meet."""
    from pyspark.sql import functions as F

    return F.regexp_replace(column.cast("string"), r"(?U)^\s+|\s+$", "")


def _bundle_files(bundle: ModelBundle) -> dict[str, bytes]:
    """The saved bundle as bytes per file: executors need no shared file system."""
    with tempfile.TemporaryDirectory(prefix="vafa-bundle-") as folder:
        root = bundle.save(Path(folder))
        return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _scorer(key: str, files: dict[str, bytes], version: str, policy: Policy | None) -> Scorer:
    """The worker's Scorer for this bundle, loaded once per Python worker."""
    scorer = _SCORERS.get(key)
    if scorer is None:
        with tempfile.TemporaryDirectory(prefix="vafa-bundle-") as folder:
            for name, payload in files.items():
                (Path(folder) / name).write_bytes(payload)
            bundle = ModelBundle.load(Path(folder))
        # One LightGBM thread: Spark already runs one task per core.
        scorer = _SCORERS[key] = Scorer(bundle, version, policy=policy, num_threads=1)
    return scorer


def _score_rows(
    table: pa.Table,
    sources: dict[str, _Source],
    cutoff: pd.Timestamp,
    scorer: Scorer,
    event_types: Sequence[str] | None,
    schema: pa.Schema,
) -> pa.Table:
    """One bucket: decode its tables, build features, score, in the fixed output schema."""
    table = table.sort_by(ROW)
    tags = table.column(TABLE)
    decoded = {
        name: _decode(table.filter(pc.equal(tags, name)), source)
        for name, source in sources.items()
    }
    tables = Tables(
        transactions=decoded["transactions"],
        customers=decoded.get("customers"),
        events=decoded.get("events"),
        subscriptions=decoded.get("subscriptions"),
    )
    features = build_features(tables, cutoff, event_types=event_types)
    if features.empty:
        return schema.empty_table()
    return to_arrow(scorer.score(features, cutoff), schema)


def _decode(rows: pa.Table, source: _Source) -> pd.DataFrame:
    """One table's rows of a bucket as `load_tables` returns them, or the loader's errors."""
    spec = TABLE_SPECS[source.name]
    columns = {c: rows.column(f"{source.name}__{c}") for c in source.columns}
    if source.text:
        # Spark's CSV reader gives empty fields as nulls; the loader reads them as "".
        columns = {c: pc.fill_null(v.cast(pa.large_string()), "") for c, v in columns.items()}
    raw = pa.table(columns) if columns else pa.table({})
    # The loader's own coercion: Spark decodes each bucket exactly as load_tables does.
    # first_row=2 marks text input: blank lines are found and dropped as the loader does.
    frame, issues, blank = coerce_table(
        spec, RawTable(Path(source.name), raw, 2 if source.text else 1)
    )
    problems = [(i, i.mask & ~blank) for i in issues if (i.mask & ~blank).any()]
    if problems:
        # Spark keeps no line numbers: the first offending values say which rows.
        report = ValidationReport(data_dir="(spark bucket)")
        for issue, mask in problems:
            idx = np.flatnonzero(mask)[:MAX_SHOWN]
            values = raw.column(issue.column).take(pa.array(idx)).to_pylist()
            shown = ", ".join(repr(v) for v in values)
            report.add(
                Problem(
                    "error",
                    f"{issue.reason} (first values: {shown})",
                    table=source.name,
                    column=issue.column,
                    n_rows=int(mask.sum()),
                )
            )
        raise DataValidationError(report)
    return frame.loc[~blank].reset_index(drop=True) if blank.any() else frame


def collect_scores(scores: DataFrame) -> pd.DataFrame:
    """Score rows on the driver, sorted by customer id as the local engine returns them."""
    frame = scores.toArrow().to_pandas()
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def spark_engine(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    *,
    chunk_customers: int | None = None,
    on_features: FeatureSink | None = None,
) -> Scored:
    """`vafa score --engine spark`: the batch's engine step on Spark (an `engines.Engine`).

    Features and scores are computed on Spark (`VAFA_SPARK_MASTER`, default `local[2]`); the
    batch around it (freshness, changed actions, writing, the store, monitoring) is the
    local one. Feature drift is counted on the driver from one customer bucket of about
    `chunk_customers` (a hash sample, plenty for PSI), not from the whole base.
    """
    started = time.perf_counter()
    spark = spark_session("vafa-score", master=os.environ.get("VAFA_SPARK_MASTER", "local[2]"))
    session_seconds = time.perf_counter() - started
    frame = score_with_spark(
        spark, tables, as_of, scorer.bundle, scorer.version, policy=scorer.policy
    )
    scores = collect_scores(frame)
    scored = time.perf_counter()
    if on_features is not None:
        sample = next(split_by_customer(tables, chunk_customers).tables())
        on_features(
            build_features(sample, as_of, event_types=scorer.bundle.spec.event_types or None)
        )
    return Scored(
        scores,
        {
            "spark_session_seconds": session_seconds,
            "spark_seconds": scored - started - session_seconds,
            "drift_sample_seconds": time.perf_counter() - scored,
        },
    )


def write_spark_scores(scores: DataFrame, out_dir: str | Path, as_of: str | pd.Timestamp) -> str:
    """Write `out_dir/as_of=YYYY-MM-DD/scores.parquet` (a Spark folder of part files).

    Spark's committer writes the parts aside and publishes them with a `_SUCCESS` marker, so
    a reader never sees a half-written run; an earlier run of the same date is replaced.
    """
    target = f"{str(out_dir).rstrip('/')}/as_of={to_timestamp(as_of).date()}/scores.parquet"
    scores.write.mode("overwrite").parquet(target)
    return target


def _load_bundle(
    bundle_dir: str | None, alias: str | None, version: str
) -> tuple[ModelBundle, str]:
    if bundle_dir is not None:
        return ModelBundle.load(Path(bundle_dir)), version
    from training.registry import load_bundle

    return load_bundle(alias or "champion")


def main(
    argv: Sequence[str] | None = None, *, session: Callable[..., SparkSession] = spark_session
) -> int:
    """The `spark-submit` entry point: score a data folder and write Parquet."""
    parser = argparse.ArgumentParser(prog="python -m serving.batch.spark", description=__doc__)
    parser.add_argument(
        "--data", required=True, help="data folder (local path, hdfs://, s3a://...)"
    )
    parser.add_argument("--as-of", required=True, help="cutoff date, e.g. 2026-11-01")
    parser.add_argument("--out", required=True, help="scores folder")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--bundle", help="a saved bundle folder (ModelBundle.save)")
    model.add_argument("--alias", default=None, help="registry alias (default champion)")
    parser.add_argument("--version", default="local", help="version label with --bundle")
    parser.add_argument("--buckets", type=int, default=None)
    parser.add_argument("--master", default=None, help="e.g. local[2]; default: spark-submit's")
    args = parser.parse_args(argv)

    bundle, version = _load_bundle(args.bundle, args.alias, args.version)
    spark = session("vafa-score", master=args.master)
    scores = score_with_spark(spark, args.data, args.as_of, bundle, version, buckets=args.buckets)
    target = write_spark_scores(scores, args.out, args.as_of)
    sys.stdout.write(f"scores written to {target}\n")
    return 0


if __name__ == "__main__":
    # Run as a file or with -m, this module is `__main__`, whose functions Spark would ship by
    # value (with an empty Scorer cache per task). Run the importable `serving.batch.spark` instead;
    # the repository root replaces this folder on the path (`spark-submit serving/batch/spark.py`).
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    from serving.batch.spark import main as _main

    raise SystemExit(_main())
