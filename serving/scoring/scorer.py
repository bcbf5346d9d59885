"""The one place scores are made: feature rows in, score rows (value, risk, reasons, action) out."""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.columns import ColumnData, numbers, text_arrays
from features.population import HOLDS_TERM, population_mask
from serving.scoring.columns import ACTIVE_COLUMN, SEGMENT_COLUMNS, SUBSCRIPTION_COLUMNS
from serving.scoring.policy.apply import recommend_columns
from serving.scoring.policy.schema import Policy, load_policy
from serving.scoring.reasons import ReasonModel
from serving.scoring.segments import segment_columns
from serving.scoring.treeshap import GroupedTreeShap
from training.model import ModelBundle, ModelInput, predict
from training.thresholds import SegmentThresholds, reference_population

ReasonScope = Literal["actionable", "all", "none"]
# The reason of a customer whose features all lower the churn score (an action may still
# apply, e.g. a VIP welcome): said, so that a blank never reads as "not computed".
NO_DRIVER = "nothing raises the risk above the average customer's"


@dataclass
class Scorer:
    """Scores customers with a model bundle; the nightly batch and the online service call this.

    Reasons are TreeSHAP values of the churn model, by far the costliest part of scoring (per
    row, hundreds of times a prediction), so by default they are computed only where someone
    will read them: for customers whose action is a retention effort. The policy's actions
    that cost nothing and are assumed to change nothing (`no_action`, and in the default
    policy the regular `newsletter` of low-risk customers) get none: nobody reads the reasons
    behind a newsletter. `score(..., reasons="all")` gives everyone reasons, and `explain`
    computes them on demand for the customers someone opens.

    Attributes:
        bundle: the champion's bundle (models, calibration, feature spec, windows).
        version: the registry version of the bundle, written on every score row.
        policy: the retention policy (actions, channels, discount rule); None = the default.
        num_threads: LightGBM threads (1 for online requests, 0 = all cores for batches).
    """

    bundle: ModelBundle
    version: str
    policy: Policy | None = None
    num_threads: int = 0
    reasons_per_customer: int = 3
    _reason_model: ReasonModel = field(init=False, repr=False)
    _thresholds: SegmentThresholds | None = field(init=False, repr=False)
    _unread_actions: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reason_model = ReasonModel.for_columns(self.bundle.spec.columns)
        if self.policy is None:
            self.policy = load_policy()
        stored = self.bundle.config.get("segments")
        self._thresholds = SegmentThresholds.from_dict(stored) if stored else None
        self._unread_actions = [
            name
            for name, action in self.policy.actions.items()
            if action.cost == 0 and action.success_rate == 0
        ]

    def score(
        self, features: pd.DataFrame, as_of: pd.Timestamp, reasons: ReasonScope = "actionable"
    ) -> pd.DataFrame:
        """Score rows for every customer in `features` (as `build_features` returns them).

        Args:
            features: feature rows as of `as_of`.
            as_of: the date the features are as of.
            reasons: whose reasons to compute: customers whose action is a retention effort
                (TreeSHAP is the costly part, so only where someone will read them; see the
                class docstring), everyone, or nobody.

        Returns:
            One row per customer: the contract's score columns plus the CRM extras.
        """
        columns = self.score_columns(features, len(features), as_of, reasons)
        plain = {k: v.array if isinstance(v, pd.Series) else v for k, v in columns.items()}
        return pd.DataFrame(text_arrays(plain), copy=False)

    def score_columns(
        self,
        features: ColumnData,
        n: int,
        as_of: pd.Timestamp,
        reasons: ReasonScope = "actionable",
    ) -> dict[str, Any]:
        """`score` as a dict of columns, from a feature frame or a dict of feature columns.

        The online service scores a few customers without pandas' cost per column; text
        columns are numpy object arrays here (`score` makes them `str`).
        """
        bundle = self.bundle
        window = int(bundle.config["churn_window_days"])
        predicted = bundle.predict_columns(features, n, self.num_threads)
        frame, matrix = predicted.model_frame, predicted.matrix
        churn, clv = predicted.churn_probability, predicted.clv
        scores: dict[str, Any] = {
            "customer_id": np.asarray(features["customer_id"]),
            "as_of": np.full(n, pd.Timestamp(as_of).normalize().asm8),
            "churn_probability": churn,
            "predicted_spend": predicted.predicted_spend,
            "clv": clv,
            "value_at_risk": churn * clv,
            "spend_low": predicted.spend_low,
            "spend_high": predicted.spend_high,
            "clv_low": predicted.clv_low,
            "clv_high": predicted.clv_high,
            **_next_order(features, n, as_of),
            # Copies: a score row is not a view of the caller's feature rows.
            **{name: numbers(features, name, n).copy() for name in SUBSCRIPTION_COLUMNS},
            ACTIVE_COLUMN: population_mask(features, window, self.bundle.churn_definition, n),
        }
        acted = self._segment_and_act(features, scores, n)
        text = np.full(n, "", dtype=object)
        if reasons != "none":
            chosen = (
                np.arange(n)
                if reasons == "all"
                else np.flatnonzero(~np.isin(acted["recommended_action"], self._unread_actions))
            )
            if chosen.size:
                rows = matrix[chosen] if isinstance(matrix, np.ndarray) else matrix.iloc[chosen]
                text[chosen] = self._reason_model.texts(
                    self._family_contributions(rows, frame, chosen, n),
                    frame,
                    self.reasons_per_customer,
                    rows=chosen,
                    none=NO_DRIVER,
                    n=n,
                )
        return {
            **scores,
            **acted,
            "reasons": text,
            "model_version": np.full(n, self.version, dtype=object),
            "churn_window_days": np.full(n, window),
            "horizon_days": np.full(n, int(bundle.config["horizon_days"])),
        }

    def explain(self, features: pd.DataFrame) -> tuple[np.ndarray, list[list[str]]]:
        """Per-row churn contributions (log-odds, TreeSHAP) and the reason families chosen."""
        frame = self.bundle.model_features(features)
        matrix = self.bundle.model_input(frame)
        contributions = predict(self.bundle.churn, matrix, self.num_threads, pred_contrib=True)
        _, names = self._reason_model.top_reasons(contributions, frame, self.reasons_per_customer)
        return contributions, names

    def prepare(self) -> None:
        """Build the TreeSHAP tables now rather than on the first reasons.

        A fraction of a second: no request of the online service should wait for it.
        """
        _ = self._explainer

    @cached_property
    def _explainer(self) -> GroupedTreeShap | None:
        """The tabled TreeSHAP of the churn model, built once; None if too deep to table."""
        model = self._reason_model
        return GroupedTreeShap.for_booster(
            self.bundle.churn, model.indicator.argmax(axis=1), len(model.families)
        )

    def _family_contributions(
        self, matrix: ModelInput, frame: ColumnData, rows: np.ndarray, n: int
    ) -> np.ndarray:
        """Churn contributions (log-odds) summed by reason family (rows x families).

        The trees' TreeSHAP values, times the weight their correction is applied with; a BTYD
        base's own lift over its average (`ModelBundle.churn_base_shift`) goes to the family of
        `recency_days`, the purchase rhythm it reads. The tabled TreeSHAP
        (`serving.scoring.treeshap`) gives `pred_contrib`'s values several times faster; models
        too deep to table, or read as a frame, take `pred_contrib`.
        """
        if isinstance(matrix, np.ndarray) and (explainer := self._explainer) is not None:
            by_family = explainer(matrix, self.num_threads)
        else:
            contributions = predict(self.bundle.churn, matrix, self.num_threads, pred_contrib=True)
            by_family = self._reason_model.family_contributions(contributions)
        shift = self.bundle.churn_base_shift(frame, n)
        if shift is None:
            return by_family
        by_family = by_family * self.bundle.config["correction_weight"]["churn"]
        model = self._reason_model
        if "recency_days" in model.columns:
            family = int(model.indicator[model.columns.index("recency_days")].argmax())
            by_family[:, family] += shift[rows]
        return by_family

    def _segment_and_act(
        self, features: ColumnData, scores: dict[str, Any], n: int
    ) -> dict[str, Any]:
        """Segment, lifecycle stage and the recommended action with its channel and reason.

        The segment thresholds come with the model (quantiles of its validation scores); a
        bundle without them falls back to this batch's own quantiles.

        Returns:
            The `SEGMENT_COLUMNS` there are and the policy's columns but `customer_id`.
        """
        assert self.policy is not None
        # The scores first, then the features they do not shadow: one view, nothing copied.
        scored = ChainMap(scores, features)  # type: ignore[arg-type]
        window = int(self.bundle.config["churn_window_days"])
        if self._thresholds is not None:
            thresholds = self._thresholds
        elif n == 0:  # nobody to segment, and no quantiles to take
            thresholds = SegmentThresholds((0.0, 0.0), (0.0, 0.0), 0.0, churn_window_days=window)
        else:
            # Only the columns the fit reads: a frame of every feature costs more than the fit.
            read = ("recency_days", HOLDS_TERM, "clv", "churn_probability")
            population = pd.DataFrame({c: numbers(scored, c, n) for c in read})
            thresholds = SegmentThresholds.fit(
                reference_population(population, window, self.bundle.churn_definition),
                churn_window_days=window,
            )
        segments = segment_columns(scored, thresholds, n)
        actions = recommend_columns(ChainMap(segments, scored), n, self.policy)
        kept = {c: segments[c] for c in SEGMENT_COLUMNS if c in segments}
        return {**kept, **actions}


def _next_order(features: ColumnData, n: int, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """When each customer would normally buy again: last purchase plus their own mean gap.

    A date before `as_of` is no forecast: that customer is `overdue` (no date, and the days
    since it was due); one on or after it is `due` then (0 days overdue); without a gap (one
    purchase day) the status is `unknown`. In numpy rather than pandas timedeltas: the same
    dates, a millisecond less per request.

    Returns:
        The `NEXT_ORDER_COLUMNS`: `expected_next_order`, `next_order_status`, `days_overdue`.
    """
    missing = np.datetime64("NaT", "ns")
    status = np.full(n, "unknown", dtype=object)
    if "gap_mean_days" not in features:
        return {
            "expected_next_order": np.full(n, missing),
            "next_order_status": status,
            "days_overdue": np.full(n, np.nan),
        }
    days = numbers(features, "gap_mean_days", n) - numbers(features, "recency_days", n)
    known = np.isfinite(days)
    nanoseconds = np.round(np.where(known, days, 0.0) * 86_400e9).astype(np.int64)
    day = np.datetime64(pd.Timestamp(as_of).normalize().as_unit("ns").asm8, "D")
    start = np.datetime64(pd.Timestamp(as_of).as_unit("ns").asm8)
    due = (start + nanoseconds.astype("timedelta64[ns]")).astype("datetime64[D]")
    late = known & (due < day)
    status[known] = "due"
    status[late] = "overdue"
    overdue_days = (day.astype(np.int64) - due.astype(np.int64)).astype(np.float64)  # both in days
    return {
        "expected_next_order": np.where(known & ~late, due.astype("datetime64[ns]"), missing),
        "next_order_status": status,
        "days_overdue": np.where(late, overdue_days, np.where(known, 0.0, np.nan)),
    }
