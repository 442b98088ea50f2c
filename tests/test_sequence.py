"""Issue 11, item 1: the README's steps, one after the other, in a scratch copy of the project with
the default checkpoint folders: the tutorial, `train --auto_resume` stopped by Ctrl-C (SIGINT) and
started again, `list`, `infer --ckpt best`, `export --ckpt best` and `resume`."""
import re
import signal
import subprocess
import sys
import time

from machinery.checkpoint_files import read_checkpoint, run_info
import pytest


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


def command(*args):
    return [sys.executable, "-W", "default", "main.py", *args]


def run(project, *args):
    result = subprocess.run(command(*args), cwd=project, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_the_readme_steps_work_in_sequence_with_the_default_folders(project, small_mnist):
    data = ["--data_url", str(small_mnist)]  # the shipped MNIST's first images, for a short run
    run(project, *data, "--steps_per_epoch", "3")
    ckpt = project / "ckpt"
    assert (ckpt / "lenet-best.ckpt").exists() and (ckpt / "lenet_1-4_3.ckpt").exists()
    listing = the_readme_commands(project, data)
    assert {"lenet-best.ckpt", "lenet_1-4_3.ckpt"} <= listing


def the_readme_commands(project, data):
    """The README's commands after the tutorial (the script's or the notebook's), with a few steps
    per epoch: `train --auto_resume` stopped by Ctrl-C and started again, `list`, `infer --ckpt
    best`, `export --ckpt best` and `resume`. Each must succeed and leave the tutorial's files in
    ckpt/ as they were. Returns the names that `list` shows."""
    ckpt = project / "ckpt"
    tutorial_files = {p: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
    train = ["train", "--num_epochs", "2", "--save_steps", "2", "--steps_per_epoch", "5", "--auto_resume", *data]
    process = subprocess.Popen(command(*train), cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (ckpt / "train" / "lenet-1_2.ckpt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.001)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode in (130, 143), err  # MindSpore's runtime may pass SIGINT on as SIGTERM
    assert "Starting a new run" in out
    assert re.search(r"To continue: python \S*main\.py train --auto_resume --num_epochs 2 ", err), err
    continued = run(project, *train)
    assert re.search(r"Continuing from ckpt/train/lenet-1_\d\.ckpt", continued.stdout)
    assert {p: p.read_bytes() for p in ckpt.iterdir() if p.is_file()} == tutorial_files  # untouched

    listing = run(project, "list").stdout
    rows = {line.split()[0] for line in listing.splitlines()[1:]}
    assert {"train/lenet-2_5.ckpt", "train/lenet-best.ckpt"} <= rows

    accuracy = {p: run_info(read_checkpoint(p)).get("acc", -1) for p in ckpt.rglob("*.ckpt")}
    best = max(accuracy.values())
    inferred = run(project, "infer", "--ckpt", "best", *data).stdout
    chosen = re.search(r"Using (\S+) \(best: the highest stored accuracy, (\d\.\d{4})", inferred)
    assert chosen and abs(float(chosen[2]) - best) < 1e-4
    assert chosen[1].endswith("-best.ckpt")
    exported = run(project, "export", "--ckpt", "best").stdout
    assert f"Exported {chosen[1]} to lenet5.mindir" in exported and (project / "lenet5.mindir").exists()
    resumed = run(project, "resume", "--steps_per_epoch", "3", "--num_epochs", "1", *data).stdout
    assert re.search(r"Using \S+ \(latest: the furthest position", resumed)
    assert "Checkpoints after resuming training:" in resumed
    return rows
