"""Shared fixtures: tiny IDX files, and a scratch copy of the project to run the script in."""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROJECT_FILES = ["main.py", "main.ipynb", "mnist_data.py", "machinery"]
# The environment variable naming the version matrix's folder: made in the one process (or xdist's
# controller) that runs its cells, inherited by the workers whose tests read the cells' results there.
MATRIX_FOLDER = "TUTORIAL_VERSION_MATRIX_RESULTS"


def copy_project_files(names, target):
    """Copy the named files and folders of the project into the folder `target`."""
    for name in names:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, target / name)


def write_idx(split_dir, prefix, images, labels):
    """Write `images` (N x 28 x 28 uint8) and `labels` (N) as MNIST IDX files."""
    split_dir.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (split_dir / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, 28, 28) + np.asarray(images, np.uint8).tobytes())
    (split_dir / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + np.asarray(labels, np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path):
    """An MNIST layout with 96 training and 64 test images of random noise."""
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "tiny"
    for split, prefix, n in [("train", "train", 96), ("test", "t10k", 64)]:
        write_idx(data_dir / split, prefix, rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    return data_dir


def mnist_subset(data_dir, train_images, test_images):
    """The first `train_images` and `test_images` of the shipped MNIST, as an MNIST layout in `data_dir`."""
    from mnist_data import prepare_mnist
    shipped = prepare_mnist(ROOT / "MNIST")
    for split, prefix, n in [("train", "train", train_images), ("test", "t10k", test_images)]:
        raw_images = (shipped / split / f"{prefix}-images-idx3-ubyte").read_bytes()[16:16 + n * 784]
        raw_labels = (shipped / split / f"{prefix}-labels-idx1-ubyte").read_bytes()[8:8 + n]
        write_idx(data_dir / split, prefix, np.frombuffer(raw_images, np.uint8).reshape(n, 28, 28),
                  np.frombuffer(raw_labels, np.uint8))
    return data_dir


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory):
    """The first 640 training and 320 test images of the shipped MNIST: 20 and 10 batches."""
    return mnist_subset(tmp_path_factory.mktemp("small") / "mnist", 640, 320)


@pytest.fixture(scope="session")
def cpu():
    import main
    main.set_device("CPU")
    return main


@pytest.fixture
def project(tmp_path):
    """A scratch copy of the project for the notebook, sharing the shipped MNIST files by symlink."""
    copy = tmp_path / "project"
    (copy / "MNIST").mkdir(parents=True)
    copy_project_files(PROJECT_FILES, copy)
    for gz in (ROOT / "MNIST").glob("*.gz"):
        (copy / "MNIST" / gz.name).symlink_to(gz)
    return copy


@pytest.fixture
def small_project(project):
    """The scratch project with MNIST/ holding the first 6,400 training and 640 test images, unpacked:
    200 and 20 batches, enough for every step of the notebook, and quick to evaluate."""
    for gz in (project / "MNIST").glob("*.gz"):
        gz.unlink()
    mnist_subset(project / "MNIST", 6400, 640)
    return project


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_command(*args):
    return [sys.executable, "-W", "default", str(ROOT / "main.py"), *args]


def run_script(cwd, *args, timeout=900):
    """Run main.py in the folder `cwd` as a user would; return the CompletedProcess."""
    return subprocess.run(script_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def find_python(version):
    """The pyenv interpreter of `version`, or None."""
    import glob
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    return found[-1] if found else None


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the one process, or xdist's controller: its workers inherit it
        os.environ[MATRIX_FOLDER] = tempfile.mkdtemp(prefix="mindspore-versions-")
    else:
        pin_to_one_core(int(config.workerinput["workerid"][2:]))


def pin_to_one_core(index):
    """Keep the calling thread, and every process it starts from now on, on one core: the index-th,
    round the cores this process may use. pytest-xdist's workers (pyproject.toml) and the version
    matrix's threads each keep to one, because MindSpore's CPU runtime spins (sched_yield) while it
    waits: a training run sharing 2 cores with another busy process took 3 times the CPU it takes
    alone, while two runs pinned to one core took no more than each alone (docs/development.md#ci)."""
    if hasattr(os, "sched_setaffinity"):  # Linux
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[index % len(cores)]})


def start_version_matrix(nodeids):
    """The version matrix builds its environments and runs its cells in the background from here on, in
    this one process, beside the other tests; its tests, which run last, wait for what the cells did
    (test_versions_matrix.py)."""
    selected = {nodeid.split("[")[1].split("]")[0] if "[" in nodeid else "cross" for nodeid in nodeids
                if "test_versions_matrix.py::" in nodeid}
    if selected:
        import test_versions_matrix
        test_versions_matrix.start(selected)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(session, config, items):
    """For pytest-xdist's workers (`--dist loadgroup`, pyproject.toml): the tests of a module with a
    module-scoped fixture (a training run its tests share) go to one worker, so that the run happens
    once; the longest (LONGEST) go first, then the other slow ones, so that the quick ones fill the end;
    the version matrix's tests, which only wait for its cells, go last."""
    for item in items:
        if any(defs[-1].scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def order(item):
        if item.module.__name__ == "test_versions_matrix":
            return 3
        longest = item.name in LONGEST or item.module.__name__ in LONGEST
        return 0 if longest else 1 if item.get_closest_marker("slow") else 2
    items.sort(key=order)


# What takes longest, measured, first: started last, one of them would leave the other workers idle at
# the end. Modules whose tests share a run go to one worker whole (msrun's take 6 minutes on a shared core).
LONGEST = {"test_distributed", "test_edge_cases", "test_third_hunt", "test_full_tutorial_reaches_the_accuracy_floors",
           "test_notebook_runs_in_a_jupyter_kernel_twice_then_the_readme_commands_work",
           "test_notebook_runs_in_jupyterlab", "test_interrupted_runs_continue_bit_for_bit"}


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")  # after -k and -m deselect
def start_version_matrix_after_collecting(session, config, items):
    if not hasattr(config, "workerinput") and not config.option.collectonly:
        start_version_matrix([item.nodeid for item in items])


STARTED = []  # the worker whose collection started the version matrix, under pytest-xdist


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under pytest-xdist, the controller starts the version matrix when the first worker has collected."""
    if not STARTED:
        STARTED.append(node)
        start_version_matrix(ids)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return
    matrix = sys.modules.get("test_versions_matrix")
    if matrix:
        matrix.stop()
    shutil.rmtree(os.environ[MATRIX_FOLDER], ignore_errors=True)
