"""Issue 20's cases, each run through the real script: outputs that would land on another run's files,
data swapped for the shipped copy, another number of workers, resume's stored position, and stops and
failures that misreported."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from machinery.checkpoint_files import read_checkpoint, run_info
from conftest import ROOT, free_port, run_script, script_command


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert "[WARNING]" not in result.stderr and "[ERROR]" not in result.stderr, result.stderr
    return lines[0]


def snapshot(folder):
    """Every file below `folder`, with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_mnist):
    """A 'train' run in ckpt/train: 2 epochs of 4 steps, saved at steps 4, 5 and 8 (lenet-2_1 is mid-epoch)."""
    cwd = tmp_path_factory.mktemp("third")
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "4", "--save_steps", "5",
                        "--num_epochs", "2", "--no_progress")
    assert result.returncode == 0, result.stderr
    return cwd


def copy_of(trained, tmp_path):
    """A fresh working folder holding a copy of the trained run's ckpt/."""
    shutil.copytree(trained / "ckpt", tmp_path / "ckpt")
    return tmp_path


# Case 2: the shipped copy goes into an empty folder only.

@pytest.mark.slow
def test_2_a_data_folder_with_other_content_is_refused_never_filled_with_the_shipped_copy(tmp_path, small_mnist):
    flat = tmp_path / "flat"  # the four unpacked files side by side
    flat.mkdir()
    for split in ("train", "test"):
        for path in (small_mnist / split).iterdir():
            shutil.copy2(path, flat / path.name)
    split_dir = tmp_path / "mnist"  # a whole layout, and --data_url at its train/ folder
    shutil.copytree(small_mnist, split_dir)
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    (fashion / "fashion-train-images.bin").write_bytes(b"not the digits")
    layout = ("train/train-images-idx3-ubyte, train/train-labels-idx1-ubyte, test/t10k-images-idx3-ubyte, "
              "test/t10k-labels-idx1-ubyte")
    cases = {
        "flat": "error: data directory flat cannot be used: it holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte side by side; move them into this layout: {layout}",
        "mnist/train": "error: data directory mnist/train cannot be used: it is the train/ folder of an MNIST "
                       "layout; pass --data_url mnist",
        "fashion": "error: data directory fashion cannot be used: it holds fashion-train-images.bin, but no MNIST "
                   f"file where it is read: {layout}, or the four .gz files; put MNIST there, or pass an empty "
                   f"folder to get a copy",
    }
    before = snapshot(tmp_path)
    for data_url, message in cases.items():
        result = run_script(tmp_path, "infer", "--data_url", data_url)
        assert result.returncode == 1
        assert one_error_line(result) == message
        assert "unpacking the copy shipped" not in result.stdout
    assert snapshot(tmp_path) == before  # nothing unpacked into the user's folders
