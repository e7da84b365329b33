"""Every notebook in notebooks/ runs top to bottom with the small settings of its parameters cell."""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    code = [("".join(c["source"]), c["metadata"].get("tags", [])) for c in cells if c["cell_type"] == "code"]
    assert code and "parameters" in code[0][1], f"{path.name}: the first code cell must be tagged 'parameters'"
    return [source for source, _ in code]


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # anything a notebook writes lands in a scratch folder
    namespace = {"__name__": "__main__"}
    for i, source in enumerate(_code_cells(path)):
        assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()), (
            f"{path.name} cell {i}: IPython magics cannot run in the test"
        )
        exec(compile(source, f"{path.name}[{i}]", "exec"), namespace)
