"""Bad input, run through the real script: one line saying what is wrong and how to fix it, a
non-zero exit code, no traceback, and nothing of the user's lost."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from machinery.checkpoint_files import read_checkpoint
from conftest import ROOT, run_script, script_command

USER_FILE = "ckpt/lenet-1_1875.ckpt"


def error_lines(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    return lines


@pytest.fixture
def cwd(tmp_path):
    """A working folder holding a file of the user's that no error may touch."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / USER_FILE).write_bytes(b"the user's checkpoint")
    (tmp_path / "main.py").write_text("not a folder")
    yield tmp_path
    assert (tmp_path / USER_FILE).read_bytes() == b"the user's checkpoint"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["lenet-1_1875.ckpt"]


@pytest.mark.parametrize("args, code, message", [
    (["--data_url", "nowhere"], 1, "error: data directory nowhere cannot be used: it does not exist"),
    (["--data_url", "main.py"], 1, "error: data directory main.py cannot be used: it is a file"),
    (["--data_url", "obs://bucket/mnist"], 1, "error: --data_url obs://bucket/mnist needs ModelArts' moxing"),
    (["--train_url", "s3://bucket/out"], 1, "error: --train_url s3://bucket/out needs ModelArts' moxing"),
    (["--device_target", "Ascend"], 1, "error: device_target Ascend is not available here; available: CPU"),
    (["--device_target", "TPU"], 2, "error: argument --device_target: invalid choice: 'TPU' (choose from "),
    (["train", "--num_epochs", "0"], 2, "error: argument --num_epochs: must be a positive integer, got 0; "
                                        "see python main.py train --help"),
    (["train", "--num_epochs", "-2"], 2, "error: argument --num_epochs: must be a positive integer, got -2; "
                                         "see python main.py train --help"),
    (["resume", "--lr", "0"], 2, "error: argument --lr: must be a positive number, got 0; "
                                 "see python main.py resume --help"),
    (["--ckpt_dir", "main.py/ckpt"], 1, "error: cannot write to --ckpt_dir main.py/ckpt: Not a directory; "
                                        "pass a folder you can write to"),
    (["infer", "--ckpt_dir", "nowhere"], 1, "error: --ckpt_dir nowhere does not exist; pass the folder that "
                                            "holds your checkpoints"),
    (["infer", "--ckpt_dir", "."], 1, "error: . holds 1 checkpoint file, not an intact LeNet5 checkpoint (see python "
                                      "main.py list --ckpt_dir .); pass another --ckpt_dir or --ckpt"),
])
def test_bad_input_gives_one_line_and_no_traceback(cwd, args, code, message):
    result = run_script(cwd, *args)
    assert result.returncode == code
    (line,) = error_lines(result)
    assert line.startswith(message)
    if code == 2:  # an option the parser refused
        assert line.endswith(" --help")


def test_damaged_data_stops_before_training(cwd):
    data = cwd / "data"
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        (data / split).mkdir(parents=True)
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            (data / split / f"{prefix}-{kind}").write_bytes(b"")
    result = run_script(cwd, "--data_url", "data")
    assert result.returncode == 1
    assert error_lines(result)[0].startswith("error: data/train/train-images-idx3-ubyte is not an MNIST image file")
    assert "epoch:" not in result.stdout


@pytest.mark.slow
def test_an_unreadable_data_folder_is_named(small_mnist):
    """Root reads everything, so the script runs as the user nobody here."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the script as another user, for whom a folder is unreadable")
    cwd = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        shutil.copytree(small_mnist, cwd / "data")
        (cwd / "data").chmod(0o700)  # root's alone
        cwd.chmod(0o777)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*as_nobody, sys.executable, "-c", f"open({str(ROOT / 'main.py')!r})"],
                          capture_output=True).returncode:
            pytest.skip(f"the user nobody cannot read {ROOT} or run {sys.executable}")
        result = subprocess.run([*as_nobody, *script_command("infer", "--data_url", "data")], cwd=cwd,
                                capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(cwd)})
        assert result.returncode == 1
        assert error_lines(result)[0].startswith("error: data directory data cannot be used: it is not readable")
        assert sorted(p.name for p in (cwd / "data").iterdir()) == ["test", "train"]
    finally:
        shutil.rmtree(cwd)


@pytest.fixture
def mount_tmpfs(tmp_path):
    """A function that mounts (or remounts) a small tmpfs with the given options; returns its path."""
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(*options):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(disk)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
        return disk
    yield mount
    subprocess.run(["umount", "--lazy", str(disk)], check=False, capture_output=True)


def test_a_read_only_checkpoint_folder_is_refused_before_training(cwd, mount_tmpfs, small_mnist):
    small_disk = mount_tmpfs("ro", "size=100k")
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--ckpt_dir", str(small_disk))
    assert result.returncode == 1
    assert error_lines(result) == [f"error: cannot write to --ckpt_dir {small_disk}: Read-only file system; "
                                   f"pass a folder you can write to"]
    assert "epoch" not in result.stdout


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_saved_checkpoints(cwd, mount_tmpfs, small_mnist):
    small_disk = mount_tmpfs("size=1200k")  # room for two LeNet5 checkpoints (about 490 KB each), not three
    ckpt_dir = small_disk / "ckpt"
    options = ["--data_url", str(small_mnist), "--ckpt_dir", str(ckpt_dir), "--steps_per_epoch", "5"]
    result = run_script(cwd, "train", "--num_epochs", "3", *options)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert line.startswith(f"error: cannot save {ckpt_dir}/lenet-")
    assert line.endswith(": No space left on device; free some space or choose another --ckpt_dir "
                         "(the checkpoints already there are kept)")
    saved = sorted(p.name for p in ckpt_dir.iterdir())
    assert saved == ["lenet-1_5.ckpt", "lenet-best.ckpt", "train_log.csv"]  # nothing partial, nothing hidden
    assert all(read_checkpoint(ckpt_dir / name) for name in saved[:2])  # CRC intact

    mount_tmpfs("remount", "size=4m")  # the user makes room, and continues
    result = run_script(cwd, "train", "--num_epochs", "3", "--auto_resume", *options)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Continuing from \S*disk/ckpt/lenet-1_5.ckpt: epoch 1, step 5", result.stdout)
    assert "lenet-3_5.ckpt" in os.listdir(ckpt_dir)


@pytest.mark.slow
def test_a_full_disk_in_the_tutorials_own_steps_gives_one_line(cwd, mount_tmpfs, small_mnist):
    """There MindSpore's ModelCheckpoint saves; its error ends the run the same way."""
    small_disk = mount_tmpfs("size=700k")  # the first checkpoint and the graph fit, the second does not
    result = run_script(cwd, "--data_url", str(small_mnist), "--ckpt_dir", str(small_disk),
                        "--steps_per_epoch", "5")
    assert result.returncode == 1
    assert error_lines(result) == [f"error: No space left on device, with --ckpt_dir {small_disk}; free some "
                                   f"space or choose another --ckpt_dir (the files already saved are kept)"]
    assert read_checkpoint(small_disk / "lenet-1_5.ckpt")


@pytest.mark.slow
def test_damaged_gz_files_stop_before_training_and_leave_nothing_unpacked(cwd):
    """The four .gz files in --data_url: the last one unpacked is damaged; the three before it go again."""
    data = cwd / "data"
    data.mkdir()
    for gz in (ROOT / "MNIST").glob("*.gz"):
        shutil.copy(gz, data)
    bad = data / "t10k-labels-idx1-ubyte.gz"
    damaged = bytearray(bad.read_bytes())
    damaged[20:28] = bytes(b ^ 0xFF for b in damaged[20:28])  # inside the compressed data
    bad.write_bytes(bytes(damaged))
    result = run_script(cwd, "--data_url", "data")
    assert result.returncode == 1
    assert error_lines(result) == ["error: cannot decompress data/t10k-labels-idx1-ubyte.gz: Error -3 while "
                                   "decompressing data: invalid bit length repeat; replace it with the original file"]
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in (ROOT / "MNIST").glob("*.gz"))


@pytest.mark.slow
def test_a_damaged_shipped_copy_stops_the_tutorial_and_leaves_nothing_unpacked(project):
    """The default --data_url: MNIST/ as shipped, in a scratch copy of the project."""
    bad = project / "MNIST" / "t10k-labels-idx1-ubyte.gz"
    truncated = bad.read_bytes()[:3000]
    bad.unlink()  # a symlink to the real file, which must stay intact
    bad.write_bytes(truncated)
    result = subprocess.run([sys.executable, str(project / "main.py")], cwd=project, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 1
    assert error_lines(result) == [f"error: cannot decompress {bad}: Compressed file ended before the "
                                   f"end-of-stream marker was reached; replace it with the original file"]
    assert sorted(p.name for p in (project / "MNIST").iterdir()) == sorted(
        p.name for p in (ROOT / "MNIST").glob("*.gz"))
