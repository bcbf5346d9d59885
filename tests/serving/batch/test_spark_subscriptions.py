"""The Spark engine reads a subscriptions table and decodes it as the local loader does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.io import load_tables, write_tables
from features.schema import SUBSCRIPTIONS
from serving.batch.spark import _decode, _Source, read_tables, spark_session

pytestmark = [
    pytest.mark.slow,  # a Spark JVM
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

TRANSACTIONS = "customer_id,ts,amount\nc1,2026-01-05,10\nc2,2026-02-01,5\n"
SUBSCRIPTIONS_CSV = (
    ",".join(SUBSCRIPTIONS.column_names)
    + "\n"
    + "c1,2026-01-01,2026-02-01,pro,30,1,0.1,3,,no\n"
    + "c1,2026-02-01,2026-03-01,pro,30,1,,3,2026-02-20,\n"
    + "c2,2025-06-01T12:00:00+02:00,2026-06-01,,120,12,0,1,,YES\n"
)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("vafa-test-subs", "local[1]", shuffle_partitions=1, driver_memory="1g")
    yield session
    session.stop()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_subscriptions_table_is_read_and_decoded_as_the_loader_does(
    spark: SparkSession, tmp_path: Path, fmt: str
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "transactions.csv").write_text(TRANSACTIONS)
    (source / "subscriptions.csv").write_text(SUBSCRIPTIONS_CSV)
    loaded = load_tables(source).tables
    folder = tmp_path / "data"
    write_tables(loaded, folder, fmt)  # type: ignore[arg-type]

    frames = read_tables(spark, folder)

    assert set(frames) == {"transactions", "subscriptions"}
    frame, text = frames["subscriptions"]
    assert text == (fmt == "csv")
    present = tuple(c for c in SUBSCRIPTIONS.column_names if c in frame.columns)
    assert present == tuple(SUBSCRIPTIONS.column_names)
    # A bucket's rows as score_with_spark hands them to its Python call.
    rows = frame.select(*[F.col(c).alias(f"subscriptions__{c}") for c in present]).toArrow()
    decoded = _decode(rows, _Source("subscriptions", present, text))
    assert loaded.subscriptions is not None
    assert_frame_equal(decoded, loaded.subscriptions)
