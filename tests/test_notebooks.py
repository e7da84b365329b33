"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel, at small settings
injected after its parameters cell, and every figure cell shows an image."""

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))

# Small settings for the test run (the stored outputs come from the values in each notebook).
SMALL = {
    "gb2012_stdp.ipynb": {"n_synapses": 100, "dts_check": [-20.0, 10.0]},
    # Two free parameters and four starts: the programs of tests/test_fitting.py's command-line density fit.
    "fitting.ipynb": {"n_starts": 4, "steps": 20, "threshold_steps": 20, "density_steps": 1, "free": ["theta_p", "theta_d"]},
    "stc.ipynb": {"TRIALS": 4, "HOURS": 4.0},
}


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", FOLDER / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_every_notebook_has_small_settings():
    assert NOTEBOOKS and sorted(SMALL) == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_notebook_shows_its_figures(path):
    """What GitHub and the documentation show: the stored run has an image in every figure cell."""
    notebook = nbformat.read(path, as_version=4)
    figures = [cell for cell in notebook.cells if "figure" in cell.metadata.get("tags", [])]
    assert figures, f"{path.name}: no cell tagged 'figure'"
    assert all(_images(cell) for cell in figures), f"{path.name}: a figure cell has no stored image; run notebooks/execute.py"
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name}: stored without a complete run; run notebooks/execute.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_a_kernel(path, tmp_path, monkeypatch):
    # The kernel is another process: it shares this run's compilation cache through JAX's
    # environment, and, as the rest of the suite (conftest.py), skips the run-time checks of
    # traced values, whose host callbacks would keep its programs out of that cache.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", os.environ["CA_PLAST_TEST_CACHE"])
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    monkeypatch.setenv("CA_PLAST_RUN_TIME_CHECKS", "0")
    notebook = _runner().execute(path, SMALL[path.name], cwd=tmp_path, timeout=900)
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} cell {index}: {output.get('ename')}"
            text = "".join(output.get("data", {}).get("text/plain", ""))
            assert not (text.startswith("<Figure") and "image/png" not in output.get("data", {})), \
                f"{path.name} cell {index}: a figure shown as text, not as an image"
        if "figure" in cell.metadata.get("tags", []):
            assert _images(cell) >= 1, f"{path.name} cell {index}: figure cell without an image"
