"""A venv for another MindSpore built with the README's two lines, as a user builds it: the version
matrix's oldest cell runs in one (test_versions_matrix.py). Standard library only, so that .ci/run
can build it with the system's Python while it installs the test venv, on the core that the
install leaves idle; the matrix then waits for it instead of building it (TUTORIAL_PREBUILT_VENVS).

usage: python3 tests/version_matrix/readme_venv.py FOLDER
    builds MindSpore OLDEST on Python OLDEST_PYTHON with the README's two lines, then 2.10.0 on
    FIRST_PYTHON with its first command, in FOLDER/readme-<release>-py<python> (nothing where pyenv
    has no such Python), each with its output in build.log and, once done, its exit code, wall and
    CPU seconds in result.json"""
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The README's way of installing the tutorial beside a MindSpore of one's choice, as written.
README_OTHER_MINDSPORE = ("pip install mindspore=={version} -c constraints.txt",
                          "pip install -r requirements-without-mindspore.txt -c constraints.txt")
README_FIRST = "pip install -r requirements.txt"  # the README's first command, after `python3 -m venv .venv`
OLDEST, OLDEST_PYTHON = "2.7.0", "3.9"  # the oldest release on the oldest Python it supports
FIRST_PYTHON = "3.12"  # the newest Python that the README's first command (MindSpore 2.10.0) supports
PREBUILT = "TUTORIAL_PREBUILT_VENVS"  # the environment variable naming the folder .ci/run builds in


def find_python(version):
    """The pyenv interpreter of `version`, or None."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    return found[-1] if found else None


def folder_name(version, python):
    return f"readme-{version}-py{python}"


def prepare(folder, version=OLDEST, python=OLDEST_PYTHON, first=False):
    """Make `folder` (which must not exist) with the files the README's lines read; return the shell
    command that builds the venv there with them: its first command (`first`), or its two lines for
    another MindSpore."""
    folder.mkdir(parents=True)
    for name in ("constraints.txt", "requirements.txt", "requirements-without-mindspore.txt"):
        shutil.copy2(ROOT / name, folder / name)
    lines = [README_FIRST] if first else [line.format(version=version) for line in README_OTHER_MINDSPORE]
    return f"{find_python(python)} -m venv .venv && " + " && ".join(".venv/bin/" + line for line in lines)


def prebuild(folder, version, python, first):
    """Build a README venv in `folder` (.ci/run); write build.log, then result.json."""
    command = prepare(folder, version, python, first)
    start = time.monotonic()
    with open(folder / "build.log", "w") as log:
        returncode = subprocess.run(["bash", "-c", command], cwd=folder, stdout=log, stderr=subprocess.STDOUT
                                    ).returncode
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # this process runs nothing else
    result = {"returncode": returncode, "stdout": command, "stderr": "", "wall_s": time.monotonic() - start,
              "cpu_s": usage.ru_utime + usage.ru_stime}
    (folder / "result.part").write_text(json.dumps(result))
    (folder / "result.part").replace(folder / "result.json")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[-1])
    for version, python, first in ((OLDEST, OLDEST_PYTHON, False), ("2.10.0", FIRST_PYTHON, True)):
        if find_python(python):  # one after the other: pip keeps a core busy
            prebuild(Path(sys.argv[1]) / folder_name(version, python), version, python, first)
