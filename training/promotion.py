"""Champion against challenger, each on features it can read, over the decision population.

The champion may have been trained on another event vocabulary or on tables this data lacks:
its features are built with its own event types from the same tables, and when inputs it had
values for are absent or empty here it cannot be judged, so nothing is promoted automatically.
Before a promotion, large moves in the mean scores and the recommended actions are reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build import build_features
from features.population import population_mask
from features.schema import ID, Tables
from training.metrics import churn_metrics, population_metrics, spend_metrics
from training.model import ModelBundle
from training.train import TrainResult

log = logging.getLogger(__name__)

# What counts as a large shift between the champion's and the challenger's scores of the same
# customers: the mean churn probability (absolute), the mean of a money score (relative), the
# share of customers given an action (absolute).
CHURN_SHIFT = 0.05
MONEY_SHIFT = 0.25
ACTION_SHIFT = 0.05

# The recommended action of each feature row (a serving concern: the caller passes it in).
ActionsOf = Callable[[ModelBundle, pd.DataFrame, pd.Timestamp], pd.Series]


@dataclass(frozen=True)
class Shift:
    """How the challenger's scores of today's active customers differ from the champion's.

    Attributes:
        lines: every compared figure, one per line, champion first.
        large: the lines past the limits (`CHURN_SHIFT`, `MONEY_SHIFT`, `ACTION_SHIFT`).
        metrics: the figures by name, for MLflow.
    """

    lines: list[str]
    large: list[str]
    metrics: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        """The lines as text."""
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, why, and how its scores differ."""

    promoted: bool
    text: str
    shift: Shift | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def features_for(bundle: ModelBundle, tables: Tables, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Every customer's features as of `cutoff`, built with the bundle's own event types."""
    return build_features(tables, cutoff, event_types=bundle.spec.event_types or None)


def missing_inputs(bundle: ModelBundle, features: pd.DataFrame) -> list[str]:
    """The bundle's inputs this feature frame cannot give it.

    An input is missing when its column is absent, or when every value is null while the
    bundle's reference (its customers as of its training date) had values: an event type it
    learned from that this data never has, a profile column the customers table lacks.
    """
    frame = bundle.model_features(features)
    reference = (bundle.reference or {}).get("features", {})
    missing = []
    for column in bundle.spec.columns:
        if column not in frame:
            missing.append(column)
            continue
        shares = reference.get(column, {}).get("shares") or [1.0]
        had_values = shares[-1] < 1.0  # the last bin holds the missing values
        if had_values and pd.Series(frame[column]).isna().all():
            missing.append(column)
    return missing


def judge(
    result: TrainResult,
    champion: ModelBundle,
    champion_version: str,
    actions: ActionsOf | None = None,
) -> Decision:
    """The stated rule: the challenger replaces the champion when it beats it.

    "Beats" means: on the challenger's out-of-time validation customers in the decision
    population (`features.population`), both models scoring features they can read, a churn
    Brier score no worse and a spend normalized Gini no worse, and one of them better. When
    the champion's inputs are missing from the data, nothing is promoted.
    """
    named = f"champion v{champion_version}"
    if result.tables is None or result.as_of is None:
        return Decision(False, f"kept as challenger: no training tables to judge the {named} on")
    data, window = result.data, int(result.bundle.config["churn_window_days"])
    churn_rows, spend_rows = data.churn_valid, data.spend_valid
    frames = {
        cutoff: features_for(champion, result.tables, cutoff)
        for cutoff in {data.churn_plan.valid, data.spend_plan.valid}
    }
    missing = sorted({c for frame in frames.values() for c in missing_inputs(champion, frame)})
    if missing:
        shown = ", ".join(missing[:12]) + (
            f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        )
        return Decision(
            False,
            f"kept as challenger: the {named} cannot be judged on this data: {len(missing)} of "
            f"its inputs are missing or empty here ({shown}); promote by hand (`vafa promote`) "
            "if the change of data is intended",
        )
    old_churn = _aligned(champion, frames[data.churn_plan.valid], churn_rows)["churn_probability"]
    old_spend = _aligned(champion, frames[data.spend_plan.valid], spend_rows)["predicted_spend"]
    definition = result.bundle.churn_definition
    old = population_metrics(
        churn_metrics,
        churn_rows["churned"],
        old_churn,
        population_mask(churn_rows, window, definition),
        "churn",
    ) | population_metrics(
        spend_metrics,
        spend_rows["future_spend"],
        old_spend,
        population_mask(spend_rows, window, definition),
        "spend",
    )
    new_brier, old_brier = result.metrics["churn_model_brier"], old["churn_brier"]
    new_gini, old_gini = result.metrics["spend_model_normalized_gini"], old["spend_normalized_gini"]
    no_worse = new_brier <= old_brier and new_gini >= old_gini
    better = new_brier < old_brier or new_gini > old_gini
    figures = (
        f"on active customers, churn Brier {new_brier:.4f} vs {old_brier:.4f}, "
        f"spend normalized Gini {new_gini:.4f} vs {old_gini:.4f} ({named})"
    )
    shift = score_shift(result, champion, champion_version, actions)
    large = f"; large shifts: {'; '.join(shift.large)}" if shift.large else ""
    metrics = {f"champion_{k}": v for k, v in old.items()}
    if no_worse and better:
        text = f"promoted: beats the champion on the same out-of-time rows: {figures}{large}"
        return Decision(True, text, shift, metrics)
    return Decision(
        False, f"kept as challenger: does not beat the champion: {figures}", shift, metrics
    )


def score_shift(
    result: TrainResult,
    champion: ModelBundle,
    champion_version: str,
    actions: ActionsOf | None = None,
) -> Shift:
    """Mean scores (and action shares) of today's active customers under both models.

    Today is the training date; each model reads the features it was trained on.
    """
    assert result.tables is not None and result.as_of is not None
    as_of, window = result.as_of, int(result.bundle.config["churn_window_days"])
    models = {"champion": champion, "challenger": result.bundle}
    features = {name: features_for(b, result.tables, as_of) for name, b in models.items()}
    active = {
        name: population_mask(f, window, result.bundle.churn_definition)
        for name, f in features.items()
    }
    scores = {
        name: models[name].predict(f[active[name]]).reset_index(drop=True)
        for name, f in features.items()
    }
    n = int(active["challenger"].sum())
    lines = [
        f"scores as of {as_of.date()} of the {n:,} active customers (bought within {window} "
        f"days), champion v{champion_version} -> challenger:"
    ]
    large: list[str] = []
    metrics: dict[str, float] = {}
    # The ranges move with the values they bound; a champion without them has none to compare.
    compared = [c for c in scores["challenger"].columns if c != ID and c in scores["champion"]]
    for column in (c for c in compared if not c.endswith(("_low", "_high"))):
        old, new = (float(scores[name][column].mean()) for name in ("champion", "challenger"))
        metrics |= {f"shift_{column}_mean_champion": old, f"shift_{column}_mean_challenger": new}
        if column == "churn_probability":
            line = f"mean {column} {old:.3f} -> {new:.3f} ({new - old:+.3f})"
            is_large = abs(new - old) >= CHURN_SHIFT
        else:
            change = new / old - 1 if old else math.inf if new else 0.0
            line = f"mean {column} {old:,.2f} -> {new:,.2f} ({change:+.1%})"
            is_large = abs(change) >= MONEY_SHIFT
        lines.append(f"  {line}")
        if is_large:
            large.append(line)
    table = None if actions is None else _action_shares(actions, models, features, active, as_of)
    if table is None and actions is not None:
        lines.append("  actions not compared: the policy could not score both models (see the log)")
    if table is not None:
        for action, (old, new) in table[["champion", "challenger"]].iterrows():
            metrics |= {
                f"shift_action_{action}_share_champion": float(old),
                f"shift_action_{action}_share_challenger": float(new),
            }
            line = f"action {action}: {old:.1%} -> {new:.1%} ({(new - old) * 100:+.1f} points)"
            lines.append(f"  {line}")
            if abs(new - old) >= ACTION_SHIFT:
                large.append(line)
    for line in large:
        log.warning("challenger against champion v%s: large shift: %s", champion_version, line)
    return Shift(lines, large, {k: v for k, v in metrics.items() if np.isfinite(v)})


def _action_shares(
    actions: ActionsOf,
    models: dict[str, ModelBundle],
    features: dict[str, pd.DataFrame],
    active: dict[str, np.ndarray],
    as_of: pd.Timestamp,
) -> pd.DataFrame | None:
    """Each action's share of the active customers under each model (None: policy failed)."""
    try:
        shares = {
            name: actions(model, features[name][active[name]].reset_index(drop=True), as_of)
            .astype("str")
            .value_counts(normalize=True)
            for name, model in models.items()
        }
    except Exception:  # a report, not a gate: the promotion decision stands without it
        log.warning("the actions of champion and challenger could not be compared", exc_info=True)
        return None
    return pd.DataFrame(shares).fillna(0.0).sort_index()


def _aligned(bundle: ModelBundle, features: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The bundle's predictions for the customers of `rows`, in their order."""
    picked = rows[[ID]].merge(features, on=ID, how="left", validate="one_to_one")
    return bundle.predict(picked)
