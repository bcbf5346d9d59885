"""Writing a campaign: refused for a flagged run unless allowed, kept under its own id for good.

A campaign is written outside the run folders, in `OUT/campaigns/as_of=YYYY-MM-DD/`
(`serving.runs.campaign_folder`): re-scoring the date replaces the run folder whole and would
delete anything inside it. Each campaign gets its own id (UTC time and a random suffix), so a
second campaign from the same run never replaces the first; its summary records the run, the
terms it was planned with and any flag it was allowed past.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.io import write_frame, write_text
from serving.campaign.plan import PLAN_COLUMNS, CampaignPlan, plan_campaign
from serving.runs import Run, campaign_folder, read_summary, run_flags

FLAG_KINDS = {"stale": "stale data", "drift": "drift"}


class RunFlagged(ValueError):
    """The run is flagged stale or drifted and the campaign was not allowed to use it.

    Attributes:
        kinds: the refused kinds of flag, `stale` and/or `drift`.
    """

    def __init__(self, message: str, kinds: tuple[str, ...]) -> None:
        super().__init__(message)
        self.kinds = kinds


def check_run_flags(
    flags: Mapping[str, list[str]],
    as_of: pd.Timestamp,
    *,
    allow_stale: bool = False,
    allow_drift: bool = False,
) -> None:
    """Refuse a run flagged stale or drifted (its summary's flags, `serving.runs.run_flags`).

    Args:
        flags: `stale` (freshness messages) and `drift` (drifted columns) of the run.
        as_of: the run's date, for the message.
        allow_stale: use a run with stale data anyway.
        allow_drift: use a drifted run anyway.

    Raises:
        RunFlagged: a flag not allowed; the message names every such flag.
    """
    allowed = {"stale": allow_stale, "drift": allow_drift}
    refused = tuple(kind for kind in FLAG_KINDS if flags.get(kind) and not allowed[kind])
    if not refused:
        return
    named = "; ".join(f"{FLAG_KINDS[kind]}: {', '.join(flags[kind])}" for kind in refused)
    raise RunFlagged(
        f"the run as of {pd.Timestamp(as_of).date()} is flagged ({named}): its scores may "
        "not describe the customers as they are now",
        refused,
    )


def new_campaign_id(now: pd.Timestamp | None = None) -> str:
    """A new campaign id: the UTC time, then random hex (`20261101T210501Z-3f9a1c2b`)."""
    made = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return f"{made:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def write_plan(
    plan: CampaignPlan,
    out_path: Path | str,
    facts: Mapping[str, Any] | None = None,
    *,
    replace: bool = True,
) -> tuple[Path, Path]:
    """Write the selected customers and, next to them, a JSON summary; each atomically.

    The table is Parquet or CSV by the extension of `out_path`; the summary goes to the same
    name with `.summary.json` in place of the extension (`plan.parquet` -> `plan.summary.json`).
    The summary is written last, so its presence marks a complete pair.

    Args:
        plan: the plan.
        out_path: target file ending in `.parquet` or `.csv`; parent folders are created.
        facts: more for the summary (the campaign id, the run, the terms it was planned with).
        replace: replace an existing table or summary; False refuses (nothing is written).

    Returns:
        The table's path and the summary's path.

    Raises:
        ValueError: the extension is neither `.parquet` nor `.csv` (nothing is written).
        FileExistsError: `replace` is False and the table or its summary exists.
    """
    out_path = Path(out_path)
    summary_path = out_path.with_suffix(".summary.json")
    if not replace:
        taken = [str(path) for path in (out_path, summary_path) if path.exists()]
        if taken:
            raise FileExistsError(
                f"{' and '.join(taken)} exist(s): a campaign never replaces another"
            )
    table = write_frame(plan.selected, out_path)
    document = {
        **(facts or {}),
        "plan": table.name,
        "columns": list(PLAN_COLUMNS),
        **plan.to_dict(),
    }
    write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", summary_path)
    return table, summary_path


@dataclass(frozen=True)
class Campaign:
    """A planned campaign, not yet written.

    Attributes:
        campaign_id: its own id (`new_campaign_id`).
        run: the published run it was planned from.
        plan: whom to contact.
        flags: the run's flags (`serving.runs.run_flags`); any non-empty one was allowed.
        terms: what it was planned with (budget, default cost, policy), for its summary.
    """

    campaign_id: str
    run: Run
    plan: CampaignPlan
    flags: dict[str, list[str]]
    terms: dict[str, Any]

    def facts(self) -> dict[str, Any]:
        """What the summary records beside the plan: id, run, terms and flags allowed past."""
        return {
            "campaign_id": self.campaign_id,
            "as_of": str(self.run.as_of.date()),
            "run": str(self.run.folder),
            **self.terms,
            "allowed_flags": {kind: flagged for kind, flagged in self.flags.items() if flagged},
        }


def plan_from_run(
    run: Run,
    actions: Mapping[str, Any],
    budget: float,
    default_cost: float | None,
    *,
    allow_stale: bool = False,
    allow_drift: bool = False,
    terms: Mapping[str, Any] | None = None,
) -> Campaign:
    """Plan a campaign from a published run, refusing a flagged run unless allowed.

    Args:
        run: the run (`serving.runs.latest_run`).
        actions: the action table (see `plan_campaign`).
        budget: the most the campaign may cost.
        default_cost: the cost per contact of actions without their own.
        allow_stale: use a run flagged for stale data anyway.
        allow_drift: use a run flagged for drift anyway.
        terms: more to record in the summary (e.g. the policy file).

    Raises:
        RunFlagged: the run is flagged and not allowed (see `check_run_flags`).
        ValueError: the scores or the terms are invalid (see `plan_campaign`).
    """
    scores = pd.read_parquet(run.scores_path)
    flags = run_flags(read_summary(run, scores))
    check_run_flags(flags, run.as_of, allow_stale=allow_stale, allow_drift=allow_drift)
    plan = plan_campaign(scores, actions, budget, default_cost)
    recorded = {"budget": budget, "default_cost": default_cost, **(terms or {})}
    return Campaign(new_campaign_id(), run, plan, flags, recorded)


def save_campaign(
    campaign: Campaign, scores_dir: Path, out: Path | None = None
) -> tuple[Path, Path]:
    """Write a campaign, by default as `OUT/campaigns/as_of=DATE/<campaign id>.csv`.

    Args:
        campaign: the campaign.
        scores_dir: the folder of runs (`vafa score --out`), home of the default location.
        out: a file of one's own (`.csv` or `.parquet`) instead of the default location.

    Returns:
        The table's path and its summary's (`<id>.summary.json`).

    Raises:
        FileExistsError: `out` or its summary exists (a campaign never replaces another).
    """
    folder = campaign_folder(scores_dir, campaign.run.as_of)
    path = out if out is not None else folder / f"{campaign.campaign_id}.csv"
    return write_plan(campaign.plan, path, campaign.facts(), replace=False)
