"""Out-of-time training sets: which cutoffs train, which validate, and the model matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.build import CATEGORICAL_FEATURES, build_features, default_event_types
from features.columns import ColumnData, categorical, numbers, row_count
from features.labels import LABEL_COLUMNS, ChurnDefinition, build_training_set
from features.schema import Tables, to_timestamp
from features.subscriptions import GRACE_DAYS
from training.btyd.features import with_btyd_by_snapshot
from training.sampling import MAX_TRAIN_ROWS, plan_sample

# A snapshot needs some history before it to say anything about a customer.
MIN_HISTORY_DAYS = 60
# The shortest label window trees learn from; below it only the BTYD base forecasts.
MIN_LABEL_DAYS = 14
# A history shorter than this many purchase cycles (median days between purchase days)
# cannot tell a lapsed customer from a slow one: no model forecasts from it.
MIN_PURCHASE_CYCLES = 2
NOT_FEATURES = {"customer_id", "as_of", *LABEL_COLUMNS}

# The rungs of the ladder, best first (`plan_cutoffs`).
OUT_OF_TIME = "out_of_time"  # training and validation windows as long as the one requested
SHORT_WINDOWS = "short_windows"  # shorter windows; the BTYD base extrapolates to the request
BTYD_ONLY = "btyd_only"  # no training window fits: the BTYD base alone, validated if it can be
RUNGS = (OUT_OF_TIME, SHORT_WINDOWS, BTYD_ONLY)


class HistoryTooShortError(ValueError):
    """The data is too short for any model; the message says what would work."""


@dataclass(frozen=True)
class CutoffPlan:
    """Snapshot dates for one label: training cutoffs, then one later validation cutoff.

    Every training label window ends on or before the validation cutoff, and the validation
    window ends on or before the training date: validation is strictly later, never random.
    `label_days` is the window the snapshots are labelled with: the one requested on the
    `out_of_time` rung, shorter below it (the BTYD base carries the model to the request).
    On the `btyd_only` rung there is no training cutoff, and `valid` is None when not even a
    validation window fits.
    """

    train: list[pd.Timestamp]
    valid: pd.Timestamp | None
    label_days: int
    rung: str = OUT_OF_TIME

    @property
    def validation(self) -> str:
        """How this plan's model is validated, for the run log."""
        if self.valid is None:
            return "none: no window of the history is left to validate on"
        return f"out of time: the {self.label_days}-day window from {self.valid.date()}"


def plan_cutoffs(
    first_ts: pd.Timestamp,
    as_of: pd.Timestamp,
    label_days: int,
    n_snapshots: int,
    spacing_days: int,
    what: str,
    highest: str = OUT_OF_TIME,
) -> CutoffPlan:
    """The best rung of the ladder the history holds for a label of `label_days`.

    `out_of_time` when `MIN_HISTORY_DAYS` plus a training and a validation window of
    `label_days` fit; else `short_windows` with the longest window that fits (at least
    `MIN_LABEL_DAYS`); else `btyd_only`, validated on the longest window a snapshot with
    half the history before it leaves. Which customers the history is long enough for at
    all is `check_history`'s question. `highest` caps the rung, so a backtest can grade the
    lower ones where a better one fits: `short_windows` then labels half the window.
    """
    span = (as_of - first_ts.normalize()).days
    fits = (span - MIN_HISTORY_DAYS) // 2
    if highest == SHORT_WINDOWS:
        fits = min(fits, max(label_days // 2, MIN_LABEL_DAYS))
    if highest == BTYD_ONLY:
        fits = -1
    if fits >= label_days:
        days, rung = label_days, OUT_OF_TIME
    elif fits >= MIN_LABEL_DAYS:
        days, rung = fits, SHORT_WINDOWS
    else:
        days = min(label_days, span // 2)
        valid = as_of - pd.Timedelta(days=days) if days >= 1 else None
        return CutoffPlan(train=[], valid=valid, label_days=max(days, 1), rung=BTYD_ONLY)
    valid = as_of - pd.Timedelta(days=days)
    earliest = first_ts.normalize() + pd.Timedelta(days=MIN_HISTORY_DAYS)
    latest_train = valid - pd.Timedelta(days=days)
    train = [latest_train - pd.Timedelta(days=spacing_days * k) for k in range(n_snapshots)]
    train = sorted(c for c in train if c >= earliest)
    return CutoffPlan(train=train, valid=valid, label_days=days, rung=rung)


def check_history(transactions: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """Refuse only a history too short for any model: under `MIN_PURCHASE_CYCLES` cycles.

    Raises:
        HistoryTooShortError: no repeat purchase, or the history spans fewer purchase cycles
            than a lapse can be told from; the message says how much history would do.
    """
    past = transactions[(transactions["ts"] < as_of) & (transactions["amount"] >= 0)]
    if past.empty:
        raise HistoryTooShortError(f"no purchase before {as_of.date()}: nothing to learn from")
    days = past[["customer_id"]].assign(day=past["ts"].dt.normalize()).drop_duplicates()
    days = days.sort_values(["customer_id", "day"])
    gaps = days.groupby("customer_id")["day"].diff().dropna().dt.days
    first = days["day"].min()
    span = (as_of - first).days
    if gaps.empty:
        raise HistoryTooShortError(
            f"the {span} days of history ({first.date()} to {as_of.date()}) hold no repeat "
            "purchase: no model can learn how often customers buy. Train again once some "
            "customers have bought on a second day."
        )
    cycle = float(gaps.median())
    if span < MIN_PURCHASE_CYCLES * cycle:
        raise HistoryTooShortError(
            f"the history covers {span} days ({first.date()} to {as_of.date()}), under "
            f"{MIN_PURCHASE_CYCLES} purchase cycles (customers buy every {cycle:.0f} days, the "
            f"median): a lapse cannot be told from a slow buyer yet. At least "
            f"{int(np.ceil(MIN_PURCHASE_CYCLES * cycle))} days of history would do."
        )


def check_subscriptions(tables: Tables, as_of: pd.Timestamp) -> None:
    """Refuse contractual churn without subscription terms held before `as_of`.

    Raises:
        HistoryTooShortError: no subscriptions table, or no term started before `as_of`.
    """
    terms = tables.subscriptions
    if terms is None or not (terms["start_ts"] < as_of).any():
        raise HistoryTooShortError(
            f"contractual churn needs subscription terms started before {as_of.date()}: "
            "add a subscriptions table (docs/contract.md) or train with the inactivity "
            "definition"
        )


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
    seed: int = 0,
    max_train_rows: int | None = MAX_TRAIN_ROWS,
    highest_rung: str = OUT_OF_TIME,
    definition: ChurnDefinition = "inactivity",
) -> TrainingData:
    """Feature+label snapshots for both models using only rows before `as_of`.

    Each target gets the best rung of the ladder its window allows (`plan_cutoffs`); its
    snapshots are labelled with that rung's window. With `btyd_features`, each snapshot also
    gets BG/NBD outputs fitted on that snapshot alone. With the contractual `definition` a
    snapshot's rows are the subscribers at its cutoff, and a lapse's grace must fit too.

    Raises:
        HistoryTooShortError: the history is too short for any model (`check_history`).
    """
    end = to_timestamp(as_of)
    past = tables.before(end)
    contractual = definition == "contractual"
    if contractual:
        check_subscriptions(tables, end)
    else:
        check_history(past.transactions, end)
    first = to_timestamp(past.transactions["ts"].min())
    if contractual:
        assert past.subscriptions is not None
        first = min(first, to_timestamp(past.subscriptions["start_ts"].min()))
    # A contractual label reads the terms starting up to a grace after its window.
    labels_end = end - pd.Timedelta(days=GRACE_DAYS) if contractual else end
    churn_plan = plan_cutoffs(
        first,
        labels_end,
        churn_window_days,
        n_snapshots,
        spacing_days,
        "churn window",
        highest_rung,
    )
    spend_plan = plan_cutoffs(
        first, labels_end, horizon_days, n_snapshots, spacing_days, "spend horizon", highest_rung
    )
    plans = (churn_plan, spend_plan)
    cutoffs = sorted({c for plan in plans for c in (*plan.train, plan.valid) if c is not None})
    event_types = default_event_types(past, end.to_pydatetime())
    types = event_types if past.events is not None else []
    # Above `max_train_rows` a training split keeps a share of its customers (validation whole).
    sample = plan_sample(
        past,
        {"churn": churn_plan.train, "spend": spend_plan.train},
        max_rows=max_train_rows,
        seed=seed,
    )
    if cutoffs:
        stacked = build_training_set(
            past,
            end,
            cutoffs,
            churn_window_days=churn_plan.label_days,
            horizon_days=spend_plan.label_days,
            margin_rate=margin_rate,
            event_types=event_types if past.events is not None else None,
            sample=sample.by_cutoff(whole=[churn_plan.valid, spend_plan.valid]),
            seed=seed,
            definition=definition,
        )
    else:
        features = build_features(past, end, event_types=types or None)
        stacked = features.assign(as_of=end, **dict.fromkeys(LABEL_COLUMNS, np.nan))
        stacked = stacked.astype(dict.fromkeys(LABEL_COLUMNS, "float64"))

    btyd_params = None
    if btyd_features:
        stacked, btyd_params = with_btyd_by_snapshot(
            stacked, churn_plan.label_days, spend_plan.label_days
        )

    def rows(dates: list[pd.Timestamp | None], label: str) -> pd.DataFrame:
        picked = stacked[stacked["as_of"].isin([d for d in dates if d is not None])]
        return picked[picked[label].notna()].reset_index(drop=True)

    spec = FeatureSpec.from_frame(stacked, types)
    return TrainingData(
        churn_train=sample.take("churn", rows(churn_plan.train, "churned")),
        churn_valid=rows([churn_plan.valid], "churned"),
        spend_train=sample.take("spend", rows(spend_plan.train, "future_spend")),
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
