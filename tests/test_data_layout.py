"""The layouts --data_url accepts, on real files and real processes: the tutorial's train/ and test/, the four
IDX files side by side, .gz files beside them; a folder holding something else, refused and never filled with
the shipped copy; two first runs at once; an unpacked file checked by its content; a full disk; a read-only
or unreadable data folder. Damaged files: test_data.py; downloads: test_download.py."""
import gzip
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mindspore.dataset import MnistDataset

from conftest import ROOT, as_nobody, assert_verified, copy_project, one_error_line, run_script, script_command, \
    shipped_gz, snapshot
from mnist_data import MNIST_FILES, DataError, mnist_split, prepare_mnist

# prepare_mnist in a process of its own, as a run of the tutorial calls it: the folder it returns on stdout,
# a DataError as one line on stderr, as the script's own handler prints it. argv[2]: when to start.
PREPARE = """import sys, time
from mnist_data import DataError, prepare_mnist
time.sleep(max(0, float(sys.argv[2]) - time.time()))
try:
    print(prepare_mnist(sys.argv[1]))
except DataError as error:
    sys.exit(f"error: {error}")
"""


def start_prepare(data_dir, at=0, as_user=(), **env):
    return subprocess.Popen([*as_user, sys.executable, "-c", PREPARE, str(data_dir), str(at)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})


def run_prepare(data_dir, as_user=(), **env):
    process = start_prepare(data_dir, as_user=as_user, **env)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def counts(data_dir):
    """The number of images MnistDataset reads for training and for testing from a folder prepare_mnist returned."""
    return tuple(MnistDataset(*mnist_split(data_dir, training)).get_dataset_size() for training in (True, False))


# ---- two first runs at once ----

def test_two_first_runs_at_once_both_succeed(tmp_path):
    for attempt in range(3):  # unpacking takes about 0.3 s: both processes start it within milliseconds
        data_dir = shipped_gz(tmp_path / str(attempt))
        start = time.time() + 2  # both have imported mnist_data by then
        processes = [start_prepare(data_dir, start) for _ in range(2)]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            assert out == f"{data_dir}\n"
        assert_verified(data_dir)
        assert not list(data_dir.rglob("*.partial"))


@pytest.mark.parametrize("delay", [0, 0.05, 0.15])  # the second run finds the folder empty, or train/ begun
def test_two_first_runs_at_once_on_an_empty_folder_both_get_the_shipped_copy(tmp_path, delay):
    data_dir = tmp_path / "empty"  # as msrun's workers, each preparing --data_url
    data_dir.mkdir()
    start = time.time() + 2
    processes = [start_prepare(data_dir, start), start_prepare(data_dir, start + delay)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.endswith(f"{data_dir}\n")
    assert_verified(data_dir)
    assert not list(data_dir.rglob("*.partial"))


def test_a_folder_the_shipped_copy_is_part_way_unpacked_into_is_completed(tmp_path):
    """What a second run finds while the first unpacks the test files, or after it was killed there."""
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    prepare_mnist(data_dir)
    (data_dir / "test" / "t10k-labels-idx1-ubyte").unlink()
    assert run_prepare(data_dir) == (0, f"{data_dir}\n", "")
    assert_verified(data_dir)


def test_a_missing_file_beside_files_of_other_content_is_never_taken_from_the_shipped_copy(tiny_mnist):
    (tiny_mnist / "test" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing .*t10k-labels-idx1-ubyte: put the MNIST file there"):
        prepare_mnist(tiny_mnist)
    assert not (tiny_mnist / "test" / "t10k-labels-idx1-ubyte").exists()


def test_a_run_killed_while_another_unpacks_harms_neither_it_nor_the_next(tmp_path):
    data_dir = shipped_gz(tmp_path / "data")
    start = time.time() + 2
    survivor, killed = start_prepare(data_dir, start), start_prepare(data_dir, start)
    time.sleep(start + 0.1 - time.time())
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert_verified(data_dir)
    assert all(p.name.startswith(".unpacking-") for p in data_dir.rglob("*.partial"))
    # what a killed run leaves (its own partial file, or one as earlier versions named it) is not read as MNIST,
    # and the next run removes it once nobody has written to it for 10 minutes
    legacy = data_dir / "train" / "train-images-idx3-ubyte.partial"
    legacy.write_bytes(b"\0" * 1000)
    for partial in data_dir.rglob("*.partial"):
        os.utime(partial, (time.time() - 700, time.time() - 700))
    assert run_prepare(data_dir) == (0, f"{data_dir}\n", "")
    assert not list(data_dir.rglob("*.partial"))
    assert counts(data_dir) == (60000, 10000)


def test_an_unpacked_file_of_the_right_size_but_other_content_is_unpacked_again(tmp_path):
    data_dir = shipped_gz(tmp_path / "data")
    prepare_mnist(data_dir)
    bad = data_dir / "train" / "train-images-idx3-ubyte"
    bad.write_bytes(bytes(bad.stat().st_size))  # what two runs writing into one partial file could leave
    assert run_prepare(data_dir) == (0, f"{bad} did not match its checksum; unpacked it again from "
                                        f"train-images-idx3-ubyte.gz\n{data_dir}\n", "")
    assert_verified(data_dir)
    assert run_prepare(data_dir) == (0, f"{data_dir}\n", "")  # intact now: nothing to say


# ---- a full disk blames the disk, not the .gz file ----

@pytest.mark.parametrize("source", ["the shipped copy", "the .gz files in the folder"])
def test_a_full_disk_while_unpacking_names_the_disk_and_keeps_the_gz_files(mount_tmpfs, source):
    disk = mount_tmpfs("size=12m")  # room for the .gz files (11 MB), not for the 47 MB of training images
    if source != "the shipped copy":
        shipped_gz(disk)
    before = sorted(p.name for p in disk.iterdir())
    code, out, err = run_prepare(disk)
    assert code == 1
    assert err == (f"error: cannot unpack train-images-idx3-ubyte.gz into {disk / 'train'}: the disk is full (No "
                   f"space left on device); free some space there (MNIST takes 55 MB unpacked), or pass a --data_url "
                   f"on another disk\n")
    assert sorted(p.name for p in disk.iterdir()) == before  # no train/, no partial file; the .gz files kept
    for gz in disk.glob("*.gz"):
        assert gz.read_bytes() == (ROOT / "MNIST" / gz.name).read_bytes()


# ---- a read-only or unreadable data folder ----

def test_a_read_only_folder_of_gz_files_is_unpacked_into_the_cache(mount_tmpfs, tmp_path):
    disk = mount_tmpfs("size=12m")
    shipped_gz(disk)
    mount_tmpfs("remount", "ro")  # read-only for root too, as a dataset mount or a read-only clone
    cache = tmp_path / "xdg" / "mindspore-checkpoint-tutorial" / "MNIST"
    line = f"{disk / 'train'} cannot be written (Read-only file system): the MNIST files unpacked from {disk} are in"
    assert run_prepare(disk, XDG_CACHE_HOME=str(tmp_path / "xdg")) == (0, f"{line} {cache}\n{cache}\n", "")
    assert_verified(cache)
    unpacked = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    assert run_prepare(disk, XDG_CACHE_HOME=str(tmp_path / "xdg")) == (0, f"{line} {cache}\n{cache}\n", "")
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == unpacked  # verified, not unpacked again
    assert counts(cache) == (60000, 10000)

    code, out, err = run_prepare(disk, XDG_CACHE_HOME=str(disk / "cache"))  # no folder to write to at all
    assert code == 1 and out == ""
    assert err == (f"error: cannot unpack the MNIST files of {disk}: neither {disk / 'train'} (Read-only file "
                   f"system) nor {disk / 'cache' / 'mindspore-checkpoint-tutorial' / 'MNIST' / 'train'} (Read-only "
                   f"file system) can be written; make one of them writable (the files take 55 MB unpacked), or "
                   f"set XDG_CACHE_HOME to a folder you can write to\n")


def test_a_folder_of_gz_files_that_the_user_cannot_write_is_unpacked_into_the_cache(open_folder):
    """Root writes everywhere, so the run is the user nobody's here."""
    as_user = as_nobody("run as the user nobody, who cannot write a folder of root's")
    scratch = open_folder
    scratch.chmod(0o755)
    data_dir = shipped_gz(scratch / "data")
    (scratch / "xdg").mkdir()
    (scratch / "xdg").chmod(0o777)  # the user nobody's cache
    cache = scratch / "xdg" / "mindspore-checkpoint-tutorial" / "MNIST"
    assert run_prepare(data_dir, as_user=as_user, XDG_CACHE_HOME=str(scratch / "xdg")) == (
        0, f"{data_dir / 'train'} cannot be written (Permission denied): the MNIST files unpacked from "
           f"{data_dir} are in {cache}\n{cache}\n", "")
    assert_verified(cache)
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(p.name for p in (ROOT / "MNIST").glob("*.gz"))


@pytest.mark.slow
def test_an_unreadable_data_folder_is_named(small_mnist, open_folder):
    """Root reads everything, so the script runs as the user nobody here."""
    as_user = as_nobody("run the script as another user, for whom a folder is unreadable")
    cwd = open_folder
    shutil.copytree(small_mnist, cwd / "data")
    (cwd / "data").chmod(0o700)  # root's alone
    cwd.chmod(0o777)
    result = subprocess.run([*as_user, *script_command("infer", "--data_url", "data")], cwd=cwd,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(cwd)})
    assert result.returncode == 1
    assert one_error_line(result).startswith("error: data directory data cannot be used: it is not readable")
    assert sorted(p.name for p in (cwd / "data").iterdir()) == ["test", "train"]


# ---- the four IDX files side by side, and a folder of something else ----

def flat_copy(nested, flat):
    """The files of the layout `nested`, side by side in `flat`."""
    flat.mkdir()
    for split in MNIST_FILES:
        for path in (nested / split).iterdir():
            shutil.copy(path, flat / path.name)
    return flat


def test_a_flat_folder_is_read_as_it_is(tiny_mnist, tmp_path):
    flat = flat_copy(tiny_mnist, tmp_path / "flat")
    before = sorted(p.name for p in flat.iterdir())
    assert prepare_mnist(flat) == flat
    assert sorted(p.name for p in flat.iterdir()) == before  # nothing moved, nothing unpacked into it
    assert mnist_split(flat, True) == (str(flat), "train") and mnist_split(flat, False) == (str(flat), "test")
    assert counts(flat) == (96, 64)
    assert mnist_split(tiny_mnist, False) == (str(tiny_mnist / "test"), "test")
    assert counts(tiny_mnist) == (96, 64)
    with pytest.raises(DataError, match="it is the train/ folder of an MNIST layout; pass --data_url"):
        prepare_mnist(tiny_mnist / "train")


def test_the_real_mnist_side_by_side_gives_60000_training_and_10000_test_images(tmp_path):
    nested = prepare_mnist(shipped_gz(tmp_path / "nested"))
    flat = flat_copy(nested, tmp_path / "flat")
    assert prepare_mnist(flat) == flat
    assert counts(flat) == counts(nested) == (60000, 10000)


DAMAGES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-1]), "is 71 bytes, expected 72 for 64 items"),
    "not IDX": (lambda p: p.write_bytes(b"PK\x03\x04" + p.read_bytes()[4:]), "is not an MNIST label file"),
    "not digits": (lambda p: p.write_bytes(p.read_bytes()[:8] + b"\x0c" * 64), "has label 12, expected digits 0-9"),
    "missing": (lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_flat_file_gets_the_line_it_gets_in_train_and_test(tiny_mnist, tmp_path, damage):
    flat = flat_copy(tiny_mnist, tmp_path / "flat")
    action, message = DAMAGES[damage]
    errors = []
    for bad in (tiny_mnist / "test" / "t10k-labels-idx1-ubyte", flat / "t10k-labels-idx1-ubyte"):
        data_dir = bad.parent.parent if bad.parent.name == "test" else bad.parent
        action(bad)
        with pytest.raises(DataError, match=message) as error:
            prepare_mnist(data_dir)
        gz = data_dir / f"{bad.name}.gz"  # where the line says its .gz would be read from
        errors.append(str(error.value).replace(str(gz), "<gz>").replace(str(bad), "<file>"))
        assert "<file>" in errors[-1] and "\n" not in errors[-1]
    assert errors[0] == errors[1]


def test_another_file_that_mnistdataset_would_read_is_named(tiny_mnist, tmp_path):
    flat = flat_copy(tiny_mnist, tmp_path / "flat")
    shutil.copy(flat / "train-images-idx3-ubyte", flat / "train-images-idx3-ubyte.bak")
    with pytest.raises(RuntimeError, match="num of images should be equal to num of labels"):
        MnistDataset(str(flat), usage="train").get_dataset_size()  # what the check spares the user
    with pytest.raises(DataError) as error:
        prepare_mnist(flat)
    assert str(error.value) == (f"{flat} holds train-images-idx3-ubyte.bak beside train-images-idx3-ubyte, and "
                                f"MnistDataset would read it as MNIST too; move it out of {flat}")


def test_gz_files_beside_the_flat_files_are_unpacked_into_train_and_test(tiny_mnist, tmp_path):
    """torchvision's raw/ folder: MnistDataset would read the .gz files beside the IDX files as IDX files."""
    flat = flat_copy(tiny_mnist, tmp_path / "flat")
    md5s = {split: {name: hashlib.md5((flat / name).read_bytes()).hexdigest() for name in files}
            for split, files in MNIST_FILES.items()}
    for files in MNIST_FILES.values():
        for name in files:
            (flat / f"{name}.gz").write_bytes(gzip.compress((flat / name).read_bytes()))
    idx_before = {name: (flat / name).read_bytes() for files in MNIST_FILES.values() for name in files}
    assert prepare_mnist(flat, md5s=md5s) == flat
    assert mnist_split(flat, True) == (str(flat / "train"), "train")
    assert counts(flat) == (96, 64)
    assert {name: (flat / name).read_bytes() for name in idx_before} == idx_before
    assert np.array_equal(np.fromfile(flat / "train" / "train-images-idx3-ubyte", np.uint8),
                          np.fromfile(flat / "train-images-idx3-ubyte", np.uint8))


@pytest.mark.slow
def test_a_data_folder_with_other_content_is_refused_never_filled_with_the_shipped_copy(tmp_path, small_mnist):
    """The shipped copy goes into an empty folder only."""
    flat_copy(small_mnist, tmp_path / "flat")  # the four unpacked files side by side
    split_dir = tmp_path / "mnist"  # a whole layout, and --data_url at its train/ folder
    shutil.copytree(small_mnist, split_dir)
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    (fashion / "fashion-train-images.bin").write_bytes(b"not the digits")
    layout = ("train/train-images-idx3-ubyte, train/train-labels-idx1-ubyte, test/t10k-images-idx3-ubyte, "
              "test/t10k-labels-idx1-ubyte")
    cases = {
        # read as it is (test_a_flat_folder_is_read_as_it_is): the data passes, and infer then finds no checkpoint
        "flat": "error: --ckpt_dir ckpt does not exist; pass the folder that holds your checkpoints",
        "mnist/train": "error: data directory mnist/train cannot be used: it is the train/ folder of an MNIST "
                       "layout; pass --data_url mnist",
        "fashion": "error: data directory fashion cannot be used: it holds fashion-train-images.bin, but no MNIST "
                   f"file where it is read: {layout}, the same four side by side, or their four .gz files; put "
                   f"MNIST there, or pass an empty folder to get a copy",
    }
    before = snapshot(tmp_path)
    for data_url, message in cases.items():
        result = run_script(tmp_path, "infer", "--data_url", data_url)
        assert result.returncode == 1
        assert one_error_line(result) == message
        assert "unpacking the copy shipped" not in result.stdout
    assert snapshot(tmp_path) == before  # nothing unpacked into the user's folders


@pytest.mark.slow
def test_two_first_trainings_at_once_share_the_unpacking(tmp_path):
    """The reproduction: two `train` runs started together on a fresh clone, whose MNIST/ holds only the
    shipped .gz files; both train, and the unpacked files are MNIST's, byte for byte."""
    project = copy_project(tmp_path / "clone")
    runs = [subprocess.Popen(script_command("train", "--lr", lr, "--ckpt_dir", f"run_{lr}", "--steps_per_epoch", "3",
                                            "--num_epochs", "1", "--no_eval", "--no_progress", main="main.py"),
                             cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for lr in ("0.01", "0.02")]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
    assert_verified(project / "MNIST")
