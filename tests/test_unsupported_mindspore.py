"""On a MindSpore older than the tutorial supports, or without MindSpore, the script and the
notebook's first code cell say in one line what they found, what is supported, and the pip
command that installs it; no traceback. Stand-in `mindspore` packages (tests/*_standin/) on
PYTHONPATH stand for those environments, since older wheels cannot be installed here."""
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

STANDINS = {"2.6.0": ROOT / "tests" / "old_mindspore_standin", None: ROOT / "tests" / "no_mindspore_standin"}
SUPPORTED = ("this tutorial supports MindSpore 2.7.0 to 2.10.0 on Python 3.9 to 3.12 (3.9 up to 2.9.0). "
             "Install one with: pip install mindspore==2.10.0")


def expected_line(version):
    return f"Found {'MindSpore ' + version if version else 'no MindSpore'}; {SUPPORTED}"


def standin_env(version):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDINS[version]), str(ROOT)])}


@pytest.mark.parametrize("version", ["2.6.0", None])
def test_the_script_says_what_it_found_in_one_line(version, tmp_path):
    for args in ([], ["train", "--steps_per_epoch", "1"]):
        result = subprocess.run([sys.executable, "-W", "default", str(ROOT / "main.py"), *args], cwd=tmp_path,
                                env=standin_env(version), capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", expected_line(version) + "\n")


def test_the_notebooks_first_code_cell_says_it_in_one_line_in_a_kernel(tmp_path, monkeypatch):
    """Both stand-ins, one kernel each: the first code cell's only output is the line, as an error
    that stops a run of all cells."""
    notebook = nbformat.read(ROOT / "main.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    (tmp_path / "mnist_data.py").write_bytes((ROOT / "mnist_data.py").read_bytes())
    for version in STANDINS:
        monkeypatch.setenv("PYTHONPATH", str(STANDINS[version]))
        cell = nbformat.v4.new_code_cell(first.source)
        client = NotebookClient(nbformat.v4.new_notebook(cells=[cell]), timeout=120, kernel_name="python3",
                                allow_errors=True, resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
        assert [(o.output_type, o.get("traceback")) for o in cell.outputs] == [("error", [expected_line(version)])]
