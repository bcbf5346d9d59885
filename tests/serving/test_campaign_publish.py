"""Campaigns from published runs: flagged runs refused unless allowed, every campaign kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.campaign.publish import RunFlagged, check_run_flags, plan_from_run, save_campaign
from serving.runs import find_runs, staged, summarise
from tests.serving.test_campaign import ACTIONS, FIVE, scores

AS_OF = pd.Timestamp("2024-06-01")
STALE = ["transactions: latest row 12 days before 2024-06-01"]
DRIFT = ["recency_days", "clv"]


def publish(out: Path, rows: list[tuple[str, float, float, str]], **flags: list[str]) -> None:
    """Publish the run as of AS_OF as `vafa score` does: scores and summary, swapped in whole."""
    frame = scores(rows).assign(model_version="1")
    summary = summarise(frame, {}) | {
        "freshness": {"flags": flags.get("stale", [])},
        "drift": {"flagged": flags.get("drift", []), "threshold": 0.25},
    }
    with staged(out, AS_OF) as staging:
        frame.to_parquet(staging / "scores.parquet")
        (staging / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(
    ("flags", "allowed", "refused"),
    [
        ({"stale": STALE, "drift": []}, {}, ("stale",)),
        ({"stale": [], "drift": DRIFT}, {}, ("drift",)),
        ({"stale": STALE, "drift": DRIFT}, {}, ("stale", "drift")),
        ({"stale": STALE, "drift": DRIFT}, {"allow_stale": True}, ("drift",)),
        ({"stale": STALE, "drift": DRIFT}, {"allow_drift": True}, ("stale",)),
    ],
)
def test_a_flagged_run_is_refused_naming_its_flags(
    flags: dict[str, list[str]], allowed: dict[str, bool], refused: tuple[str, ...]
) -> None:
    with pytest.raises(RunFlagged) as caught:
        check_run_flags(flags, AS_OF, **allowed)
    assert caught.value.kinds == refused
    message = str(caught.value)
    assert "2024-06-01" in message
    for kind in refused:
        for flag in flags[kind]:
            assert flag in message


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [
        ({"stale": [], "drift": []}, {}),
        ({}, {}),
        ({"stale": STALE, "drift": DRIFT}, {"allow_stale": True, "allow_drift": True}),
    ],
)
def test_a_clean_or_allowed_run_passes(
    flags: dict[str, list[str]], allowed: dict[str, bool]
) -> None:
    check_run_flags(flags, AS_OF, **allowed)


def test_campaigns_live_outside_the_run_and_never_replace_each_other(tmp_path: Path) -> None:
    publish(tmp_path, FIVE)
    [run] = find_runs(tmp_path)
    first = plan_from_run(run, ACTIONS, 16.0, None)
    second = plan_from_run(run, ACTIONS, 30.0, None)
    assert first.campaign_id != second.campaign_id
    written = [save_campaign(first, tmp_path), save_campaign(second, tmp_path)]

    folder = tmp_path / "campaigns" / "as_of=2024-06-01"
    assert [table for table, _ in written] == [
        folder / f"{first.campaign_id}.csv",
        folder / f"{second.campaign_id}.csv",
    ]
    assert len(list(folder.iterdir())) == 4  # two tables, two summaries
    document = json.loads(written[0][1].read_text())
    assert document["campaign_id"] == first.campaign_id
    assert document["as_of"] == "2024-06-01" and document["budget"] == 16.0
    assert document["run"] == str(run.folder) and document["allowed_flags"] == {}

    publish(tmp_path, FIVE[:2])  # re-scoring the date replaces its run folder whole
    assert len(pd.read_parquet(run.scores_path)) == 2
    for table, summary in written:
        assert table.is_file() and summary.is_file()
    assert (
        pd.read_csv(written[0][0])["customer_id"].tolist()
        == first.plan.selected["customer_id"].tolist()
    )
    assert [r.folder.name for r in find_runs(tmp_path)] == ["as_of=2024-06-01"]


def test_a_campaign_of_ones_own_name_is_never_replaced(tmp_path: Path) -> None:
    publish(tmp_path, FIVE)
    [run] = find_runs(tmp_path)
    target = tmp_path / "mine.parquet"
    save_campaign(plan_from_run(run, ACTIONS, 16.0, None), tmp_path, target)
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match=r"mine\.parquet"):
        save_campaign(plan_from_run(run, ACTIONS, 30.0, None), tmp_path, target)
    assert target.read_bytes() == before


def test_plan_from_a_flagged_run_is_refused_then_allowed_and_recorded(tmp_path: Path) -> None:
    publish(tmp_path, FIVE, stale=STALE)
    [run] = find_runs(tmp_path)
    with pytest.raises(RunFlagged, match="stale data: transactions"):
        plan_from_run(run, ACTIONS, 16.0, None)
    allowed = plan_from_run(run, ACTIONS, 16.0, None, allow_stale=True)
    _, summary = save_campaign(allowed, tmp_path)
    assert json.loads(summary.read_text())["allowed_flags"] == {"stale": STALE}


# --- the command -------------------------------------------------------------------------------

POLICY_ROWS = [("a", 0.9, 500.0, "vip_call"), ("b", 0.8, 100.0, "reminder")]


def campaign(out: Path, *args: str) -> Any:
    from vafa.cli.app import app

    return CliRunner().invoke(app, ["campaign", "--scores", str(out), "--budget", "100", *args])


@pytest.mark.parametrize(
    ("flags", "code", "options"),
    [
        ({"stale": STALE}, 5, ["--allow-stale"]),
        ({"drift": DRIFT}, 4, ["--allow-drift"]),
        ({"stale": STALE, "drift": DRIFT}, 5, ["--allow-stale", "--allow-drift"]),
    ],
)
def test_the_command_refuses_a_flagged_run_unless_allowed(
    tmp_path: Path, flags: dict[str, list[str]], code: int, options: list[str]
) -> None:
    publish(tmp_path, POLICY_ROWS, **flags)
    refused = campaign(tmp_path)
    assert refused.exit_code == code, refused.output
    for flag in (*flags.get("stale", []), *flags.get("drift", [])):
        assert flag in refused.output
    assert " ".join(options) in refused.output
    assert not (tmp_path / "campaigns").exists()  # nothing written

    allowed = campaign(tmp_path, *options)
    assert allowed.exit_code == 0, allowed.output
    assert "warning: the run is flagged" in allowed.output
    assert len(list((tmp_path / "campaigns" / "as_of=2024-06-01").glob("*.csv"))) == 1


def test_the_command_keeps_every_campaign_and_never_overwrites_out(tmp_path: Path) -> None:
    publish(tmp_path, POLICY_ROWS)
    assert campaign(tmp_path).exit_code == 0
    again = campaign(tmp_path)
    assert again.exit_code == 0 and "campaign 20" in again.output
    assert len(list((tmp_path / "campaigns" / "as_of=2024-06-01").glob("*.csv"))) == 2
    assert not (tmp_path / "as_of=2024-06-01" / "campaign.csv").exists()

    mine = tmp_path / "mine.csv"
    assert campaign(tmp_path, "--out", str(mine)).exit_code == 0
    before = mine.read_text()
    second = campaign(tmp_path, "--out", str(mine))
    assert second.exit_code == 2 and "never replaces another" in second.output
    assert mine.read_text() == before
