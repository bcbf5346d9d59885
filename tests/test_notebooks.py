"""The numbered notebooks run end to end on small demo data and are stored without outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

from features.io import write_tables
from features.synthetic import generate_tables

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT_SECONDS = 300
pytestmark = pytest.mark.slow  # each notebook runs in its own kernel

# Trains and registers a champion in a child process: MLflow keeps its tracking URI and active
# experiment in process globals (and os.environ), which must not leak into other tests. One
# LightGBM thread: on a busy two-core machine, two threads contend and run ten times slower.
TRAIN_CHAMPION = """
import sys
from features.io import load_tables
from features.schema import default_as_of
from training.datasets import data_fingerprint
from training.registry import configure_tracking, log_training_run
from training.train import TrainOptions, train_models
from vafa.settings import Settings

configure_tracking(Settings.from_env().tracking_uri)
tables = load_tables(sys.argv[1]).tables
options = TrainOptions(trials=2, n_snapshots=2, num_threads=1)
result = train_models(tables, default_as_of(tables), options)
log_training_run(
    result, options, fingerprint=data_fingerprint(tables), data_dir=sys.argv[1], plots={}
)
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Small demo data and a champion in a store of its own: the notebooks' environment."""
    root = tmp_path_factory.mktemp("notebook-demo")
    data = root / "data"
    write_tables(generate_tables(1000, seed=11), data)
    env = {
        "VAFA_DATA": str(data),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }
    trained = subprocess.run(
        [sys.executable, "-c", TRAIN_CHAMPION, str(data)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    return env


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `python3` kernel, resolved without any user-level kernel installation.

    An empty Jupyter data dir hides user kernel specs, so `python3` resolves to this
    environment's spec (or ipykernel's built-in one); both start the running interpreter.
    """
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    # Inline figures (the kernel's default) are PNG outputs the tests can see; Agg would hide them.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return KERNEL


def test_the_kernel_is_this_environment(venv_kernel: str) -> None:
    command = KernelManager(kernel_name=venv_kernel).format_kernel_cmd()
    assert command[0] == sys.executable


def _execute(
    name: str, env: dict[str, str], kernel: str, cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4)
    # A working directory outside the repository: the notebooks must find it themselves.
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name=kernel,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return notebook


def _tagged(notebook: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    cells = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return list(cells[0].outputs)


def _figures(outputs: list[nbformat.NotebookNode]) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs)


def _text(outputs: list[nbformat.NotebookNode]) -> str:
    parts = [out.get("text", "") for out in outputs if out.output_type == "stream"]
    parts += [out["data"].get("text/plain", "") for out in outputs if "data" in out]
    return "\n".join(parts)


def test_explore_notebook(
    demo: dict[str, str], venv_kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _execute("01-explore.ipynb", demo, venv_kernel, tmp_path, monkeypatch)

    for tag in (
        "orders-by-month",
        "cohort-retention",
        "repeat-rates",
        "rfm",
        "refunds-discounts",
        "engagement",
    ):
        assert _figures(_tagged(notebook, tag)) == 1, f"no figure from the {tag} cell"
    first = _text(notebook.cells[1].outputs)
    assert f"data: {demo['VAFA_DATA']}" in first
    assert "customers" in first and "1000" in first
    rfm = _text(_tagged(notebook, "rfm"))
    assert "one-time buyers:" in rfm and "frequency" in rfm and "monetary_value" in rfm
    assert "NPS over all answers:" in _text(_tagged(notebook, "engagement"))


def test_model_report_notebook(
    demo: dict[str, str], venv_kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _execute("02-model-report.ipynb", demo, venv_kernel, tmp_path, monkeypatch)

    for tag in ("scores", "calibration", "lift", "shap", "profiles"):
        assert _figures(_tagged(notebook, tag)) == 1, f"no figure from the {tag} cell"
    assert "champion: version 1 from " + demo["MLFLOW_TRACKING_URI"] in _text(
        notebook.cells[1].outputs
    )
    calibration = _text(_tagged(notebook, "calibration"))
    # Trained as of the scoring date, the champion has seen the graded outcomes: say so.
    assert "NOT out of sample" in calibration
    assert "p_mean" in calibration and "y_rate" in calibration and "roc_auc" in calibration
    assert "lift" in _text(_tagged(notebook, "lift"))
    shap = _text(_tagged(notebook, "shap"))
    assert "mean_abs_shap" in shap and "recency_days" in shap
    profiles = _text(_tagged(notebook, "profiles"))
    assert "VIPs" in profiles and "std_diff" in profiles and "mean_churned" in profiles


def test_notebooks_are_numbered() -> None:
    names = [n.name for n in NOTEBOOKS]
    assert {"01-explore.ipynb", "02-model-report.ipynb"} <= set(names)
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", name) for name in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"stored outputs in {path.name}: clear them before saving"
            assert cell.execution_count is None, f"execution counts in {path.name}"
