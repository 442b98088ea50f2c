"""main.ipynb: in sync with main.py, and running top to bottom in a real Jupyter kernel."""
import re

import jupytext
import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_notebook_matches_what_jupytext_makes_of_main_py():
    generated = jupytext.read(ROOT / "main.py")
    committed = nbformat.read(ROOT / "main.ipynb", as_version=4)
    assert cells(committed) == cells(generated), "regenerate main.ipynb: see README, 'Editing the tutorial'"


def test_committed_notebook_has_the_outputs_of_a_run():
    committed = nbformat.read(ROOT / "main.ipynb", as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "execute main.ipynb before committing it"
    assert any("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)


def text_of(cell):
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def test_notebook_runs_in_a_jupyter_kernel(project, monkeypatch):
    # 300 of the 1875 steps per epoch: test_script.py checks the accuracy of the full tutorial
    monkeypatch.setenv("TUTORIAL_STEPS_PER_EPOCH", "300")
    notebook = nbformat.read(project / "main.ipynb", as_version=4)
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(project)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "\nDEVICE_TARGET = None\n" in code[0].source
    out = "".join(text_of(cell) for cell in code)
    assert "Device: CPU" in out and "Steps per epoch: 1875" in out
    first, resumed = [float(a) for a in re.findall(r"Metrics: \{'acc': ([0-9.]+)", out)]
    assert first >= 0.9 and resumed >= 0.9, out
    assert re.findall(r"epoch: (\d+) step: 300", out) == ["1", "2", "3", "4"]
    assert "Checkpoint files of this run: lenet-1_300.ckpt lenet-2_300.ckpt lenet-graph.meta" in out
    assert "Checkpoint files of this run: lenet_1-3_300.ckpt lenet_1-4_300.ckpt lenet_1-graph.meta" in out
    assert "Network parameters not loaded: []" in out and "Optimizer parameters not loaded: []" in out
    assert "Stopped after step 450 as asked" in out and "Same parameters, bit for bit: True" in out
    assert "to lenet5.mindir, input shape (32, 1, 32, 32)" in out and "Same predictions: True" in out
    assert re.search(r"Continuing from \S+/interrupted/lenet-2_150.ckpt: epoch 2, step 150", out)
    assert re.search(r"lenet-best.ckpt +2 +600 +0\.9\d{3}", out)
    figures = [cell for cell in code for output in cell.outputs if "image/png" in output.get("data", {})]
    # the training curves; prediction, confusion matrix and mistakes, for the tutorial's and the best checkpoint
    assert len(figures) == 7
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
