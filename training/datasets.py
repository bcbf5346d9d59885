"""Out-of-time training sets: which cutoffs train, which validate, and the model matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.build import CATEGORICAL_FEATURES, default_event_types
from features.columns import ColumnData, categorical, numbers, row_count
from features.labels import LABEL_COLUMNS, build_training_set
from features.schema import Tables, to_timestamp
from training.btyd.features import with_btyd_by_snapshot

# A snapshot needs some history before it to say anything about a customer.
MIN_HISTORY_DAYS = 60
NOT_FEATURES = {"customer_id", "as_of", *LABEL_COLUMNS}


class HistoryTooShortError(ValueError):
    """The data does not cover the label windows; the message suggests windows that fit."""


@dataclass(frozen=True)
class CutoffPlan:
    """Snapshot dates for one label: training cutoffs, then one later validation cutoff.

    Every training label window ends on or before the validation cutoff, and the validation
    window ends on or before the training date: validation is strictly later, never random.
    """

    train: list[pd.Timestamp]
    valid: pd.Timestamp


def plan_cutoffs(
    first_ts: pd.Timestamp,
    as_of: pd.Timestamp,
    label_days: int,
    n_snapshots: int,
    spacing_days: int,
    what: str,
) -> CutoffPlan:
    """Cutoffs for a label of `label_days`, as many as the history allows (up to `n_snapshots`).

    Raises:
        HistoryTooShortError: not even one training snapshot fits.
    """
    valid = as_of - pd.Timedelta(days=label_days)
    earliest = first_ts.normalize() + pd.Timedelta(days=MIN_HISTORY_DAYS)
    latest_train = valid - pd.Timedelta(days=label_days)
    train = [latest_train - pd.Timedelta(days=spacing_days * k) for k in range(n_snapshots)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        span = (as_of - first_ts).days
        fits = max((span - MIN_HISTORY_DAYS) // 2, 0)
        raise HistoryTooShortError(
            f"the data covers {span} days ({first_ts.date()} to {as_of.date()}), too short for "
            f"a {label_days}-day {what}: training needs {MIN_HISTORY_DAYS} days of history, a "
            f"{label_days}-day training window and a {label_days}-day validation window, "
            f"{MIN_HISTORY_DAYS + 2 * label_days} days in all. Windows of at most {fits} days fit"
            f" this data (e.g. --churn-window-days {min(fits, 90)} --horizon-days {fits})."
        )
    return CutoffPlan(train=train, valid=valid)


@dataclass
class FeatureSpec:
    """The model's view of the feature table: which columns, in which order, with which levels.

    Stored with the model, so that scoring builds exactly the columns training saw.
    """

    columns: list[str]
    categories: dict[str, list[str]]
    event_types: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, features: pd.DataFrame, event_types: list[str]) -> FeatureSpec:
        """The spec of a feature (or training) frame."""
        columns = [c for c in features.columns if c not in NOT_FEATURES]
        categories = {
            c: sorted(str(v) for v in features[c].dropna().unique())
            for c in columns
            if c in CATEGORICAL_FEATURES
        }
        return cls(columns=columns, categories=categories, event_types=list(event_types))

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model input: spec columns in order (absent ones null), categories fixed.

        A level unseen in training becomes null rather than a new code the trees never saw.
        """
        frame = features.reindex(columns=self.columns)
        for column, dtype in self._dtypes.items():
            codes = self._codes(features, column, len(features))
            frame[column] = pd.Categorical.from_codes(codes, dtype=dtype)
        dtypes = frame.dtypes
        other = [c for c in self.columns if c not in self._dtypes and dtypes[c] != np.float64]
        return frame.astype(dict.fromkeys(other, "float64")) if other else frame

    def array(self, features: ColumnData, n: int | None = None) -> np.ndarray:
        """`matrix` as the float64 array LightGBM makes of it (in its column-major layout).

        Categoricals are their codes into the spec's levels, NaN when null, as LightGBM
        encodes a pandas categorical with the levels it was trained on: the same numbers,
        without the pandas conversion of every predict call (milliseconds for one row).

        Args:
            features: a feature frame, or its columns as a dict of arrays.
            n: the number of rows (read from a frame when not given).
        """
        n = row_count(features, n)
        out = np.empty((len(self.columns), n)).T
        for j, column in enumerate(self.columns):
            if column in self._dtypes:
                codes = self._codes(features, column, n)
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = numbers(features, column, n)
        return out

    def _codes(self, features: ColumnData, column: str, n: int) -> np.ndarray:
        """A categorical column's codes into its levels: -1 where null, absent or unseen."""
        if column not in features:
            return np.full(n, -1)
        values = features[column]
        positions = self._positions[column]
        coded = categorical(values)
        if coded is not None:
            # One lookup per category rather than per row; code -1 (null) takes the last.
            names = coded.categories.astype("str")
            position = np.array([*(positions.get(name, -1) for name in names), -1])
            return position[coded.codes]
        values = pd.Series(values)
        text = values.astype("str").where(values.notna())
        return self._dtypes[column].categories.get_indexer(text)

    @cached_property
    def _dtypes(self) -> dict[str, pd.CategoricalDtype]:
        return {c: pd.CategoricalDtype(levels) for c, levels in self.categories.items()}

    @cached_property
    def _positions(self) -> dict[str, dict[str, int]]:
        return {c: {level: i for i, level in enumerate(v)} for c, v in self.categories.items()}

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "columns": self.columns,
            "categories": self.categories,
            "event_types": self.event_types,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureSpec:
        """The inverse of `to_dict`."""
        return cls(
            columns=list(data["columns"]),  # type: ignore[call-overload]
            categories={k: list(v) for k, v in data["categories"].items()},  # type: ignore[attr-defined]
            event_types=list(data.get("event_types", [])),  # type: ignore[call-overload]
        )


@dataclass
class TrainingData:
    """Stacked snapshots, split out of time, for the churn and the spend models."""

    churn_train: pd.DataFrame
    churn_valid: pd.DataFrame
    spend_train: pd.DataFrame
    spend_valid: pd.DataFrame
    spec: FeatureSpec
    churn_plan: CutoffPlan
    spend_plan: CutoffPlan
    btyd_params: dict[str, float] | None = None

    def row_counts(self) -> dict[str, int]:
        """Rows per split, for the run log."""
        return {
            "rows_churn_train": len(self.churn_train),
            "rows_churn_valid": len(self.churn_valid),
            "rows_spend_train": len(self.spend_train),
            "rows_spend_valid": len(self.spend_valid),
        }


def build_training_data(
    tables: Tables,
    as_of: pd.Timestamp | str,
    *,
    churn_window_days: int,
    horizon_days: int,
    margin_rate: float,
    n_snapshots: int = 6,
    spacing_days: int = 30,
    btyd_features: bool = False,
) -> TrainingData:
    """Feature+label snapshots for both models using only rows before `as_of`.

    With `btyd_features`, each snapshot also gets BG/NBD outputs fitted on that snapshot alone.

    Raises:
        HistoryTooShortError: the history does not cover a window.
    """
    end = to_timestamp(as_of)
    past = tables.before(end)
    if past.transactions.empty:
        raise HistoryTooShortError(f"no transaction before {end.date()}")
    first = to_timestamp(past.transactions["ts"].min())
    churn_plan = plan_cutoffs(
        first, end, churn_window_days, n_snapshots, spacing_days, "churn window"
    )
    spend_plan = plan_cutoffs(first, end, horizon_days, n_snapshots, spacing_days, "spend horizon")
    cutoffs = sorted({*churn_plan.train, churn_plan.valid, *spend_plan.train, spend_plan.valid})
    event_types = default_event_types(past, end.to_pydatetime())
    stacked = build_training_set(
        past,
        end,
        cutoffs,
        churn_window_days=churn_window_days,
        horizon_days=horizon_days,
        margin_rate=margin_rate,
        event_types=event_types if past.events is not None else None,
    )

    btyd_params = None
    if btyd_features:
        stacked, btyd_params = with_btyd_by_snapshot(stacked, churn_window_days, horizon_days)

    def rows(dates: list[pd.Timestamp], label: str) -> pd.DataFrame:
        picked = stacked[stacked["as_of"].isin(dates) & stacked[label].notna()]
        return picked.reset_index(drop=True)

    spec = FeatureSpec.from_frame(stacked, event_types if past.events is not None else [])
    return TrainingData(
        churn_train=rows(churn_plan.train, "churned"),
        churn_valid=rows([churn_plan.valid], "churned"),
        spend_train=rows(spend_plan.train, "future_spend"),
        spend_valid=rows([spend_plan.valid], "future_spend"),
        spec=spec,
        churn_plan=churn_plan,
        spend_plan=spend_plan,
        btyd_params=btyd_params,
    )


def data_fingerprint(tables: Tables) -> str:
    """A short content hash of the tables, logged with every run to tie a model to its data."""
    digests = []
    for part in (tables.transactions, tables.customers, tables.events):
        if part is not None:
            rows = pd.util.hash_pandas_object(part, index=False).to_numpy()
            # A wrapping sum: independent of row order, but every row (and duplicate) counts.
            digests.append(f"{int(rows.sum(dtype=np.uint64)):016x}{len(rows):x}")
    return "-".join(digests)
