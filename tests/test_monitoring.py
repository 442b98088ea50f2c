"""Progress bars, and the figures drawn after prediction."""
import os
import pty
import re
import fcntl
import struct
import subprocess
import termios

import numpy as np
import pytest

from conftest import run_script, script_command
from machinery.plotting import plot_confusion_matrix, plot_misclassified


def run_in_terminal(cwd, *args, timeout=600):
    """Run main.py with a pseudo-terminal as stdout and stderr; return (exit code, output)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a new one has 0 columns
    process = subprocess.Popen(script_command(*args), cwd=cwd, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 1 << 16)
        except OSError:  # EIO: the script has exited and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return process.wait(timeout), output.decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_shows_progress_bars_between_the_loss_lines(tmp_path, small_mnist):
    """`train`, then `resume` from it, whose LossMonitor prints a line after each epoch's bar (the lesson
    itself shows LossMonitor's lines alone, as the original does)."""
    data = ["--data_url", str(small_mnist), "--steps_per_epoch", "5"]
    code, trained = run_in_terminal(tmp_path, "train", "--ckpt_dir", "ckpt", "--num_epochs", "2", *data)
    assert code == 0, trained
    code, resumed = run_in_terminal(tmp_path, "resume", "--ckpt", "ckpt/lenet-2_5.ckpt", *data)
    assert code == 0, resumed
    for epoch in (1, 2, 3, 4):
        bar = rf"epoch {epoch}/{2 if epoch <= 2 else 4}: 100%\|.*\| 5/5 "
        output = trained if epoch <= 2 else resumed
        assert re.search(bar + r"\[[0-9:]+<00:00, +[0-9.]+ ?(step/s|s/step), loss=\d\.\d{4}\]", output), output
    for epoch in (3, 4):
        assert re.search(rf"\nepoch: {epoch} step: 5, loss is", resumed)  # on a line of its own
    output = trained + resumed
    assert len(re.findall(r"test: 100%\|.*\| 1/1 ", output)) == 4  # one evaluation per epoch: 320 images, one batch


@pytest.mark.slow
def test_no_bars_without_a_terminal_or_with_no_progress(tmp_path, small_mnist):
    options = ["train", "--data_url", str(small_mnist), "--steps_per_epoch", "5", "--num_epochs", "1"]
    piped = run_script(tmp_path, *options, "--ckpt_dir", "piped")
    assert piped.returncode == 0, piped.stderr
    code, output = run_in_terminal(tmp_path, *options, "--ckpt_dir", "quiet", "--no_progress")
    assert code == 0, output
    for text in (piped.stdout + piped.stderr, output):
        assert "epoch 1/1: " in text and "step/s" not in text and "\r" not in text.replace("\r\n", "\n")


def test_confusion_matrix_counts_truth_against_prediction():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 2, 2])
    figure = plot_confusion_matrix(labels, predictions, classes=3)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in figure.axes[0].texts}
    assert cells == {(0, 0): 1, (0, 1): 1, (1, 1): 2, (1, 2): 1, (2, 2): 1}  # (truth, prediction): count
    assert figure.axes[0].get_title() == "Confusion matrix: accuracy 0.6667"


def test_the_mistakes_grid_shows_only_wrong_predictions():
    images = np.arange(10 * 32 * 32, dtype=np.float32).reshape(10, 1, 32, 32)
    labels = np.arange(10) % 10
    predictions = labels.copy()
    predictions[[2, 7]] = [5, 1]
    figure = plot_misclassified(images, labels, predictions, rows=1, columns=4)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["5 (true 2)", "1 (true 7)"]
    assert figure.texts[0].get_text().startswith("2 of 10 test images wrong")
