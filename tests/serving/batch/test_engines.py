"""The local engine: chunks equal one pass, buckets keep customers whole, online scores alike."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pandas.api.types import is_datetime64_dtype, is_numeric_dtype
from pandas.testing import assert_frame_equal

from features.build import build_features, feature_columns
from features.columns import text_arrays
from features.schema import Tables
from serving.batch.engines import score_all, split_by_customer
from serving.online.requests import RequestTables
from serving.scoring.scorer import Scorer
from serving.store.rows import score_records
from tests.serving.batch.factories import AS_OF


def test_chunked_run_equals_one_pass(tables: Tables, scorer: Scorer) -> None:
    whole = score_all(tables, AS_OF, scorer)
    chunked = score_all(tables, AS_OF, scorer, chunk_customers=90)
    assert whole.chunks == 1 and chunked.chunks == 5
    assert_frame_equal(chunked.scores, whole.scores)
    assert whole.scores["customer_id"].is_monotonic_increasing


def test_buckets_keep_every_row_of_a_customer_together(tables: Tables) -> None:
    parts = list(split_by_customer(tables, 100).tables())
    assert len(parts) == 4
    bucket_of: dict[str, int] = {}
    for k, part in enumerate(parts):
        for name in ("transactions", "events", "customers"):
            for cid in getattr(part, name)["customer_id"]:
                assert bucket_of.setdefault(cid, k) == k, f"{cid} in two buckets"
    for name in ("transactions", "events", "customers"):
        assert sum(len(getattr(p, name)) for p in parts) == len(getattr(tables, name))


def _arrays(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """A table as `/score` hands it to the features: text as Arrow, the rest as numpy."""
    if frame is None:
        return None
    return {
        name: values.to_numpy()
        if is_numeric_dtype(values) or is_datetime64_dtype(values)
        else pa.array(values)
        for name, values in frame.items()
    }


@pytest.mark.parametrize("stored_segments", [True, False], ids=["stored-cuts", "fitted-cuts"])
def test_the_online_dict_of_columns_scores_as_the_batch_frame(
    tables: Tables, scorer: Scorer, stored_segments: bool
) -> None:
    """`vafa score` scores a DataFrame, `/score` a dict of arrays: the same code, the same rows."""
    if not stored_segments:
        bundle = replace(scorer.bundle, config={**scorer.bundle.config, "segments": None})
        scorer = Scorer(bundle, "7")
    event_types = scorer.bundle.spec.event_types
    frame = build_features(tables, AS_OF, event_types=event_types)
    columns = feature_columns(tables, AS_OF, event_types=event_types)
    assert_frame_equal(pd.DataFrame(columns), frame)
    assert all(not isinstance(v, pd.Series | pd.DataFrame) for v in columns.values())
    # `/score`'s tables are dicts of numpy and Arrow arrays, not frames: the same features.
    arrays = RequestTables(
        *(_arrays(t) for t in (tables.transactions, tables.events, tables.customers))
    )
    assert_frame_equal(pd.DataFrame(feature_columns(arrays, AS_OF, event_types=event_types)), frame)

    expected = scorer.score(frame, AS_OF)
    online = scorer.score_columns(columns, len(frame), AS_OF)
    assert list(online) == list(expected.columns)
    assert_frame_equal(pd.DataFrame(text_arrays(online)), expected)
    # What `/score` answers from the dict is what the store keeps of the frame.
    assert score_records(online) == score_records(expected)
    assert expected["reasons"].str.len().gt(0).any() and expected["customer_type"].notna().any()
