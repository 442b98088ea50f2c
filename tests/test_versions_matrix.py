"""The supported range, tested at two levels, chosen by the environment variable TUTORIAL_VERSION_MATRIX.

Unset (what CI runs): every MindSpore release on the index. The oldest release with the oldest
Python, 2.7.0 on Python 3.9 with NumPy 1.x, installed with the README's two lines for another
MindSpore, runs everything below; 2.10.0 in the test venv (Python 3.11, NumPy 2.x) runs the whole
suite and writes the stopped runs that 2.7.0 continues; checkpoints move between 2.7.0 and 2.10.0,
both ways, in both formats, with `infer` and `train --auto_resume` (not `resume`, which loads a
checkpoint as --auto_resume does). Every other release (2.7.1, 2.7.1.post1, 2.7.2, 2.8.0, 2.9.0),
unpacked onto the 2.7.0 cell's Python 3.9 venv, and 2.10.0 installed on Python 3.12 with the
README's first command, run the quick lesson as a script. The costs, measured: docs/development.md.

TUTORIAL_VERSION_MATRIX=all (a release check by hand): every MindSpore release from 2.7.0 to 2.10.0
once in full, every Python from 3.9 to 3.12 once, the oldest MindSpore with the oldest Python, NumPy
1.x and 2.x; every cell runs everything, and the cross-version checks `resume` too.

The cells a level leaves out are skipped, saying why, and nothing of theirs is built or run.

A full cell runs, in its own environment and a scratch copy of the project: the lesson as a script
(short epochs) with its figures; `train` stopped by SIGTERM and continued with --auto_resume, equal
byte for byte to an uninterrupted run; `infer --ckpt best`; `export` to MindIR; and the notebook in
a Jupyter kernel of that Python, with short epochs (TUTORIAL_STEPS_PER_EPOCH=3, which the crash
demos follow: 2 epochs of 3 steps, stopped after step 4). No warning may come from our code.
Checkpoints written by the oldest release and by 2.10.0, in both formats, then serve infer,
train --auto_resume and (at the level "all") resume under the other.

Cost: the environments build, and the cells run, in the background from the moment the tests are
collected, in one process (conftest.py: the one that collects, or pytest-xdist's controller), beside
the other tests: one thread builds, two run the cells, each process on the least busy core.
Each cell's results go to a JSON file; this module's tests, which run last in any worker, only wait
for those files and check. The environments built the way a user builds them (the README's two lines
for 2.7.0, its first command for 2.10.0 on Python 3.12) are built by .ci/run beforehand, while it
installs the test venv, and the matrix waits for them (version_matrix/readme_venv.py); the others
share one venv per Python, and each release is unpacked with --no-deps into a folder of its own, put
first on PYTHONPATH. (Not --no-compile: where PYTHONDONTWRITEBYTECODE is set, every process would then
compile MindSpore's modules again, some 5 s of CPU each.) Every step records its wall and CPU time;
`pytest -s` prints them."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import PROJECT_FILES, ROOT, SESSION_FOLDER, copy_project_files, mnist_subset, on_least_busy_core
from version_matrix import readme_venv
from version_matrix.readme_venv import find_python

pytestmark = pytest.mark.slow

# What the shared venvs hold: MindSpore's own requirements (installed with --no-deps), NumPy 1.x,
# which MindSpore 2.7 to 2.9 require, and what the tests run.
BASE_PACKAGES = ["numpy<2", "protobuf>=3.13", "asttokens", "pillow", "scipy", "packaging", "psutil", "astunparse",
                 "safetensors", "dill", "matplotlib", "tqdm", "pooch", "ipykernel", "ipywidgets", "nbclient",
                 "nbformat"]


@dataclass
class Cell:
    mindspore: str
    python: str
    build: str  # "readme": a venv built with the README's lines for another MindSpore
    #             (version_matrix/readme_venv.py); "readme first": with the README's first command;
    #             "target": unpacked onto a shared venv; "test venv": the interpreter running the tests
    ckpt_format: str = "ckpt"  # of its train runs
    levels: tuple = ("all",)  # the LEVELs that run it
    light_in_ci: bool = False  # in CI's matrix, the quick lesson as a script only
    results: dict = field(default_factory=dict)
    build_done: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""

    @property
    def name(self):
        return f"{self.mindspore}-py{self.python}"

    @property
    def runs(self):
        """Whether it runs at this LEVEL."""
        return LEVEL in self.levels

    @property
    def light(self):
        """Whether it runs the quick lesson as a script only, at this LEVEL."""
        return self.light_in_ci and LEVEL == ""


# "" (unset, what CI runs): CI's matrix; "all": every cell, everything (a release check by hand).
LEVEL = os.environ.get("TUTORIAL_VERSION_MATRIX", "")
if LEVEL not in ("", "all"):
    raise ValueError(f"TUTORIAL_VERSION_MATRIX={LEVEL!r}: leave it unset (CI's matrix) or set it to 'all'")
NOT_AT_THIS_LEVEL = ("not in CI's budget; TUTORIAL_VERSION_MATRIX=all runs it" if LEVEL == "" else
                     "CI's quick cell of this release; the level 'all' runs the release in full on another Python")
BOTH = ("", "all")
OLDEST = Cell(readme_venv.OLDEST, readme_venv.OLDEST_PYTHON, "readme", levels=BOTH)
NEWEST = Cell("2.10.0", f"{sys.version_info.major}.{sys.version_info.minor}", "test venv", "safetensors",
              levels=BOTH)
CELLS = [
    OLDEST,
    NEWEST,
    # The README's first command, on the newest Python it supports.
    Cell("2.10.0", readme_venv.FIRST_PYTHON, "readme first", levels=BOTH, light_in_ci=True),
    # Every other release: at the level "all" in full, on the Pythons the matrix covers once each;
    # in CI the quick lesson, unpacked onto the oldest cell's venv (Python 3.9 has them all).
    Cell("2.7.1", "3.10", "target", "safetensors"),
    Cell("2.7.1.post1", "3.10", "target"),
    Cell("2.8.0", "3.10", "target", "safetensors"),
    Cell("2.7.2", "3.12", "target"),
    Cell("2.9.0", "3.9", "target", "safetensors", levels=BOTH, light_in_ci=True),
    *(Cell(release, "3.9", "target", levels=("",), light_in_ci=True) for release in ("2.7.1", "2.7.1.post1",
                                                                                     "2.7.2", "2.8.0")),
]
# What each user runs on the other release's stopped runs, per format; CI leaves out `resume`, which
# loads the checkpoint as train --auto_resume does.
CROSS_COMMANDS = ("infer", "resume", "auto_resume") if LEVEL == "all" else ("infer", "auto_resume")
# The quickest to build first, so that both runners have work early; the others' Pythons follow.
BUILD_ORDER = ["2.7.1-py3.10", "2.7.0-py3.9", "2.7.1.post1-py3.10", "2.8.0-py3.10", "2.7.2-py3.12", "2.9.0-py3.9",
               "2.7.1-py3.9", "2.7.1.post1-py3.9", "2.7.2-py3.9", "2.8.0-py3.9", "2.10.0-py3.12"]
RUNNERS = 2
LOCK = threading.Lock()
CROSS = {"done": threading.Event(), "results": {}, "error": ""}
STATE = {"workdir": None, "processes": set(), "builds": {}, "stop": False}
BUILD_TIMEOUT_S = WAIT_TIMEOUT_S = 1800
TRAIN = ["train", "--steps_per_epoch", "6", "--save_steps", "2", "--num_epochs", "2"]
OUR_WARNING = re.compile(r"(main\.py|mnist_data\.py|machinery/\w+\.py|ipykernel_\d+/\d+\.py):\d+: \w*Warning")


@dataclass
class Step:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float


def wait(process, deadline):
    """Wait for `process` until `deadline` (then kill it); return its CPU seconds, user and system,
    its own and its children's, as os.wait4 reports them."""
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            process.kill()
            deadline = float("inf")
        time.sleep(0.02)


def run(argv, cwd, env=None, log=None, stop_when=None, timeout=900):
    """Run `argv`; return a Step with its output and its wall and CPU time.
    With `stop_when`, send SIGTERM as soon as stop_when() is true."""
    cwd = Path(cwd)
    log = Path(log or cwd / f"step-{time.monotonic_ns()}")
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err, on_this_threads_core():
        start = time.monotonic()
        process = subprocess.Popen([*map(str, argv)], cwd=cwd, env=env, stdout=out,
                                   stderr=err, start_new_session=True)
        STATE["processes"].add(process)
        try:
            if stop_when:
                while not stop_when() and os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) \
                        is None and time.monotonic() - start < timeout:
                    time.sleep(0.01)
                process.send_signal(signal.SIGTERM)
            cpu = wait(process, start + timeout)
        finally:
            STATE["processes"].discard(process)
    return Step(process.returncode, Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text(),
                time.monotonic() - start, cpu)


# --- building the environments ------------------------------------------------------------------

def build_folder(name):
    return STATE["workdir"] / "builds" / name


def readme_folder(cell):
    """Where the venv of a cell built with the README's lines is: in the folder that .ci/run built it
    in beforehand, where it did (readme_venv.py), or built here."""
    name = readme_venv.folder_name(cell.mindspore, cell.python)
    prebuilt = Path(os.environ.get(readme_venv.PREBUILT) or "/nonexistent") / name
    return prebuilt if prebuilt.is_dir() else build_folder(name)


def interpreter(cell):
    """(python, extra PYTHONPATH) of the cell's environment once built."""
    if cell.build == "test venv":
        return sys.executable, None
    if cell.build in ("readme", "readme first"):
        return readme_folder(cell) / ".venv" / "bin" / "python", None
    python = (readme_folder(OLDEST) if cell.python == OLDEST.python else build_folder(f"base-{cell.python}")) \
        / ".venv" / "bin" / "python"
    return python, build_folder(f"mindspore-{cell.mindspore}-py{cell.python}")


def timed_shell(command, cwd, name):
    """Run a shell command; record its wall and CPU time under `name`."""
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(cwd / "build.log", "a") as log, on_this_threads_core():
        process = subprocess.Popen(["bash", "-c", command], cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        STATE["processes"].add(process)
        try:
            cpu = wait(process, start + BUILD_TIMEOUT_S)
        finally:
            STATE["processes"].discard(process)
    STATE["builds"][name] = Step(process.returncode, command, "", time.monotonic() - start, cpu)
    if process.returncode:
        raise build_failed(name, process.returncode, cwd)


def build_failed(name, returncode, folder):
    return RuntimeError(f"{name} failed ({returncode}): {(folder / 'build.log').read_text()[-3000:]}")


def wait_for_prebuilt(folder, name):
    """Wait for the venv that readme_venv.py builds in `folder`; record its times under `name`."""
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while not (folder / "result.json").exists():
        if time.monotonic() > deadline or STATE["stop"]:
            raise RuntimeError(f"{name}: not built within {BUILD_TIMEOUT_S} s")
        time.sleep(1)
    STATE["builds"][name] = step = Step(**json.loads((folder / "result.json").read_text()))
    if step.returncode:
        raise build_failed(name, step.returncode, folder)


def build(cell):
    """Build `cell`'s environment (and the shared venv it needs, once)."""
    if cell.build == "test venv":
        return
    if cell.build in ("readme", "readme first"):
        folder = readme_folder(cell)
        if folder != build_folder(readme_venv.folder_name(cell.mindspore, cell.python)):  # built by .ci/run
            wait_for_prebuilt(folder, f"venv {cell.name} (README, built by .ci/run)")
        else:
            timed_shell(readme_venv.prepare(folder, cell.mindspore, cell.python, first=cell.build == "readme first"),
                        folder, f"venv {cell.name} (README)")
        return
    python, target = interpreter(cell)
    if not python.exists():
        folder = python.parent.parent.parent
        timed_shell(f"{find_python(cell.python)} -m venv .venv && .venv/bin/pip install -q "
                    f"-c {ROOT / 'constraints.txt'} " + " ".join(f"'{p}'" for p in BASE_PACKAGES),
                    folder, f"shared venv py{cell.python}")
    timed_shell(f"{python} -m pip install -q --no-deps --target {target} mindspore=={cell.mindspore}",
                target.parent, f"mindspore {cell.name}")


# --- running a cell -----------------------------------------------------------------------------

def cell_env(cell, **extra):
    _, target = interpreter(cell)
    env = {**os.environ, "MPLBACKEND": "Agg", **extra}
    env.pop("PYTHONPATH", None)
    if target:
        env["PYTHONPATH"] = str(target)
    return env


def script(cell, project, *args, log, stop_when=None):
    python, _ = interpreter(cell)
    return run([python, "-W", "default", "main.py", *args], project, cell_env(cell), project / log, stop_when)


def short_notebook(project):
    """main.ipynb with a last cell that prints the versions; TUTORIAL_STEPS_PER_EPOCH shortens its epochs,
    the crash demos' included."""
    notebook = nbformat.read(project / "main.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys\nprint('versions:', ms.__version__, sys.version.split()[0], np.__version__)"))
    nbformat.write(notebook, project / "matrix.ipynb")
    return project / "matrix.ipynb"


def run_cell(cell):
    """Everything a cell runs, in order; the results go to cell.results for the tests to check."""
    project = STATE["workdir"] / "cells" / cell.name
    project.mkdir(parents=True)
    copy_project_files(PROJECT_FILES, project)
    shutil.copytree(STATE["workdir"] / "mnist", project / "MNIST")
    fmt = ["--ckpt_format", cell.ckpt_format]
    r = cell.results
    r["project"] = project
    python, _ = interpreter(cell)
    if cell is NEWEST:  # the other tests run all of it on 2.10.0; here only what the older release reads
        for fmt in ("ckpt", "safetensors"):
            stop_at = project / f"interrupted-{fmt}" / f"lenet-1_2.{fmt}"
            r[f"stopped_{fmt}"] = script(cell, project, *TRAIN, "--ckpt_format", fmt, "--ckpt_dir",
                                         f"interrupted-{fmt}", log=f"stopped-{fmt}", stop_when=stop_at.exists)
        return
    r["tutorial"] = script(cell, project, "--steps_per_epoch", "3", "--data_url", "MNIST", log="tutorial")
    if cell.light:
        return
    r["train"] = script(cell, project, *TRAIN, *fmt, "--ckpt_dir", "uninterrupted", log="train")
    first = project / "interrupted" / f"lenet-1_2.{cell.ckpt_format}"
    r["stopped"] = script(cell, project, *TRAIN, *fmt, "--ckpt_dir", "interrupted", log="stopped",
                          stop_when=first.exists)
    shutil.copytree(project / "interrupted", project / f"interrupted-{cell.ckpt_format}")  # for 2.10.0
    r["continued"] = script(cell, project, *TRAIN, *fmt, "--ckpt_dir", "interrupted", "--auto_resume",
                            log="continued")
    if cell is OLDEST:  # a stopped run in the other format too, for 2.10.0
        other = "safetensors" if cell.ckpt_format == "ckpt" else "ckpt"
        stop_at = project / f"interrupted-{other}" / f"lenet-1_2.{other}"
        r[f"stopped_{other}"] = script(cell, project, *TRAIN, "--ckpt_format", other, "--ckpt_dir",
                                       f"interrupted-{other}", log=f"stopped-{other}", stop_when=stop_at.exists)
    r["infer"] = script(cell, project, "infer", "--ckpt", "best", "--ckpt_dir", "uninterrupted", "--data_url", "MNIST",
                        log="infer")
    r["export"] = script(cell, project, "export", "--ckpt", "best", "--ckpt_dir", "uninterrupted", log="export")
    if cell is OLDEST:  # 2.7.x has no ms.onnx: machinery/compat.py stands in
        r["export_onnx"] = script(cell, project, "export", "--ckpt", "best", "--ckpt_dir", "uninterrupted",
                                  "--file_format", "ONNX", log="export-onnx")
    notebook = short_notebook(project)
    r["notebook"] = run([python, ROOT / "tests" / "version_matrix" / "run_notebook.py", notebook], project,
                        cell_env(cell, TUTORIAL_STEPS_PER_EPOCH="3"), project / "notebook")


def run_cross_versions():
    """Each of OLDEST and NEWEST uses the other's stopped runs, in both formats: infer and resume
    from their first checkpoint, and train --auto_resume in a copy of the folder."""
    for user, writer in ((NEWEST, OLDEST), (OLDEST, NEWEST)):
        for fmt in ("ckpt", "safetensors"):
            source = writer.results["project"] / f"interrupted-{fmt}"
            project = STATE["workdir"] / "cross" / f"{writer.mindspore}-to-{user.mindspore}-{fmt}"
            project.mkdir(parents=True)
            copy_project_files(PROJECT_FILES, project)
            shutil.copytree(source, project / "stopped")
            ckpt = f"stopped/lenet-1_2.{fmt}"
            key = (writer.mindspore, user.mindspore, fmt)
            data = ["--data_url", str(STATE["workdir"] / "mnist")]
            commands = {"infer": ["infer", "--ckpt", ckpt],
                        "resume": ["resume", "--ckpt", ckpt, "--ckpt_dir", "resumed", "--steps_per_epoch", "3",
                                   "--num_epochs", "1"],
                        "auto_resume": [*TRAIN, "--ckpt_format", fmt, "--ckpt_dir", "stopped", "--auto_resume"]}
            for command in CROSS_COMMANDS:
                CROSS["results"][key + (command,)] = script(user, project, *commands[command], *data, log=command)


def on_this_threads_core():
    """The least busy core, for one process of this thread (conftest.on_least_busy_core)."""
    return on_least_busy_core(f"matrix-{threading.current_thread().name}")


def builder(cells):
    for cell in cells:
        if STATE["stop"]:
            return
        try:
            build(cell)
        except Exception as error:  # reported by the cell's test
            cell.error = f"build: {error}"
        cell.build_done.set()


def runner(queue):
    """Run the cells of `queue` (shared with the other runner) as their builds finish; the
    cross-version checks as soon as OLDEST and NEWEST have both run."""
    while True:
        with LOCK:
            if not queue:
                return
            cell = queue.pop(0)
        cell.build_done.wait(BUILD_TIMEOUT_S)
        if not cell.error and not STATE["stop"]:
            try:
                run_cell(cell)
            except Exception as error:
                cell.error = f"{type(error).__name__}: {error}"
        cell.done.set()
        publish(cell.name, cell.error, cell.results)
        with LOCK:
            cross = OLDEST.done.is_set() and NEWEST.done.is_set() and not CROSS.get("started")
            CROSS["started"] = CROSS.get("started") or cross
        if cross:
            if not (OLDEST.error or NEWEST.error or STATE["stop"]):
                try:
                    run_cross_versions()
                except Exception as error:
                    CROSS["error"] = f"{type(error).__name__}: {error}"
            CROSS["done"].set()
            publish("cross", CROSS["error"] or OLDEST.error or NEWEST.error,
                    {" ".join(key): step for key, step in CROSS["results"].items()})


def publish(name, error, results):
    """Write what the cell `name` did where its test, in whichever process, reads it."""
    path = Path(os.environ[SESSION_FOLDER]) / f"{name}.json"
    steps = {key: step.__dict__ if isinstance(step, Step) else str(step) for key, step in results.items()}
    builds = {key: step.__dict__ for key, step in STATE["builds"].items()}
    path.with_suffix(".part").write_text(json.dumps({"error": error, "results": steps, "builds": builds}))
    path.with_suffix(".part").replace(path)


def published(name):
    """(error, results, builds) of the cell `name`, once its JSON file is there."""
    path = Path(os.environ[SESSION_FOLDER]) / f"{name}.json"
    deadline = time.monotonic() + BUILD_TIMEOUT_S + WAIT_TIMEOUT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{name}: still running"
        time.sleep(1)
    data = json.loads(path.read_text())
    steps = {key: Step(**value) if isinstance(value, dict) else Path(value) for key, value in data["results"].items()}
    return data["error"], steps, {key: Step(**value) for key, value in data["builds"].items()}


def start(selected_names):
    """Called by conftest.py once the tests are collected, in one process: build and run the selected
    cells (and the cross-version checks, with both OLDEST and NEWEST) in the background. One thread
    builds, in BUILD_ORDER; two run the cells, the test venv's first, each as soon as its build is done."""
    cells = [cell for cell in CELLS if cell.runs and (cell.name in selected_names or (
        "cross" in selected_names and cell in (OLDEST, NEWEST)))]
    cells = [cell for cell in cells if find_python(cell.python) or cell.build == "test venv"]
    if not cells:
        return
    STATE["workdir"] = Path(os.environ[SESSION_FOLDER])
    mnist_subset(STATE["workdir"] / "mnist", 640, 320)
    to_build = [cell for cell in cells if cell.build != "test venv"]
    if any(cell.python == OLDEST.python for cell in to_build) and OLDEST not in to_build:
        to_build.append(OLDEST)  # its venv carries the other cell on its Python
    to_build.sort(key=lambda cell: BUILD_ORDER.index(cell.name))
    for cell in cells:
        if cell.build == "test venv":
            cell.build_done.set()
    threading.Thread(target=builder, args=(to_build,), daemon=True).start()
    queue = sorted(cells, key=lambda cell: -1 if cell.build == "test venv" else BUILD_ORDER.index(cell.name))
    for _ in range(RUNNERS):
        threading.Thread(target=runner, args=(queue,), daemon=True).start()


def stop():
    """Called by conftest.py at the end of the session, in the process that ran start()."""
    STATE["stop"] = True
    for process in list(STATE["processes"]):
        try:
            os.killpg(process.pid, signal.SIGKILL)  # with a notebook's kernel, a build's pip
        except ProcessLookupError:
            pass


# --- the tests ----------------------------------------------------------------------------------

def ours(step):
    return [line for line in step.stderr.splitlines() if OUR_WARNING.search(line)]


def stored(path):
    """What a checkpoint file stores, bit for bit: its bytes; for safetensors, its header as a dict
    (safetensors writes the metadata's keys in no fixed order) and the bytes of the tensors."""
    data = Path(path).read_bytes()
    if path.suffix == ".ckpt":
        return data
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), data[8 + size:]


def show_times(title, steps):
    print(f"\n{title} (wall/CPU s): " + ", ".join(
        f"{name} {step.wall_s:.1f}/{step.cpu_s:.1f}" for name, step in steps.items() if isinstance(step, Step)))


@pytest.mark.parametrize("cell", [pytest.param(cell, id=cell.name, marks=pytest.mark.skipif(not cell.runs,
                                                                                          reason=NOT_AT_THIS_LEVEL))
                                  for cell in CELLS])
def test_a_mindspore_release_runs_everything(cell):
    if cell.build != "test venv" and not find_python(cell.python):
        pytest.skip(f"no Python {cell.python} interpreter here")
    error, r, builds = published(cell.name)
    assert not error, error
    show_times(cell.name, r)
    show_times("builds so far", builds)
    for name, step in r.items():
        if isinstance(step, Step) and name.startswith("stopped"):
            assert step.returncode == 128 + signal.SIGTERM and "Training stopped by SIGTERM" in step.stderr, \
                (name, step.stderr[-2000:])
        elif isinstance(step, Step):
            assert step.returncode == 0, (name, step.stderr[-3000:])
        if isinstance(step, Step):
            assert not ours(step), (name, ours(step))
    if cell is NEWEST:
        import mindspore
        assert (mindspore.__version__, np.__version__[:2]) == (cell.mindspore, "2.")
        return  # the rest on 2.10.0: test_script, test_resume, test_export, test_notebook
    tutorial = r["tutorial"].stdout
    assert "epoch: 4 step: 3" in tutorial
    assert re.search(r"Test accuracy of ckpt/lenet_1-best\.ckpt", tutorial)
    assert {p.name for p in (r["project"] / "images").glob("*.png")} == {
        "prediction.png", "confusion_matrix.png", "misclassified.png"}
    for line in ("Same parameters as the uninterrupted run, bit for bit: True", "Same predictions: True",
                 "Parameters of LeNet5 left unfilled, or of another shape: []"):  # the sections beyond, too
        assert line in tutorial, line
    if cell.light:
        return
    assert "Continuing from interrupted/lenet-1_" in r["continued"].stdout
    last = f"lenet-2_6.{cell.ckpt_format}"
    assert stored(r["project"] / "interrupted" / last) == stored(r["project"] / "uninterrupted" / last)
    assert f"Test accuracy of uninterrupted/lenet-best.{cell.ckpt_format}" in r["infer"].stdout
    assert (r["project"] / "lenet5.mindir").stat().st_size > 100_000
    if "export_onnx" in r:
        import onnxruntime
        session = onnxruntime.InferenceSession(str(r["project"] / "lenet5.onnx"), providers=["CPUExecutionProvider"])
        batch = np.zeros((32, 1, 32, 32), np.float32)
        assert session.run(None, {session.get_inputs()[0].name: batch})[0].shape == (32, 10)
    executed = nbformat.read(r["project"] / "matrix.ipynb", as_version=4)
    errors = [(o.ename, o.evalue) for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    out = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []) if o.output_type == "stream"
                  and o.name == "stdout")
    err = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []) if o.output_type == "stream"
                  and o.name == "stderr")
    mindspore, python, numpy = re.search(r"versions: (\S+) (\S+) (\S+)", out).groups()  # the kernel's
    assert (mindspore, python.rsplit(".", 1)[0]) == (cell.mindspore, cell.python)
    assert numpy.startswith("2." if cell is NEWEST else "1.")
    assert re.findall(r"epoch: (\d+) step: 3,", out) == ["1", "2", "3", "4"]
    for line in ("Crashed: simulated crash after step 4", "Same predictions: True",
                 "Same parameters as the uninterrupted run, bit for bit: True", "Network parameters not loaded: []"):
        assert line in out, line
    assert not OUR_WARNING.search(err), err
    assert "[ERROR]" not in out + err


def test_checkpoints_move_between_the_oldest_release_and_2_10(request):
    if not find_python(OLDEST.python):
        pytest.skip(f"no Python {OLDEST.python} interpreter here")
    error, results, _ = published("cross")
    assert not error, error
    show_times("cross-version", results)
    assert len(results) == 4 * len(CROSS_COMMANDS)
    for (writer, user, fmt, command), step in ((key.split(), step) for key, step in results.items()):
        assert step.returncode == 0, (writer, user, fmt, command, step.stderr[-3000:])
        assert not ours(step), ours(step)
        expected = {"infer": f"Test accuracy of stopped/lenet-1_2.{fmt}", "resume": f"Loaded stopped/lenet-1_2.{fmt}",
                    "auto_resume": "Continuing from stopped/lenet-1_"}[command]
        assert expected in step.stdout, (writer, user, fmt, command, step.stdout[-2000:])
