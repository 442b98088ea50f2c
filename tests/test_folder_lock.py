"""One run at a time in a checkpoint folder, whichever face started it: the script's commands, the
lesson run as a script, and the lesson's training in a Jupyter kernel; readers ('list', 'infer') are never
blocked, and a lock whose holder was killed holds nothing. Two msruns: test_distributed.py."""
import re
import signal
import subprocess

import pytest

from conftest import LESSON_ON_CPU, QUICK, execute, running_kernel, one_error_line, run_script, start_script, wait_for
from machinery.folder_lock import LOCK_NAME

pytestmark = pytest.mark.slow  # MindSpore in a kernel and in the script


@pytest.fixture
def kernel(tmp_path):
    """A Jupyter kernel in `tmp_path` with the lesson's definitions loaded, on the CPU, as its cells would."""
    with running_kernel(tmp_path) as client:
        _, error = execute(client, LESSON_ON_CPU)
        assert error is None, error
        yield client


def test_a_folder_that_a_notebook_trains_into_is_refused_to_the_script(tmp_path, kernel, small_mnist):
    _, error = execute(kernel, "held = lesson.hold_folder('ckpt')\nheld.__enter__()")  # as during a training cell
    assert error is None, error
    for args in ([], ["train", "--ckpt_dir", "ckpt"]):  # the lesson, and a command
        result = run_script(tmp_path, *args, "--steps_per_epoch", "1", "--data_url", str(small_mnist))
        assert result.returncode == 1, result.stderr
        assert re.fullmatch(r"error: ckpt is in use by another run \(pid \d+: a Jupyter kernel or another Python "
                            r"program\); wait for it to end, or choose another --ckpt_dir", one_error_line(result))
    _, error = execute(kernel, "held.__exit__(None, None, None)")
    assert error is None and not (tmp_path / "ckpt" / LOCK_NAME).exists()


def test_the_notebooks_training_is_refused_a_folder_the_script_trains_into_then_runs_again(tmp_path, kernel,
                                                                                          small_mnist):
    script = start_script(tmp_path, "train", "--ckpt_dir", "ckpt", "--steps_per_epoch", "200", "--num_epochs", "50",
                          "--data_url", str(small_mnist), "--no_progress", stdout=subprocess.DEVNULL)
    try:
        wait_for(script, (tmp_path / "ckpt" / LOCK_NAME).exists, "the lock file", timeout=120, interval=0.05)
        train = f"lesson.train({str(small_mnist)!r}, ckpt_dir='ckpt', steps_per_epoch=2, num_epochs=1)"
        printed, error = execute(kernel, train)
        assert error is not None and len(error) == 1, error  # the line alone, no traceback
        assert re.fullmatch(r"ckpt is in use by another run \(pid \d+: python \S*main\.py train --ckpt_dir ckpt "
                            r".*\); wait for it to end, or choose another --ckpt_dir", error[0]), error
        assert "epoch:" not in printed
    finally:
        script.send_signal(signal.SIGTERM)
        script.communicate(timeout=120)
    for _ in range(2):  # the script has gone: the cell runs, and runs again, in the same kernel
        printed, error = execute(kernel, train)
        assert error is None, error
        assert "epoch: 1 step: 2," in printed
    assert not (tmp_path / "ckpt" / LOCK_NAME).exists()


def test_a_second_run_into_the_same_folder_is_refused_and_readers_are_not(tmp_path, small_mnist):
    data = ["--data_url", str(small_mnist)]
    holder = start_script(tmp_path, "train", "--num_epochs", "1000", "--ckpt_dir", "run", *data, *QUICK)
    lock = tmp_path / "run" / LOCK_NAME
    try:
        wait_for(holder, lambda: (tmp_path / "run" / "lenet-1_5.ckpt").exists(), "the first checkpoint")
        assert lock.read_text().startswith(f"pid {holder.pid}: python ")
        refused = re.escape(f"error: run is in use by another run (pid {holder.pid}: python ") + r".*main\.py train "
        for args in (["train", "--auto_resume"], ["resume"], []):  # two terminals; the tutorial and its resume
            result = run_script(tmp_path, *args, "--ckpt_dir", "run", *data, *QUICK)
            assert result.returncode == 1
            assert re.match(refused + r".*\); wait for it to end, or choose another --ckpt_dir$",
                            one_error_line(result))
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
