"""The Spark engine: the local engine's scores, point in time, the loader's errors, on Spark."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pyspark.errors import PythonException
from pyspark.sql import SparkSession

from features.build import build_features
from features.io import load_tables, write_tables
from features.schema import Tables
from features.synthetic import generate_tables
from features.validation import DataValidationError
from serving.batch.spark import collect_scores, score_with_spark, spark_session
from serving.scoring.scorer import Scorer
from training.model import ModelBundle
from training.train import TrainOptions, train_models

pytestmark = [
    pytest.mark.slow,  # a Spark JVM
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

TRAINED_AS_OF = pd.Timestamp("2026-08-01")
# Months before the data ends: every table holds rows on and after the cutoff.
AS_OF = pd.Timestamp("2026-06-01")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    # No skip: a JVM that cannot start is a failure of the Spark engine, not of the test.
    session = spark_session("vafa-test", "local[2]", shuffle_partitions=4, driver_memory="1g")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def tables() -> Tables:
    return generate_tables(500, seed=21)


@pytest.fixture(scope="module")
def bundle(tables: Tables) -> ModelBundle:
    options = TrainOptions(trials=1, seed=3, n_snapshots=2, spacing_days=45, num_threads=1)
    return train_models(tables, TRAINED_AS_OF, options).bundle


@pytest.fixture(scope="module")
def folder(tables: Tables, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    write_tables(tables, out, "parquet")
    return out


@pytest.fixture(scope="module")
def spark_scores(spark: SparkSession, folder: Path, bundle: ModelBundle) -> pd.DataFrame:
    return collect_scores(score_with_spark(spark, folder, AS_OF, bundle, "7", buckets=3))


def comparable(scores: pd.DataFrame) -> pd.DataFrame:
    """Score rows as Spark returns them: categoricals as text, timestamps in microseconds."""
    out = scores.copy()
    for name, values in out.items():
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[name] = values.astype("str").where(values.notna())
        elif pd.api.types.is_datetime64_dtype(values.dtype):
            out[name] = values.astype("datetime64[us]")
    return out


def test_spark_scores_equal_the_local_engine(
    folder: Path, bundle: ModelBundle, spark_scores: pd.DataFrame
) -> None:
    loaded = load_tables(folder).tables
    features = build_features(loaded, AS_OF, event_types=bundle.spec.event_types)
    local = Scorer(bundle, "7", num_threads=1).score(features, AS_OF)

    assert len(local) > 300  # most customers bought before the cutoff
    assert list(spark_scores.columns) == list(local.columns)
    assert spark_scores["customer_id"].is_unique
    assert (spark_scores["recommended_action"] != "no_action").any()
    assert (spark_scores["reasons"] != "").any()  # TreeSHAP reasons ran on the executors
    assert_frame_equal(spark_scores, comparable(local), check_dtype=False, rtol=1e-9, atol=1e-9)


def test_rows_on_or_after_as_of_change_nothing_and_csv_reads_the_same(
    spark: SparkSession,
    tables: Tables,
    bundle: ModelBundle,
    spark_scores: pd.DataFrame,
    tmp_path: Path,
) -> None:
    past = tables.before(AS_OF)
    assert len(past.transactions) < len(tables.transactions)
    # The future rewritten: a huge purchase by every customer, and a customer who only
    # appears after the cutoff; as CSV, so the text path is compared too.
    first = past.transactions.drop_duplicates("customer_id").assign(ts=AS_OF, amount=1e6)
    newcomer = first.head(1).assign(customer_id="ZZ-new", ts=AS_OF + pd.Timedelta(days=3))
    future = replace(
        past, transactions=pd.concat([past.transactions, first, newcomer], ignore_index=True)
    )
    write_tables(future, tmp_path, "csv")

    got = collect_scores(score_with_spark(spark, tmp_path, AS_OF, bundle, "7", buckets=5))

    assert "ZZ-new" not in set(got["customer_id"])
    assert_frame_equal(got, spark_scores, check_dtype=False, rtol=1e-9, atol=1e-9)


def test_a_bad_row_fails_the_job_with_the_loaders_message(
    spark: SparkSession, tables: Tables, bundle: ModelBundle, tmp_path: Path
) -> None:
    head = tables.transactions.head(50).astype({"amount": "str"})
    head.loc[7, "amount"] = "12,50"
    write_tables(replace(tables, transactions=head), tmp_path, "csv")

    with pytest.raises(PythonException, match=r"transactions, column 'amount'.*unparsable"):
        collect_scores(score_with_spark(spark, tmp_path, AS_OF, bundle, "7", buckets=2))


def test_folder_problems_are_reported_before_any_job(
    spark: SparkSession, tables: Tables, bundle: ModelBundle, tmp_path: Path
) -> None:
    write_tables(replace(tables, transactions=tables.transactions.drop(columns="ts")), tmp_path)

    with pytest.raises(DataValidationError, match="column 'ts': missing required column"):
        score_with_spark(spark, tmp_path, AS_OF, bundle, "7")


def test_a_bundle_without_segment_thresholds_is_refused(
    spark: SparkSession, folder: Path, bundle: ModelBundle
) -> None:
    # Each bucket would cut its own quantiles: segments would depend on the bucketing.
    bare = replace(bundle, config={k: v for k, v in bundle.config.items() if k != "segments"})

    with pytest.raises(ValueError, match="segment thresholds"):
        score_with_spark(spark, folder, AS_OF, bare, "7")


def test_vafa_score_engine_spark_publishes_what_the_local_engine_does(
    spark: SparkSession, folder: Path, bundle: ModelBundle, tmp_path: Path
) -> None:
    from serving.batch.job import BatchOptions, run_batch
    from serving.store.database import ScoreStore

    loaded = load_tables(folder).tables
    scorer = Scorer(bundle, "7", num_threads=1)
    runs = {}
    for engine in ("local", "spark"):
        store = ScoreStore(f"sqlite:///{tmp_path / engine}.db")
        options = BatchOptions(engine=engine, chunk_customers=200)
        runs[engine] = run_batch(loaded, AS_OF, scorer, tmp_path / engine, store, options)
        assert store.count() == len(runs[engine].scores)
    local, remote = runs["local"], runs["spark"]
    assert remote.summary["engine"] == "spark"
    written = pd.read_parquet(remote.folder / "scores.parquet")
    assert_frame_equal(written, comparable(local.scores), check_dtype=False, rtol=1e-9, atol=1e-9)
    # Feature drift comes from one hash bucket on the driver; score drift from everyone.
    assert set(remote.summary["drift"]["features_psi"]) == set(
        local.summary["drift"]["features_psi"]
    )
    assert remote.summary["drift"]["scores_psi"] == pytest.approx(
        local.summary["drift"]["scores_psi"], abs=1e-9
    )
