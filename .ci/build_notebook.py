"""Make main.ipynb from main.py and fill it with the outputs of a real run, ready to commit.

    .venv/bin/python .ci/build_notebook.py              # cells and outputs, from a full run
    .venv/bin/python .ci/build_notebook.py --prose      # only the markdown, keeping the outputs

jupytext writes the cells; a Jupyter kernel runs them in a scratch copy of the project (so that
the run's checkpoints and figures stay out of the repository); then the outputs are made
readable without widgets: each progress bar keeps the text of its finished state, and the
widgets' views and state, which GitHub cannot show, are left out.
"""
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_project  # noqa: E402  (the tests' own copy of the project)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_widgets(notebook):
    """Drop widget views from the outputs, and the widget state from the metadata."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for output in cell.outputs:
                output.get("data", {}).pop(WIDGET_VIEW, None)
            cell.outputs = [output for output in cell.outputs if output.get("data", True)]
    return notebook


def build(target=ROOT / "main.ipynb", timeout=3600):
    notebook = jupytext.read(ROOT / "main.py")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = copy_project(Path(scratch) / "project")
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", store_widget_state=False, record_timing=False,
                       resources={"metadata": {"path": str(scratch)}}).execute()
        text = nbformat.writes(without_widgets(notebook))
        if str(scratch) in text:
            sys.exit(f"the outputs name the scratch folder {scratch}: print relative paths")
    target.write_text(text)
    print("Wrote", target)


def update_prose(target=ROOT / "main.ipynb"):
    """Take the markdown cells from main.py into the committed notebook; the code must be unchanged."""
    committed, generated = nbformat.read(target, as_version=4), jupytext.read(ROOT / "main.py")
    shape = [(cell.cell_type, cell.source if cell.cell_type != "markdown" else "") for cell in committed.cells]
    if shape != [(cell.cell_type, cell.source if cell.cell_type != "markdown" else "") for cell in generated.cells]:
        sys.exit("the code cells changed too: run the whole build")
    for cell, new in zip(committed.cells, generated.cells):
        cell.source = new.source
    nbformat.write(committed, target)
    print("Updated the markdown of", target)


if __name__ == "__main__":
    update_prose() if sys.argv[1:] == ["--prose"] else build()
