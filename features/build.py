"""The feature table: one row per customer with a transaction before `as_of` or a term held."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from features.columns import ColumnData, TableData
from features.engagement import (
    event_features,
    event_types_before,
    names_before,
    views_since_last_purchase,
)
from features.profile import PROFILE_CATEGORIES, profile_features
from features.rfm import (
    ID,
    Codes,
    Columns,
    arrow,
    factorize,
    labels,
    micros,
    recode,
    rfm_summary,
    timestamps_us,
    transaction_features,
)
from features.schema import KNOWN_EVENTS, Tables, to_timestamp
from features.subscriptions import holds_term, subscription_features, usage_features

CATEGORICAL_FEATURES = ("dominant_channel", *PROFILE_CATEGORIES, "plan")

# The string columns the features group by; True: codes in name order (ids, channel ties).
_CODED = {
    "transactions": {ID: True, "order_id": False, "category": False, "channel": True},
    "events": {ID: False, "event": False},
    "customers": {ID: False},
    "subscriptions": {ID: False, "plan": False},
}
# Below this many rows a table's columns are hashed one after the other: threads cost more
# than they save (the online call scores one customer).
_PARALLEL_ROWS = 100_000


def default_event_types(tables: Tables, as_of: datetime) -> list[str]:
    """The known event vocabulary plus every other name seen before `as_of`."""
    seen = [] if tables.events is None else event_types_before(tables.events, as_of)
    return sorted(set(KNOWN_EVENTS) | set(seen))


def build_features(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    *,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Features of every customer with a sale before `as_of` or a term held at it, read before it.

    A subscriber holding a term at `as_of` (`features.subscriptions.holds_term`) is a row even
    without a transaction; terms are read as known then (started before it, earlier notices).

    Args:
        tables: validated tables (see `features.io.load_tables`).
        as_of: the cutoff; rows with ts >= as_of are never read.
        event_types: event names that get columns; a trained model passes its own list so
            scoring yields its columns. Defaults to the known vocabulary plus names seen
            before `as_of`. Ignored without an events table.

    Returns:
        One row per customer sorted by customer_id: `customer_id`, then the columns of
        `transaction_features`, `event_features` (plus `product_views_since_purchase`),
        `profile_features`, and with subscriptions `subscription_features` and (with events)
        `usage_features`, as far as the tables have the data. Numbers are float64,
        `CATEGORICAL_FEATURES` are pandas categoricals.
    """
    return pd.DataFrame(feature_columns(tables, as_of, event_types=event_types), copy=False)


def feature_columns(
    tables: TableData,
    as_of: str | pd.Timestamp | datetime,
    *,
    event_types: Sequence[str] | None = None,
    encoded: EncodedTables | None = None,
) -> Columns:
    """`build_features` as a dict of its columns: the online service's few rows skip pandas.

    The same columns, values and dtypes (float64 numpy arrays, pandas categoricals, the ids
    as a pandas `str` array) in the same order; a DataFrame of them is `build_features`.
    `encoded` is `encode_tables(tables)`, given when features are built at many cutoffs.
    """
    cutoff = to_timestamp(as_of).to_pydatetime()
    subscriptions = getattr(tables, "subscriptions", None)
    codes = _customer_codes(tables, encoded)
    customers = codes[ID].names
    columns, present = transaction_features(tables.transactions, codes, cutoff)
    # One table's codes at a time: memory holds one table's working arrays, not all three.
    del codes
    engagement: Columns = {}
    if tables.events is not None:
        codes = _table_codes(tables, "events", encoded, customers)
        if event_types is None:
            event_types = _default_types(tables.events, codes["event"], cutoff)
        engagement = event_features(tables.events, codes, cutoff, event_types)
        columns.update(engagement)
        if "product_view" in event_types:
            columns["product_views_since_purchase"] = views_since_last_purchase(
                tables.events, codes, cutoff, columns["recency_days"]
            )
        del codes
    if tables.customers is not None:
        codes = _table_codes(tables, "customers", encoded, customers)
        columns.update(profile_features(tables.customers, codes, cutoff))
    if subscriptions is not None:
        # Subscribers holding a term are customers even before their first transaction.
        codes = _table_codes(tables, "subscriptions", encoded, customers)
        n = len(customers)
        present = present | holds_term(subscriptions, codes[ID].codes, n, cutoff)
        contract = subscription_features(subscriptions, codes, cutoff)
        columns.update(contract)
        if tables.events is not None and event_types is not None:
            columns.update(usage_features(engagement, event_types, contract.get("seats")))
    return _final_columns(columns, present, customers)


@dataclass(frozen=True)
class EncodedTables:
    """Each table's grouped string columns (`_CODED`) as integer codes, made once.

    Customer ids are codes into the transactions' sorted ids, as in `feature_columns`.
    Encoding is its costliest step: `features.labels.build_training_set` encodes once and
    builds features at every cutoff from these codes.
    """

    transactions: dict[str, Codes]
    events: dict[str, Codes] | None
    customers: dict[str, Codes] | None
    subscriptions: dict[str, Codes] | None = None


def encode_tables(tables: TableData) -> EncodedTables:
    """The codes `feature_columns(tables, ..., encoded=...)` reuses at every cutoff."""
    transactions = _customer_codes(tables, None)
    ids = transactions[ID].names
    subscriptions = getattr(tables, "subscriptions", None)
    return EncodedTables(
        transactions,
        None if tables.events is None else _encode(tables.events, _CODED["events"], ids),
        None if tables.customers is None else _encode(tables.customers, _CODED["customers"], ids),
        None if subscriptions is None else _encode(subscriptions, _CODED["subscriptions"], ids),
    )


def _customer_codes(tables: TableData, encoded: EncodedTables | None) -> dict[str, Codes]:
    """The transactions' codes; with subscriptions, ids are codes into the union of both tables.

    The union is sorted, as the transactions' own ids are: sorting by code sorts by id.
    """
    if encoded is not None:
        return encoded.transactions
    codes = _encode(tables.transactions, _CODED["transactions"])
    subscriptions = getattr(tables, "subscriptions", None)
    if subscriptions is None:
        return codes
    names = codes[ID].names
    subscribers = pc.drop_null(arrow(subscriptions[ID]).cast(names.type))
    union = pc.unique(pa.concat_arrays([names, subscribers]))
    union = union.take(pc.array_sort_indices(union))
    codes[ID] = recode(codes[ID], union)
    return codes


def _table_codes(
    tables: TableData, name: str, encoded: EncodedTables | None, customers: pa.Array | None = None
) -> dict[str, Codes]:
    """A table's codes: from `encoded` when given, else encoded now."""
    codes: dict[str, Codes] | None = None if encoded is None else getattr(encoded, name)
    return codes if codes is not None else _encode(getattr(tables, name), _CODED[name], customers)


def _encode(
    frame: ColumnData, wanted: dict[str, bool], customers: pa.Array | None = None
) -> dict[str, Codes]:
    """A table's string columns that the features group by, as integer codes.

    Hashing strings is the costliest step and each column is independent, so large tables
    hash two columns at a time (Arrow releases the GIL). Customer ids become codes into
    `customers` (the transactions' sorted ids) when given: one code, one customer, in
    every table, and sorting by code sorts by id.
    """
    present = {column: in_order for column, in_order in wanted.items() if column in frame}
    if len(frame[ID]) < _PARALLEL_ROWS:
        codes = {c: factorize(frame[c], sort=in_order) for c, in_order in present.items()}
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = {c: pool.submit(factorize, frame[c], sort=s) for c, s in present.items()}
            codes = {column: job.result() for column, job in jobs.items()}
    if customers is not None:
        codes[ID] = recode(codes[ID], customers)
    # Arrow's allocator keeps the freed hash tables for reuse (~40 bytes a row); hand them
    # back before the numeric work rather than carry them through the peak.
    pa.default_memory_pool().release_unused()
    return codes


def _default_types(events: ColumnData, names: Codes, as_of: datetime) -> list[str]:
    """`default_event_types` from already coded event names."""
    seen = names_before(names, timestamps_us(events["ts"]), micros(as_of))
    return sorted(set(KNOWN_EVENTS) | set(seen))


def _final_columns(columns: Columns, present: np.ndarray, customers: pa.Array) -> Columns:
    """The rows of the customers present, in code (so id) order, with the final dtypes.

    Each column is made in its final dtype as its rows are taken (float arrays as they are,
    no consolidating copy: with every customer present, the numbers are never copied at
    all). A frame-wide `astype` afterwards would cost a fixed ~50 us a column: most of the
    time of a one-customer call.
    """
    rows = None if present.all() else np.flatnonzero(present)
    data = {ID: labels(customers, np.arange(len(customers)) if rows is None else rows)}
    for name in list(columns):
        values = columns.pop(name)  # dropped as soon as its rows are taken
        data[name] = _final(name, values if rows is None else values[rows])
    return data


def _final(name: str, values: Any) -> Any:
    """A feature column in its final dtype: categorical labels or float64 numbers."""
    if name in CATEGORICAL_FEATURES:
        return _categorical(values)
    return np.asarray(values, dtype=np.float64)


def _categorical(values: pd.api.extensions.ExtensionArray) -> pd.Categorical:
    """`pd.Categorical(values)` of text labels, from Arrow's sorted dictionary encoding.

    The same categories (the labels present, sorted) and codes; pandas' own inference costs
    90-160 us a column whatever the rows (measured), this about 15 us once a set of labels
    has its dtype.
    """
    coded = factorize(values, sort=True)
    dtype = _categories(tuple(coded.names.to_pylist()), values.dtype)
    return pd.Categorical.from_codes(coded.codes, dtype=dtype, validate=False)


@lru_cache(maxsize=256)
def _categories(names: tuple[str, ...], dtype: pd.StringDtype) -> pd.CategoricalDtype:
    """One dtype per set of labels: making one checks its categories (tens of microseconds)."""
    return pd.CategoricalDtype(pd.Index(pd.array(names, dtype=dtype)))


def _finish_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Float64 numbers and categorical labels, whatever the engine inferred for empty frames."""
    dtypes = {
        c: "str" if c == ID else "category" if c in CATEGORICAL_FEATURES else "float64"
        for c in frame.columns
    }
    return frame.astype(dtypes)


def build_rfm_summary(tables: Tables, as_of: str | pd.Timestamp | datetime) -> pd.DataFrame:
    """The buy-till-you-die summary (frequency, recency, T, monetary_value) as of a date."""
    cutoff = to_timestamp(as_of).to_pydatetime()
    summary = rfm_summary(pl.from_pandas(tables.transactions), cutoff).sort(ID).collect()
    return _finish_types(summary.to_pandas())
