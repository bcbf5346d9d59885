"""The score rows' schema on Spark and in Arrow, taken from the local Scorer's own output.

Every bucket's Python call returns its rows in this one schema, so a bucket that lacks a column
(no profile segment, no events) still fits the others, and the written columns match the local
engine's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from features.build import build_features
from features.schema import ID, TABLE_SPECS, Tables
from serving.scoring.policy.schema import Policy
from serving.scoring.scorer import Scorer
from training.model import ModelBundle

if TYPE_CHECKING:
    from pyspark.sql.types import StructType


def score_schema(
    bundle: ModelBundle,
    version: str,
    columns: Mapping[str, Sequence[str]],
    cutoff: pd.Timestamp,
    policy: Policy | None,
    event_types: Sequence[str] | None,
) -> StructType:
    """The Spark schema of score rows: the local Scorer's own output on one probe customer.

    The probe has the feature columns these tables give and no data; a profile `segment`
    gets a value so that `customer_type` (added only when a batch has one) is in the schema.

    Args:
        bundle: the model bundle.
        version: the registry version written on every score row.
        columns: the columns present in each table read, by table name.
        cutoff: the as-of date.
        policy: the retention policy; None = the default one.
        event_types: the bundle's event types (None: none).
    """
    empty = {
        name: pd.DataFrame(
            {c: pd.Series(dtype=_dtype(TABLE_SPECS[name].column(c).kind)) for c in present}
        )
        for name, present in columns.items()
    }
    features = build_features(
        Tables(
            empty["transactions"],
            empty.get("customers"),
            empty.get("events"),
            empty.get("subscriptions"),
        ),
        cutoff,
        event_types=event_types,
    )
    probe = features.reindex([0])
    probe[ID] = "probe"
    if "segment" in probe.columns:
        probe["segment"] = pd.Categorical(["probe"])
    scores = Scorer(bundle, version, policy=policy, num_threads=1).score(probe, cutoff)
    return spark_schema(scores)


def _dtype(kind: str) -> str:
    """The dtype `features.io.load_tables` gives a column of this kind (numbers: float64)."""
    kinds = {"id": "str", "string": "str", "timestamp": "datetime64[us]", "bool": "boolean"}
    return kinds.get(kind, "float64")


def spark_schema(scores: pd.DataFrame) -> StructType:
    """The Spark schema of a frame of score rows (categoricals as strings, naive timestamps)."""
    from pyspark.sql import types as T

    def kind(dtype: object) -> T.DataType:
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            return T.StringType()
        if pd.api.types.is_bool_dtype(dtype):
            return T.BooleanType()
        if pd.api.types.is_integer_dtype(dtype):
            return T.LongType()
        if pd.api.types.is_float_dtype(dtype):
            return T.DoubleType()
        if pd.api.types.is_datetime64_dtype(dtype):
            # Naive UTC, as the local engine writes it (TimestampType would turn zoned).
            return T.TimestampNTZType()
        raise TypeError(f"no Spark type for score dtype {dtype}")

    return T.StructType([T.StructField(c, kind(t), True) for c, t in scores.dtypes.items()])


def arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow schema a bucket's Python call returns for the Spark schema `schema`."""
    from pyspark.sql import types as T

    kinds: dict[type, pa.DataType] = {
        T.StringType: pa.string(),
        T.BooleanType: pa.bool_(),
        T.LongType: pa.int64(),
        T.DoubleType: pa.float64(),
        T.TimestampNTZType: pa.timestamp("us"),
    }
    return pa.schema([pa.field(f.name, kinds[type(f.dataType)]) for f in schema.fields])


def to_arrow(scores: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Score rows in the fixed schema: columns a bucket lacks are null, categories text."""
    arrays = []
    for field in schema:
        if field.name in scores.columns:
            values = scores[field.name]
            if isinstance(values.dtype, pd.CategoricalDtype):
                values = values.astype("str").where(values.notna())
            arrays.append(pa.array(values, type=field.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(len(scores), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
