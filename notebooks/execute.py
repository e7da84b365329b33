"""Run the notebooks in a real Jupyter kernel and store them with their outputs.

    python notebooks/execute.py                  # every notebook, at the settings of its parameters cell
    python notebooks/execute.py stc.ipynb        # one of them

Each notebook's first code cell is tagged `parameters` and holds the settings the stored
outputs were made with (publication settings). The tests run the same notebooks through
`execute` with small settings injected after that cell (as papermill does), so every cell
runs on every test run. Needs `pip install ca_plast[notebooks]` (Jupyter, ipykernel, nbclient).
A notebook is replaced only after it ran to the end without an error.
"""

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ca_plast._output import write_file

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))


def parameters_index(notebook: nbformat.NotebookNode) -> int:
    """Index of the cell tagged `parameters` (the first code cell), or ValueError."""
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    if not code or "parameters" not in notebook.cells[code[0]].metadata.get("tags", []):
        raise ValueError("the first code cell must be tagged 'parameters'")
    return code[0]


def execute(path: Path, parameters: dict | None = None, *, cwd: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """`path` executed top to bottom in a fresh Python kernel running in `cwd`.

    `parameters`: values assigned in a cell inserted after the parameters cell (names must
    exist there). Raises nbclient's CellExecutionError, naming the cell, if a cell fails.
    """
    notebook = nbformat.read(path, as_version=4)
    index = parameters_index(notebook)
    if parameters:
        source = notebook.cells[index].source
        unknown = [name for name in parameters if f"{name} =" not in source]
        if unknown:
            raise ValueError(f"{path.name}: no parameter named {', '.join(unknown)} in its parameters cell")
        cell = nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
        cell.metadata["tags"] = ["injected-parameters"]
        notebook.cells.insert(index + 1, cell)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def main(argv: list[str]) -> int:
    chosen = [HERE / name for name in argv] if argv else NOTEBOOKS
    for path in chosen:
        if not path.is_file():
            print(f"execute.py: no notebook {path}", file=sys.stderr)
            return 2
    for path in chosen:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:
            notebook = execute(path, cwd=Path(scratch))
        for cell in notebook.cells:  # outputs are kept, run metadata is not
            cell.metadata.pop("execution", None)
        write_file(path, (nbformat.writes(notebook) + "\n").encode())
        print(f"{path.name}: executed in {time.monotonic() - started:.0f} s and stored with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
