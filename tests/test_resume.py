"""Continuing a run, through the real script: 'train --auto_resume' after SIGTERM, SIGINT, SIGHUP and kill -9,
bit for bit; a damaged newest checkpoint skipped and kept; 'train' refuses a folder with checkpoints unless
asked to continue, and has nothing to do once the run has its epochs; 'resume' continues the epoch count,
stores the position it trained to, and starts plain weights at epoch 0. Across numbers of workers:
test_distributed.py."""
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

import mindspore as ms

from machinery.checkpoint_files import read_checkpoint, regular_checkpoints, run_info
from conftest import ROOT, copy_checkpoints, run_script, script_command

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


RUN = ["train", "--num_epochs", "3", "--save_steps", "5", "--seed", "7"]


def parameters(path):
    return {name: value.asnumpy() for name, value in read_checkpoint(path).items()}


def assert_identical(path_a, path_b):
    a, b = parameters(path_a), parameters(path_b)
    assert a.keys() == b.keys()
    different = [name for name in a if not np.array_equal(a[name], b[name])]
    assert not different, f"{path_a} and {path_b} differ in {different}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_mnist):
    """An uninterrupted run of RUN, on the small MNIST."""
    cwd = tmp_path_factory.mktemp("reference")
    result = run_script(cwd, *RUN, "--data_url", str(small_mnist), "--ckpt_dir", "reference")
    assert result.returncode == 0, result.stderr
    return cwd / "reference"


def interrupt(cwd, args, ckpt_dir, sig, name, mid_save=False):
    """Start training; once it has written checkpoint `name` (and, if `mid_save`, while it is
    writing the next one), send it `sig`. Return (exit code, stdout, stderr, files left half-written)."""
    def listing():
        files = {}
        for entry in os.scandir(ckpt_dir):
            try:
                files[entry.name] = entry.stat().st_mtime_ns
            except FileNotFoundError:  # renamed while we looked
                pass
        return files

    before = listing()

    def new(file):
        return file in now and now[file] != before.get(file)

    process = subprocess.Popen(script_command(*args), cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    target, written_before = ckpt_dir / name, before.get(name)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:  # one stat while waiting for `name`, rather than a listing: the run shares this core
                written = target.stat().st_mtime_ns != written_before
            except FileNotFoundError:
                written = False
            now = listing() if written and mid_save else {}
            if written and (not mid_save or any(new(f) for f in now if f.startswith(".saving-"))):
                break
            assert process.poll() is None, f"training ended before {name}: {process.communicate()}"
            assert time.monotonic() < deadline, f"{name} never came"
            time.sleep(0.0002)
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    half_written = [f for f in listing() if f.startswith(".saving-") and f not in before]
    return process.returncode, out, err, half_written


# 11 interruptions of one run, each followed by `train --auto_resume`: (signal, after which
# checkpoint, whether during the next save)
INTERRUPTIONS = [
    (signal.SIGTERM, "lenet-1_5.ckpt", False),  # mid-epoch, right after a save
    (signal.SIGKILL, "lenet-1_10.ckpt", False),  # mid-epoch
    (signal.SIGKILL, "lenet-1_15.ckpt", True),  # while writing the epoch's last checkpoint
    (signal.SIGTERM, "lenet-1_20.ckpt", False),  # between epochs
    (signal.SIGINT, "lenet-2_5.ckpt", False),  # Ctrl-C
    (signal.SIGKILL, "lenet-2_10.ckpt", True),  # while writing a mid-epoch checkpoint
    (signal.SIGKILL, "lenet-2_15.ckpt", False),
    (signal.SIGTERM, "lenet-2_20.ckpt", False),  # between epochs
    (signal.SIGKILL, "lenet-3_5.ckpt", False),
    (signal.SIGHUP, "lenet-3_10.ckpt", False),  # a closed terminal or SSH session
    (signal.SIGKILL, "lenet-3_15.ckpt", True),  # while writing the last checkpoint of the run
]


def test_interrupted_runs_continue_bit_for_bit(tmp_path, small_mnist, reference):
    project = tmp_path
    args = [*RUN, "--data_url", str(small_mnist), "--ckpt_dir", "run", "--auto_resume"]
    ckpt_dir = project / "run"
    ckpt_dir.mkdir()
    starts, killed_mid_save = [], 0
    continued = ["--auto_resume", *RUN[1:], "--data_url", str(small_mnist), "--ckpt_dir", "run"]  # the exact command
    for sig, name, mid_save in INTERRUPTIONS:
        code, out, err, half_written = interrupt(project, args, ckpt_dir, sig, name, mid_save)
        starts += re.findall(r"Continuing from run/(\S+):", out)
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
            killed_mid_save += bool(half_written)
        else:
            # While a step runs, MindSpore's runtime turns SIGINT into SIGTERM (see docs/checkpoints.md#stopping).
            expected = {signal.SIGINT: (130, 143), signal.SIGTERM: (143,), signal.SIGHUP: (129,)}[sig]
            assert code in expected, err
            assert re.search(r"Training stopped by SIG(INT|TERM|HUP) at lenet-\d_\d+; saved run/lenet-", err)
            assert f"To continue: python {ROOT / 'main.py'} train {' '.join(continued)}\n" in err
            assert "Traceback" not in err
    final = run_script(project, *args)
    assert final.returncode == 0, final.stderr
    starts += re.findall(r"Continuing from run/(\S+):", final.stdout)
    assert len(set(starts)) >= 10, starts  # continued from many different points
    assert killed_mid_save >= 1  # at least one kill -9 left a half-written file behind
    assert_identical(reference / "lenet-3_20.ckpt", ckpt_dir / "lenet-3_20.ckpt")
    assert_identical(reference / "lenet-best.ckpt", ckpt_dir / "lenet-best.ckpt")
    # keep_checkpoint_max=5 rotation kept the newest five regular files, and the best one
    assert sorted(p.name for p in ckpt_dir.glob("[!.]*.ckpt")) == sorted(p.name for p in reference.glob("*.ckpt"))


def test_a_damaged_newest_checkpoint_is_skipped_and_kept(tmp_path, small_mnist, reference):
    project = tmp_path
    args = [*RUN, "--data_url", str(small_mnist), "--ckpt_dir", "run", "--auto_resume"]
    ckpt_dir = project / "run"
    ckpt_dir.mkdir()
    interrupt(project, args, ckpt_dir, signal.SIGKILL, "lenet-2_10.ckpt")
    newest = regular_checkpoints(ckpt_dir, "lenet")[0]
    damaged = newest.read_bytes()[:-1000]  # as a power loss before the data reached the disk could
    newest.chmod(0o600)
    newest.write_bytes(damaged)
    result = run_script(project, *args)
    assert result.returncode == 0, result.stderr
    assert f"Skipping run/{newest.name}: damaged or not a checkpoint (its format or CRC check failed)" in result.stdout
    assert re.search(r"Continuing from run/lenet-\d_\d+\.ckpt", result.stdout)
    assert (ckpt_dir / f"{newest.name}.damaged").read_bytes() == damaged
    assert_identical(reference / "lenet-3_20.ckpt", ckpt_dir / "lenet-3_20.ckpt")


def test_train_refuses_a_folder_with_checkpoints_unless_asked_to_resume(tmp_path, small_mnist, reference):
    project = tmp_path
    before = {p.name: p.read_bytes() for p in reference.iterdir()}
    result = run_script(project, *RUN, "--data_url", str(small_mnist), "--ckpt_dir", str(reference))
    assert result.returncode == 1
    assert "already has checkpoints (newest: lenet-3_20.ckpt); pass --auto_resume" in result.stderr
    assert {p.name: p.read_bytes() for p in reference.iterdir()} == before
    result = run_script(project, *RUN, "--seed", "8", "--data_url", str(small_mnist), "--ckpt_dir",
                        str(reference), "--auto_resume")
    assert result.returncode == 1
    assert "was trained with --seed 7, not 8; pass the same value" in result.stderr
    result = run_script(project, *RUN, "--data_url", str(small_mnist), "--ckpt_dir", str(reference),
                        "--auto_resume")
    assert result.returncode == 0
    assert "Already trained for 3 epochs; nothing to do" in result.stdout
    assert {p.name: p.read_bytes() for p in reference.iterdir()} == before


def test_nothing_to_do_names_the_epochs_trained(eight_step_run, tmp_path, small_mnist):
    cwd = copy_checkpoints(eight_step_run / "ckpt", tmp_path)
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "4", "--save_steps", "5",
                        "--num_epochs", "1", "--auto_resume")
    assert result.returncode == 0, result.stderr
    assert "Already trained for 2 epochs, beyond --num_epochs 1; nothing to do" in result.stdout


# ---- resume ----

def test_resume_command_continues_the_epoch_count(one_run_per_format, tmp_path, small_mnist):
    cwd = copy_checkpoints(one_run_per_format / "ckpt", tmp_path)  # resume writes into its --ckpt_dir
    result = run_script(cwd, "resume", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt",
                        "--ckpt", "ckpt/lenet-2_20.ckpt", "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "Loaded ckpt/lenet-2_20.ckpt (epoch 2)" in result.stdout
    assert "epoch: 3 step: 20" in result.stdout
    assert "Checkpoints after resuming training:\n" in result.stdout
    assert "\nlenet_1-3_20.ckpt\nlenet_1-best.ckpt\nlenet_1-graph.meta\n" in result.stdout


def test_resume_from_a_mid_epoch_checkpoint_stores_the_optimizers_step(eight_step_run, tmp_path, small_mnist):
    source = eight_step_run / "ckpt" / "train" / "lenet-2_1.ckpt"  # epoch 2, step 1 of 4: global step 5
    result = run_script(tmp_path, "resume", "--ckpt", str(source), "--data_url", str(small_mnist),
                        "--steps_per_epoch", "4", "--num_epochs", "1", "--ckpt_dir", "r", "--no_progress")
    assert result.returncode == 0, result.stderr
    assert "epoch: 2 step: 4" in result.stdout  # epoch 1 was complete; this is a second pass of 4 steps
    params = read_checkpoint(tmp_path / "r" / "lenet-2_4.ckpt")
    assert run_info(params)["step_num"] == int(params["global_step"].asnumpy()[0]) == 9
    listing = run_script(tmp_path, "list", "--ckpt_dir", "r").stdout
    assert re.search(r"^lenet-2_4\.ckpt +2 +9 ", listing, re.M), listing


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_resume_from_plain_weights_starts_at_epoch_0_and_says_so(tmp_path, small_mnist, cpu, fmt):
    plain = tmp_path / f"plain.{fmt}"
    ms.save_checkpoint(cpu.LeNet5(), str(plain), format=fmt)
    result = run_script(tmp_path, "resume", "--ckpt", plain.name, "--data_url", str(small_mnist),
                        "--steps_per_epoch", "2", "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    assert f"Loaded {plain.name}: it stores no epoch (plain weights), so training starts at epoch 0" in result.stdout
    assert "epoch: 1 step: 2" in result.stdout
    assert "Traceback" not in result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr  # the lists printed say what was not loaded
