"""Runs that meet each other or stop early, through the real script: one run per folder, a line for
every stop, NaN never saved, and the training log across interruptions."""
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from machinery.checkpoint_files import RUN_INFO, read_checkpoint, regular_checkpoints
from machinery.folder_lock import LOCK_NAME
from conftest import ROOT, run_script, script_command

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


QUICK = ["--steps_per_epoch", "5", "--no_progress"]


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def last_line(stderr):
    """The one line a stop prints (MindSpore may still print a DeprecationWarning of its own at exit)."""
    lines = [line for line in stderr.splitlines() if line.startswith("Stopped by")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def start(cwd, *args):
    return subprocess.Popen(script_command(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, small_mnist):
    """ckpt/ after one quick epoch of `train`, for the tests that resume or infer from it to copy."""
    cwd = tmp_path_factory.mktemp("one_epoch")
    result = run_script(cwd, "train", "--num_epochs", "1", "--ckpt_dir", "ckpt", "--data_url", str(small_mnist),
                        *QUICK)
    assert result.returncode == 0, result.stderr
    return cwd / "ckpt"


def copy_of(one_epoch, cwd):
    shutil.copytree(one_epoch, cwd / "ckpt")


def wait_for(process, condition, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.005)


def finite(path):
    """Whether the parameters in `path` are finite (a stored test loss may be inf)."""
    return all(np.isfinite(value.asnumpy()).all() for name, value in read_checkpoint(path).items()
               if name not in RUN_INFO)


# ---- one run per folder ----

def test_a_second_run_into_the_same_folder_is_refused_and_readers_are_not(tmp_path, small_mnist):
    data = ["--data_url", str(small_mnist)]
    holder = start(tmp_path, "train", "--num_epochs", "1000", "--ckpt_dir", "run", *data, *QUICK)
    lock = tmp_path / "run" / LOCK_NAME
    try:
        wait_for(holder, lambda: (tmp_path / "run" / "lenet-1_5.ckpt").exists(), "the first checkpoint")
        assert lock.read_text().startswith(f"pid {holder.pid}: python ")
        refused = re.escape(f"error: run is in use by another run (pid {holder.pid}: python ") + r".*main\.py train "
        for args in (["train", "--auto_resume"], ["resume"], []):  # two terminals; the tutorial and its resume
            result = run_script(tmp_path, *args, "--ckpt_dir", "run", *data, *QUICK)
            assert result.returncode == 1
            assert re.match(refused + r".*\); wait for it to end, or choose another --ckpt_dir$", error_line(result))
        before = {p.name for p in (tmp_path / "run").iterdir()}
        listed = run_script(tmp_path, "list", "--ckpt_dir", "run")  # readers are never blocked
        assert listed.returncode == 0 and "lenet-best.ckpt" in listed.stdout, listed.stderr
        inferred = run_script(tmp_path, "infer", "--ckpt_dir", "run", "--ckpt", "best", *data)  # never rotated
        assert inferred.returncode == 0, inferred.stderr
        assert holder.poll() is None  # the holder went on training all along
        assert not {name for name in before if name.startswith("lenet_1")}  # no second run's files
    finally:
        holder.kill()  # SIGKILL: the lock file stays, but the lock died with its holder
        holder.communicate()
    assert lock.exists()
    result = run_script(tmp_path, "train", "--num_epochs", "1", "--ckpt_dir", "run", "--auto_resume", *data, *QUICK)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Continuing from run/lenet-\d+_\d\.ckpt", result.stdout)
    assert not lock.exists()  # a run that ends removes its lock file


# ---- every stop says what it kept ----

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_tutorial_names_the_checkpoint_and_the_command(tmp_path, small_mnist, sig):
    args = ["--data_url", str(small_mnist), "--ckpt_dir", "ck", *QUICK]
    process = start(tmp_path, *args)
    first = tmp_path / "ck" / "lenet-1_5.ckpt"
    wait_for(process, first.exists, "the first checkpoint")
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    # While a step runs, MindSpore's runtime turns SIGINT into SIGTERM (see docs/checkpoints.md#stopping).
    assert process.returncode in ((130, 143) if sig == signal.SIGINT else (143,)), err
    line = last_line(err)
    match = re.fullmatch(r"Stopped by SIG(INT|TERM); the last complete checkpoint is (ck/\S+\.ckpt)\. "
                         r"To continue from it: python (\S+) resume --ckpt (\S+) (.*)", line)
    assert match, line
    newest = max((p for p in (tmp_path / "ck").glob("*.ckpt") if "best" not in p.name), key=os.path.getmtime)
    assert match[2] == match[4] == f"ck/{newest.name}" and match[3] == str(ROOT / "main.py")
    assert finite(newest)
    epoch = int(re.search(r"-(\d+)_", newest.name)[1])
    assert match[5].split() == [*args, "--num_epochs", str(4 - epoch)]  # where the lesson would have ended
    if sig == signal.SIGINT:  # the command it printed does continue
        result = subprocess.run([sys.executable, match[3], "resume", "--ckpt", match[4], *args, "--num_epochs", "1"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert f"Loaded {match[4]} (epoch " in result.stdout


def test_a_signal_during_resume_names_its_newest_checkpoint(tmp_path, small_mnist, one_epoch):
    data = ["--data_url", str(small_mnist), *QUICK]
    copy_of(one_epoch, tmp_path)
    process = start(tmp_path, "resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--num_epochs", "100", *data)
    wait_for(process, (tmp_path / "ckpt" / "lenet_1-3_5.ckpt").exists, "the resumed run's second checkpoint")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    newest = max((p for p in (tmp_path / "ckpt").glob("lenet_1-*.ckpt") if "best" not in p.name),
                 key=os.path.getmtime)
    left = 1 + 100 - int(re.search(r"-(\d+)_", newest.name)[1])  # the stopped command would have ended at 101
    assert last_line(err) == (f"Stopped by SIGTERM; the last complete checkpoint is ckpt/{newest.name}. To continue "
                              f"from it: python {ROOT / 'main.py'} resume --ckpt ckpt/{newest.name} "
                              f"{' '.join(data)} --num_epochs {left}")


def test_a_stop_before_the_first_save_names_no_other_runs_checkpoint(tmp_path, one_epoch):
    """The folder holds an earlier run's checkpoints; this run has saved none yet."""
    copy_of(one_epoch, tmp_path)
    args = ["resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--steps_per_epoch", "1000", "--no_progress"]
    process = start(tmp_path, *args)  # all of MNIST: the first save comes after 1,000 steps
    out = []
    wait_for(process, lambda: out.append(process.stdout.readline()) or "Optimizer parameters not loaded" in out[-1],
             "the resumed run's start")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert last_line(err) == (f"Stopped by SIGTERM; no checkpoint was saved by this run. To start again: "
                              f"python {ROOT / 'main.py'} {' '.join(args)}")
    assert not list((tmp_path / "ckpt").glob("lenet_1-*.ckpt"))


def test_a_signal_during_infer_says_nothing_was_written(tmp_path, small_mnist, one_epoch):
    copy_of(one_epoch, tmp_path)
    process = subprocess.Popen(script_command("infer", "--data_url", str(small_mnist)), cwd=tmp_path,
                               stdout=open(tmp_path / "out.txt", "w"), stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for(process, lambda: "Device:" in (tmp_path / "out.txt").read_text(), "the start")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (130, 143), err
    assert re.fullmatch(r"Stopped by SIG(INT|TERM); nothing was written\. To run it again: python \S+main\.py "
                        + re.escape(f"infer --data_url {small_mnist}"), last_line(err))


# ---- a diverging run stops, and never buries the good checkpoints ----

DIVERGING = ["train", "--num_epochs", "6", "--save_steps", "2", "--lr", "0.4", "--ckpt_dir", "nan", *QUICK]
DIVERGED = re.compile(r"error: the loss is (nan|inf|-inf) at epoch (\d+), step (\d) \(global step (\d+)\): training "
                      r"diverged and stopped without saving it; the last checkpoint saved, (nan/\S+\.ckpt), is "
                      r"finite and kept \(a smaller --lr avoids this\)")


def test_a_diverging_run_stops_at_once_and_keeps_its_finite_checkpoints(tmp_path, small_mnist):
    args = [*DIVERGING, "--data_url", str(small_mnist)]
    result = run_script(tmp_path, *args)
    assert result.returncode == 1
    match = DIVERGED.fullmatch(error_line(result))
    assert match, result.stderr
    stopped_at, kept = int(match[4]), match[5]
    assert stopped_at > 10, "the test wants a run that diverges after two epochs"
    files = sorted((tmp_path / "nan").glob("*.ckpt"))
    assert (tmp_path / "nan" / "lenet-best.ckpt") in files and all(finite(p) for p in files)
    assert regular_checkpoints(tmp_path / "nan")[0] == tmp_path / kept
    assert max(read_checkpoint(p)["step_num"].asnumpy().item() for p in files) < stopped_at
    # MindSpore's ModelCheckpoint, killed mid-save, leaves <name>.tmp: nothing takes it for a checkpoint
    (tmp_path / "nan" / "lenet-9_1.tmp").write_bytes((tmp_path / kept).read_bytes()[:5000])
    listed = run_script(tmp_path, "list", "--ckpt_dir", "nan")
    assert listed.returncode == 0 and ".tmp" not in listed.stdout and "NO" not in listed.stdout

    again = run_script(tmp_path, *args, "--auto_resume")  # continues from the last finite checkpoint
    assert again.returncode == 1
    assert f"Continuing from {kept}:" in again.stdout
    assert DIVERGED.fullmatch(error_line(again))[4] == str(stopped_at)
    log = list(csv.DictReader(open(tmp_path / "nan" / "train_log.csv")))
    assert all(np.isfinite(float(row["loss"])) for row in log if row["loss"])
    assert [int(row["global_step"]) for row in log if row["loss"]] == list(range(1, stopped_at))


def test_a_diverging_resume_in_the_tutorials_steps_saves_nothing_non_finite(tmp_path, small_mnist, one_epoch):
    copy_of(one_epoch, tmp_path)
    result = run_script(tmp_path, "resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--lr", "1000", "--ckpt_dir", "tut",
                        "--data_url", str(small_mnist), *QUICK)
    assert result.returncode == 1
    assert re.fullmatch(r"error: the loss is (nan|inf|-inf) at epoch 2, step \d \(global step \d+\): training "
                        r"diverged and stopped without saving it; no checkpoint was saved \(a smaller --lr avoids "
                        r"this\)", error_line(result))
    assert not list((tmp_path / "tut").glob("*.ckpt"))


# ---- the training log across interruptions ----

def test_the_log_holds_every_step_once_across_interruptions(tmp_path, small_mnist):
    args = ["train", "--num_epochs", "3", "--save_steps", "3", "--seed", "2", "--auto_resume",
            "--data_url", str(small_mnist), *QUICK]
    log_file = tmp_path / "ckpt" / "train" / "train_log.csv"  # train's default folder

    def logged_steps(run=None):
        steps = []
        for row in csv.DictReader(open(log_file)) if log_file.exists() else []:
            if row["loss"] and row["run"] and (run is None or row["run"] == run):
                steps.append(int(row["global_step"]))
        return steps

    for run, sig, after in [("1", signal.SIGKILL, 7), ("2", signal.SIGTERM, 9)]:
        process = start(tmp_path, *args)
        wait_for(process, lambda run=run, after=after: max(logged_steps(run), default=0) >= after, f"step {after}")
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        if sig == signal.SIGTERM:
            assert process.returncode == 143 and "To continue: python " in err, err
    done = run_script(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert "Saved ckpt/train/train_curves.png" in done.stdout  # beside its log: no other run replaces it
    rows = list(csv.DictReader(open(log_file)))
    assert logged_steps() == list(range(1, 16))  # every step once, none trained twice
    assert [(row["global_step"], row["epoch"]) for row in rows if row["test_acc"]] == [("5", "1"), ("10", "2"),
                                                                                        ("15", "3")]
    assert len({row["run"] for row in rows}) == 3  # three processes trained this run
    curves = run_script(tmp_path, "curves")
    assert curves.returncode == 0 and "Saved ckpt/train/train_curves.png" in curves.stdout, curves.stderr
    assert (tmp_path / "ckpt" / "train" / "train_curves.png").stat().st_size > 10_000
