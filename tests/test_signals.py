"""Stops, through the real script: Ctrl-C (SIGINT) or SIGTERM during the lesson, `train`, `resume` and `infer`
gives one line that names what was kept and the command that continues; a signal while a graph compiles,
before the first save, or once training is complete. Exact resuming after every kind of stop:
test_resume.py; the training log across stops: test_training_log.py."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mnist_data import prepare_mnist
from conftest import (QUICK, ROOT, copy_checkpoints, finite, signal_after, start_script, stop_line, wait_for)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_tutorial_names_the_checkpoint_and_the_command(tmp_path, small_mnist, sig):
    args = ["--data_url", str(small_mnist), "--ckpt_dir", "ck", *QUICK]
    process = start_script(tmp_path, *args)
    first = tmp_path / "ck" / "lenet-1_5.ckpt"
    wait_for(process, first.exists, "the first checkpoint")
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    # While a step runs, MindSpore's runtime turns SIGINT into SIGTERM (see docs/checkpoints.md#stopping).
    assert process.returncode in ((130, 143) if sig == signal.SIGINT else (143,)), err
    line = stop_line(err)
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


@pytest.mark.slow
def test_a_signal_during_resume_names_its_newest_checkpoint(tmp_path, small_mnist, one_epoch_run):
    data = ["--data_url", str(small_mnist), *QUICK]
    copy_checkpoints(one_epoch_run, tmp_path)
    process = start_script(tmp_path, "resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--num_epochs", "100", *data)
    wait_for(process, (tmp_path / "ckpt" / "lenet_1-3_5.ckpt").exists, "the resumed run's second checkpoint")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    newest = max((p for p in (tmp_path / "ckpt").glob("lenet_1-*.ckpt") if "best" not in p.name),
                 key=os.path.getmtime)
    left = 1 + 100 - int(re.search(r"-(\d+)_", newest.name)[1])  # the stopped command would have ended at 101
    assert stop_line(err) == (f"Stopped by SIGTERM; the last complete checkpoint is ckpt/{newest.name}. To continue "
                              f"from it: python {ROOT / 'main.py'} resume --ckpt ckpt/{newest.name} "
                              f"{' '.join(data)} --num_epochs {left}")


@pytest.mark.slow
def test_a_stop_before_the_first_save_names_no_other_runs_checkpoint(tmp_path, one_epoch_run):
    """The folder holds an earlier run's checkpoints; this run has saved none yet."""
    copy_checkpoints(one_epoch_run, tmp_path)
    args = ["resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--steps_per_epoch", "1000", "--no_progress"]
    process = start_script(tmp_path, *args)  # all of MNIST: the first save comes after 1,000 steps
    _, err = signal_after(process, "Optimizer parameters not loaded", signal.SIGTERM)  # the resumed run's start
    assert process.returncode == 143, err
    assert stop_line(err) == (f"Stopped by SIGTERM; no checkpoint was saved by this run. To start again: "
                              f"python {ROOT / 'main.py'} {' '.join(args)}")
    assert not list((tmp_path / "ckpt").glob("lenet_1-*.ckpt"))


@pytest.mark.slow
def test_a_signal_during_infer_says_nothing_was_written(tmp_path, small_mnist, one_epoch_run):
    copy_checkpoints(one_epoch_run, tmp_path)
    process = start_script(tmp_path, "infer", "--data_url", str(small_mnist), stdout=open(tmp_path / "out.txt", "w"))
    wait_for(process, lambda: "Device:" in (tmp_path / "out.txt").read_text(), "the start")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (130, 143), err
    assert re.fullmatch(r"Stopped by SIG(INT|TERM); nothing was written\. To run it again: python \S+main\.py "
                        + re.escape(f"infer --data_url {small_mnist}"), stop_line(err))


@pytest.mark.slow
def test_ctrl_c_while_a_graph_compiles_gives_the_stop_line_alone_and_writes_nothing(tmp_path, small_mnist):
    """A stop while MindSpore compiles a graph waits for the compilation, and says only its line."""
    for delay in (0.6, 1.0, 1.4):  # after the device line: the data, then the first graph's compilation
        cwd = tmp_path / str(delay)
        cwd.mkdir()
        process = start_script(cwd, "--data_url", str(small_mnist), "--steps_per_epoch", "2", "--no_progress")
        try:
            _, err = signal_after(process, "Device:", delay=delay)
        finally:
            process.kill()
        assert process.returncode in (130, 143), err  # during a step, MindSpore passes SIGINT on as SIGTERM
        assert "[ERROR]" not in err and "[WARNING]" not in err and "Traceback" not in err, err
        assert re.search(r"^Stopped by SIG(INT|TERM); ", err, re.M), err
        assert not (cwd / "rank_0").exists()  # no analyze_fail.ir from a failed compilation


# A signal once the last step has begun stops nothing: the run ends complete, with its outputs, and exit 0.

@pytest.mark.slow
def test_a_sigterm_during_the_last_evaluation_ends_a_complete_run_that_publishes(tmp_path, small_mnist):
    """SIGTERM once the last step has begun: the run finishes its evaluation and its last save."""
    full = tmp_path / "full"  # the small training set, with the whole test set, so that evaluation takes a while
    shutil.copytree(small_mnist / "train", full / "train")
    shutil.copytree(prepare_mnist(ROOT / "MNIST") / "test", full / "test")
    process = start_script(tmp_path, "train", "--data_url", str(full), "--ckpt_dir", "run", "--steps_per_epoch", "3",
                           "--save_steps", "1", "--num_epochs", "1", "--train_url", "out")
    try:
        wait_for(process, (tmp_path / "run" / "lenet-1_2.ckpt").exists, "lenet-1_2.ckpt", timeout=300,
                 interval=0.001)
        time.sleep(0.3)  # step 3, the last, takes milliseconds; evaluating 10,000 images takes seconds
        assert process.poll() is None, "the run ended before the signal"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM arrived after the last step: training is complete, saved run/lenet-1_3.ckpt" in err
    assert "To continue" not in err and "Traceback" not in err
    assert "epoch 1/1:" in out and "Copied the outputs to out" in out
    assert {"lenet-1_3.ckpt", "lenet-best.ckpt"} <= {p.name for p in (tmp_path / "out").iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0, 0.02, 0.1])  # through the hand-over from the training loop's handlers
def test_a_ctrl_c_after_the_last_epoch_still_ends_with_the_outputs_and_exit_0(tmp_path, small_mnist, delay):
    process = start_script(tmp_path, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "2",
                           "--train_url", "out", "--no_progress", "--num_epochs", "1")
    try:
        out, err = signal_after(process, "epoch 1/1:", delay=delay)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Stopped by" not in err and "To continue" not in err and "Traceback" not in err
    assert ("A stop signal arrived after training was complete, so it stopped nothing: the outputs are finished "
            "and copied") in err or "arrived after the last step: training is complete" in err
    assert "Copied the outputs to out" in out
    assert "train_curves.png" in {p.name for p in (tmp_path / "out").iterdir()}


def test_the_continue_command_puts_auto_resume_after_the_command(tmp_path, small_mnist):
    process = start_script(tmp_path, "--ckpt_dir", "train", "train", "--data_url", str(small_mnist), "--no_progress")
    try:
        _, err = signal_after(process, "Device:", signal.SIGTERM)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert (f"To continue: python {ROOT / 'main.py'} --ckpt_dir train train --auto_resume --data_url {small_mnist} "
            f"--no_progress\n") in err, err
