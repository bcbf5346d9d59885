"""Backtest: train as of T as `vafa train` does, then grade against what happened after T."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.build import build_features
from features.labels import build_labels
from features.population import population_mask, population_rule
from features.schema import Tables, default_as_of
from features.subscriptions import GRACE_DAYS
from training.baselines import churn_baselines, spend_baselines
from training.datasets import RUNGS
from training.intervals import SpendIntervals, coverage
from training.metrics import ALL_CUSTOMERS, churn_metrics, spend_metrics
from training.model import ModelBundle
from training.train import TrainOptions, TrainResult, churn_definition, train_models

CHURN_ROWS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "top_decile_lift",
    "top_decile_capture",
)
SPEND_ROWS = (
    "spearman",
    "normalized_gini",
    "mae",
    "rmse",
    "top_decile_capture",
    "decile_mape",
    "total_error",
)


@dataclass
class BacktestResult:
    """Side-by-side metrics of the model and every baseline, on the customers scored at T.

    `churn` and `spend` are over the decision population (customers who bought within the
    churn window before T, `features.population`); `churn_all` and `spend_all` over every
    customer scored at T.
    """

    churn: pd.DataFrame  # rows: metrics; columns: model, recency, bgnbd
    spend: pd.DataFrame  # rows: metrics; columns: model, last_period, bgnbd_gg
    trained: TrainResult
    n_customers: int
    churn_all: pd.DataFrame
    spend_all: pd.DataFrame
    n_active: int
    churn_window_days: int
    # Per target ("churn", "spend"): one row per customer scored at T with `actual`, `active`
    # and one column per model and baseline: what paired comparisons resample.
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Out-of-time checks of the ranges: coverage of spend and CLV, the equity range and total.
    intervals: dict[str, float] = field(default_factory=dict)
    definition: str = "inactivity"  # what churn means (features.labels.CHURN_DEFINITIONS)

    def render(self) -> str:
        """The four tables as text: the decision population first, then every customer."""
        active = (
            f"{self.n_active:,} active customers of {self.n_customers:,} "
            f"({population_rule(self.churn_window_days, self.definition)})"
        )
        meaning = (
            "the subscription lapses in the window after T"
            if self.definition == "contractual"
            else "no purchase in the window after T"
        )
        return (
            f"churn, {active}; churn = {meaning}\n"
            f"{self.churn.round(4).to_string()}\n\n"
            f"spend over the horizon, {active}\n{self.spend.round(4).to_string()}\n\n"
            f"churn, all {self.n_customers:,} customers (long-gone ones included)\n"
            f"{self.churn_all.round(4).to_string()}\n\n"
            f"spend over the horizon, all {self.n_customers:,} customers\n"
            f"{self.spend_all.round(4).to_string()}{self._render_ladder()}{self._render_ranges()}"
        )

    def _render_ladder(self) -> str:
        """Which rung each target trained on, with its label window and validation."""
        trained = self.trained
        ladder = (trained.bundle.config.get("ladder") if trained is not None else None) or {}
        lines = [
            f"{target}: rung {step['rung']}, {step['label_days']}-day labels, validated "
            f"{step['validation']}, {step['btyd_family'] or step.get('base')} base, correction "
            "weight "
            f"{step['correction_weight']:.2f}"
            for target, step in ladder.items()
        ]
        return "\n\nladder\n" + "\n".join(lines) if lines else ""

    def _render_ranges(self) -> str:
        """The 80% ranges out of time: coverage, and the equity range against the truth."""
        checks = self.intervals
        if not checks:
            return ""
        everyone = checks["spend_coverage_all"]
        return (
            "\n\n80% ranges after T: spend covered "
            f"{checks['spend_coverage']:.1%} of active customers ({everyone:.1%}"
            f" of all), CLV {checks['clv_coverage']:.1%} ({checks['clv_coverage_all']:.1%}); "
            f"customer equity {checks['equity_predicted']:,.0f} in [{checks['equity_low']:,.0f}, "
            f"{checks['equity_high']:,.0f}], came true {checks['equity_actual']:,.0f}"
        )

    def flat_metrics(self) -> dict[str, float]:
        """`backtest_<target>_<model>_<metric>` (decision population) and `..._all`, for MLflow."""
        out: dict[str, float] = {}
        tables = (
            ("churn", "", self.churn),
            ("spend", "", self.spend),
            ("churn", ALL_CUSTOMERS, self.churn_all),
            ("spend", ALL_CUSTOMERS, self.spend_all),
        )
        for target, suffix, table in tables:
            for model in table.columns:
                for metric, value in table[model].items():
                    out[f"backtest_{target}_{model}_{metric}{suffix}"] = float(value)
        out |= {f"backtest_interval_{k}": float(v) for k, v in self.intervals.items()}
        return out


def backtest(
    tables: Tables,
    as_of: pd.Timestamp,
    options: TrainOptions,
    storage: str | None = None,
    every_rung: bool = False,
) -> BacktestResult:
    """Train on rows before `as_of`, score as of it, and compare with the windows after it.

    With `every_rung`, the rungs of the ladder below the one the history allowed are trained
    too and graded beside it (columns `rung_<name>`): what a shorter history would have got.

    Raises:
        ValueError: the data does not reach `as_of` plus the longer window.
    """
    definition = churn_definition(options, tables)
    grace = GRACE_DAYS if definition == "contractual" else 0
    needed = as_of + pd.Timedelta(days=max(options.churn_window_days + grace, options.horizon_days))
    data_end = default_as_of(tables)
    if data_end < needed:
        raise ValueError(
            f"a backtest as of {as_of.date()} needs data until {needed.date()} (the windows "
            f"after it) but the data ends on {data_end.date()}: choose an earlier --as-of"
        )
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    trained = train_models(tables.before(as_of), as_of, options, storage, f"backtest-{stamp}")
    bundle = trained.bundle
    features = build_features(tables, as_of, event_types=bundle.spec.event_types or None)
    labels = build_labels(
        tables,
        as_of,
        options.churn_window_days,
        options.horizon_days,
        options.margin_rate,
        definition,
    )
    scored = features.merge(labels, on="customer_id", validate="one_to_one")
    predictions = bundle.predict(scored)
    past = tables.before(as_of)

    churn_preds = {"model": predictions["churn_probability"].to_numpy()}
    spend_preds = {"model": predictions["predicted_spend"].to_numpy()}
    if every_rung:
        used = min(
            RUNGS.index(plan.rung) for plan in (trained.data.churn_plan, trained.data.spend_plan)
        )
        for rung in RUNGS[used + 1 :]:
            lower = replace(options, highest_rung=rung)
            below = train_models(past, as_of, lower, storage, f"backtest-{stamp}-{rung}")
            scores = below.bundle.predict(scored)
            churn_preds[f"rung_{rung}"] = scores["churn_probability"].to_numpy()
            spend_preds[f"rung_{rung}"] = scores["predicted_spend"].to_numpy()
    churn_preds |= churn_baselines(
        past,
        trained.data.churn_train,
        scored,
        as_of,
        options.churn_window_days,
        definition,
        bundle.spec.event_types,
    )
    spend_preds |= spend_baselines(past, scored, as_of, options.horizon_days, definition)
    everyone = np.ones(len(scored), dtype=bool)
    active = population_mask(scored, options.churn_window_days, definition)
    intervals = _interval_checks(bundle, predictions, scored, active)
    labelled = scored["churned"].notna().to_numpy()  # contractual: the subscribers
    churn, churn_all = (
        _table(churn_metrics, scored["churned"], churn_preds, rows & labelled, CHURN_ROWS)
        for rows in (active, everyone)
    )
    spend, spend_all = (
        _table(spend_metrics, scored["future_spend"], spend_preds, rows, SPEND_ROWS)
        for rows in (active, everyone)
    )
    return BacktestResult(
        churn=churn,
        spend=spend,
        trained=trained,
        n_customers=len(scored),
        churn_all=churn_all,
        spend_all=spend_all,
        n_active=int(active.sum()),
        churn_window_days=options.churn_window_days,
        intervals=intervals,
        definition=definition,
        predictions={
            target: pd.DataFrame(
                {"customer_id": scored["customer_id"], "actual": scored[label], "active": active}
                | preds
            )[rows].reset_index(drop=True)
            for target, label, preds, rows in (
                ("churn", "churned", churn_preds, labelled),
                ("spend", "future_spend", spend_preds, everyone),
            )
        },
    )


def _interval_checks(
    bundle: ModelBundle, predictions: pd.DataFrame, scored: pd.DataFrame, active: np.ndarray
) -> dict[str, float]:
    """How the model's 80% ranges fared against what happened after T (empty without ranges).

    Spend ranges against the spend, CLV ranges against the margin (discounted as CLV is), on
    the decision population and on everyone; and customer equity's range against the CLV
    that came true.
    """
    stored = bundle.config.get("spend_intervals")
    if not stored:
        return {}
    discount = float(bundle.config.get("discount_factor", 1.0))
    realised = scored["future_margin"].to_numpy(dtype=float) * discount
    out: dict[str, float] = {}
    for suffix, rows in (("", active), (ALL_CUSTOMERS, np.ones(len(scored), dtype=bool))):
        out[f"spend_coverage{suffix}"] = coverage(
            scored["future_spend"][rows],
            predictions["spend_low"][rows],
            predictions["spend_high"][rows],
        )
        out[f"clv_coverage{suffix}"] = coverage(
            realised[rows], predictions["clv_low"][rows], predictions["clv_high"][rows]
        )
    low, high = SpendIntervals.from_dict(stored).equity_interval(
        predictions["predicted_spend"], predictions["clv"]
    )
    out |= {
        "equity_predicted": float(predictions["clv"].sum()),
        "equity_low": low,
        "equity_high": high,
        "equity_actual": float(realised.sum()),
    }
    return out


def _table(
    metrics_of: Callable[[ArrayLike, ArrayLike], dict[str, float]],
    actual: pd.Series,
    predictions: dict[str, np.ndarray],
    rows: np.ndarray,
    shown: tuple[str, ...],
) -> pd.DataFrame:
    """Rows: metrics; columns: the model and each baseline; over `rows` (NaN when none)."""
    y = actual.to_numpy(dtype=float)[rows]
    columns = {
        name: (
            metrics_of(y, np.asarray(pred, dtype=float)[rows])
            if rows.any()
            else dict.fromkeys(shown, np.nan)
        )
        for name, pred in predictions.items()
    }
    return pd.DataFrame({name: {k: m[k] for k in shown} for name, m in columns.items()})
