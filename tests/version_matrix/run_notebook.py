"""Run by a MindSpore version's venv in the version matrix (test_versions_matrix.py): execute a
notebook in a Jupyter kernel of this Python, in the notebook's folder, and write it back executed.

usage: python run_notebook.py NOTEBOOK"""
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

path = Path(sys.argv[1]).resolve()
notebook = nbformat.read(path, as_version=4)
client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                        resources={"metadata": {"path": str(path.parent)}})
try:
    client.execute()
finally:
    nbformat.write(notebook, path)
