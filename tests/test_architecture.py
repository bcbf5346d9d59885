"""The architecture as checks: import layers (import-linter) and one home per convention."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.schema import ID
from serving.runs import RUN_PREFIX
from serving.scoring.columns import SCORE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "training", "serving", "vafa")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def modules() -> Iterator[tuple[Path, ast.Module]]:
    """Every library module of the project, parsed."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO), ast.parse(path.read_text(), str(path))


def string_constants(tree: ast.Module) -> Iterator[ast.Constant]:
    """String literals that are code, not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node


def run_lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root)},
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library's source and the contracts, copied where an import can be planted."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_import_contracts_hold(tree_copy: Path) -> None:
    checked = run_lint_imports(tree_copy)
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert ", 0 broken." in checked.stdout


@pytest.mark.parametrize(
    ("module", "planted", "named"),
    [
        ("features/rfm.py", "import vafa.settings", "features.rfm -> vafa.settings"),
        ("training/model.py", "import serving.runs", "training.model -> serving.runs"),
        (
            "serving/scoring/scorer.py",
            "import serving.store",
            "serving.scoring.scorer -> serving.store",
        ),
        (
            "serving/report/figures.py",
            "import serving.batch.job",
            "serving.report.figures -> serving.batch.job",
        ),
        ("serving/scoring/segments.py", "import mlflow", "serving.scoring.segments -> mlflow"),
    ],
)
def test_a_planted_upward_import_fails_and_is_named(
    tree_copy: Path, module: str, planted: str, named: str
) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(f"{original}\n{planted}  # noqa\n")
    try:
        checked = run_lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert checked.returncode == 1
    assert named in checked.stdout


def test_the_customer_id_column_is_named_once() -> None:
    homes = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and node.value.value == ID
            ):
                homes.append(str(path))
    assert homes == ["features/schema.py"]


def test_the_run_folder_layout_lives_in_the_runs_catalog() -> None:
    found = [
        str(path)
        for path, tree in modules()
        for constant in string_constants(tree)
        if constant.value.startswith(RUN_PREFIX)
    ]
    assert sorted(set(found)) == ["serving/runs.py"]


def test_score_column_lists_are_not_copied() -> None:
    """A module's own list of three or more score columns is a copy that drifts: name a group."""
    score_columns = set(SCORE_COLUMNS)
    copies = []
    for path, tree in modules():
        if str(path) == "serving/scoring/columns.py":
            continue
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Tuple | ast.List | ast.Set):
                names = [
                    e.value
                    for e in value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
                named = len(set(names) - {ID})
                if len(names) == len(value.elts) and named >= 3 and set(names) <= score_columns:
                    copies.append(f"{path}:{node.lineno} {names}")
    assert copies == []


def test_the_churn_and_clv_formula_has_one_home() -> None:
    """Only the bundle calibrates churn and multiplies spend into CLV."""
    callers = sorted(
        {
            str(path)
            for path, tree in modules()
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr in {"churn_calibrator", "margin_rates"}
            and not isinstance(node.ctx, ast.Store)
        }
    )
    assert callers == ["training/model.py"]
