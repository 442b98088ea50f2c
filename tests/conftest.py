"""Shared fixtures: tiny IDX files, and a scratch copy of the project to run the script in."""
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROJECT_FILES = ["main.py", "main.ipynb", "mnist_data.py", "machinery"]


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
    import os
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    return found[-1] if found else None


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the MindSpore x Python matrix (test_versions_matrix.py); "
                                       "-m 'not slow' leaves it out")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(session, config, items):
    """The version matrix builds its environments and runs its cells in the background from here on,
    overlapping the other tests, at the lowest priority; its tests, collected last, wait for them."""
    selected = [item for item in items if item.module.__name__ == "test_versions_matrix"]
    if selected and not config.option.collectonly:
        selected[0].module.start({item.callspec.id if hasattr(item, "callspec") else "cross" for item in selected})


def pytest_sessionfinish(session, exitstatus):
    matrix = sys.modules.get("test_versions_matrix")
    if matrix:
        matrix.stop()
