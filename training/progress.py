"""Tuning progress: a bar on a terminal, one log line per trial otherwise (cron, CI, a pipe)."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, TextIO

import optuna

log = logging.getLogger(__name__)


class TrialProgress:
    """An Optuna callback that reports each finished trial of one study.

    Attributes:
        name: what is tuned (e.g. "churn model"), shown with every update.
        total: the trial budget (a timeout may end the study earlier).
    """

    def __init__(self, name: str, total: int, stream: TextIO | None = None) -> None:
        self.name, self.total = name, total
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.perf_counter()
        self._bar: Any = None
        if self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"tuning {name}", unit="trial", file=self._stream)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Report one finished (completed, pruned or failed) trial."""
        best = _best_value(study)
        if self._bar is not None:
            self._bar.set_postfix_str(f"best {best:.4f}" if math.isfinite(best) else "")
            self._bar.update(1)
            return
        log.info(
            "tuning %s: trial %d/%d %s (best %.4f, %.0f s so far)",
            self.name,
            trial.number + 1,
            self.total,
            trial.state.name.lower(),
            best,
            time.perf_counter() - self._started,
        )

    def close(self) -> None:
        """End the bar (a timeout may stop before the budget)."""
        if self._bar is not None:
            self._bar.close()


def _best_value(study: optuna.Study) -> float:
    """The best objective so far, NaN before the first completed trial."""
    try:
        return float(study.best_value)
    except ValueError:
        return float("nan")
