"""Using `vafa` as documented: its version, -q/-v anywhere, help at 80 columns, the README."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from typer._click import Command
from typer.core import TyperGroup as Group
from typer.testing import CliRunner

from vafa.cli.app import app
from vafa.settings import REPO_ROOT

VAFA = str(Path(sys.executable).with_name("vafa"))
README = (REPO_ROOT / "README.md").read_text()


def vafa(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VAFA, *args], capture_output=True, text=True, env=dict(os.environ), timeout=300, cwd=cwd
    )


def commands(group: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under a group, groups included (`("store",)`, `("store", "list")`)."""
    assert isinstance(group, Group)
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, Group):
            yield from commands(command, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = sorted(commands(ROOT))


def test_version_is_the_package_version() -> None:
    done = vafa("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"vafa {version('vafa')}\n"


@pytest.mark.slow  # runs the vafa command in processes
def test_quiet_and_verbose_work_after_the_command(tmp_path: Path) -> None:
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\nc1,2024-01-01,5\n")
    normal = vafa("validate", "--data", str(tmp_path))
    assert normal.returncode == 0, normal.stderr
    assert "INFO vafa: validating" in normal.stderr
    for args in (
        ["validate", "--data", str(tmp_path), "-q"],
        ["validate", "--quiet", "--data", "."],
    ):
        quiet = vafa(*args, cwd=tmp_path)
        assert quiet.returncode == 0, quiet.stderr
        assert "INFO" not in quiet.stderr and "OK" in quiet.stdout
    # After the command it wins over the one before it.
    assert "INFO" not in vafa("-v", "validate", "--data", str(tmp_path), "-q").stderr
    assert "INFO vafa" in vafa("-q", "validate", "--data", str(tmp_path), "-v").stderr


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "vafa")
def test_help_is_whole_and_reflowed_at_80_columns(path: tuple[str, ...]) -> None:
    text = help_text(path)
    lines = [line.rstrip() for line in text.splitlines()]
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # a cell cut short
    description = lines[: next(i for i, line in enumerate(lines) if "Options" in line)]
    for line, after in itertools.pairwise(description):
        # A paragraph's lines are filled: a short one is its last, not a docstring's break.
        assert len(line) >= 60 or not line.strip() or not after.strip() or "Usage" in line, line
    command = ROOT
    for name in path:
        assert isinstance(command, Group)
        command = command.commands[name]
    if isinstance(command, Group):  # each command's summary whole: no "..." cut
        flat = " ".join(text.split())
        for sub in command.commands.values():
            assert " ".join(sub.get_short_help_str(limit=1000).split()) in flat


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_lists_quiet_and_verbose(path: tuple[str, ...]) -> None:
    text = help_text(path)
    assert "-q, --quiet" in text and "-v, --verbose" in text
    assert "-q and -v go before or after the command" in " ".join(help_text(()).split())


def test_the_readme_lists_every_command() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `vafa ")]
    for path in COMMANDS:
        first = f"| `vafa {path[0]}"
        group_rows = [
            row for row in rows if row.startswith(f"{first} ") or row.startswith(first + "`")
        ]
        assert group_rows, f"no row for `vafa {path[0]}` in the README's command table"
        if len(path) > 1:
            assert any(re.search(rf"\b{re.escape(path[1])}\b", row) for row in group_rows), path


def test_the_readme_links_stay_inside_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert "docs/contract.md" in local
    for link in local:
        target = (REPO_ROOT / link).resolve()
        assert target.is_relative_to(REPO_ROOT), f"{link} leaves the repository (broken in a clone)"
        assert target.exists(), f"{link} does not exist"
