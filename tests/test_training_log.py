"""train_log.csv, the log 'train' keeps beside its checkpoints, and the curves 'train' and 'curves' draw from
it: each step once across stops and continuations, a torn last row left out, an unreadable log in one line,
and the curves of a first epoch not yet finished."""
import csv
import signal

import pytest

from conftest import QUICK, copy_checkpoints, one_error_line, run_script, start_script, wait_for

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


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
        process = start_script(tmp_path, *args)
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


def test_a_torn_last_log_row_is_left_out_and_an_unreadable_log_says_so(eight_step_run, tmp_path, small_mnist):
    cwd = copy_checkpoints(eight_step_run / "ckpt", tmp_path)
    log = cwd / "ckpt" / "train" / "train_log.csv"
    rows = log.read_text().splitlines()
    log.write_text("\n".join(rows) + "\n9,3\n")  # a power cut in the middle of a row
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "4", "--save_steps", "5",
                        "--num_epochs", "3", "--auto_resume", "--no_progress")
    assert result.returncode == 0, result.stderr
    assert "Continuing from ckpt/train/lenet-2_4.ckpt: epoch 2, step 4" in result.stdout
    kept = log.read_text().splitlines()
    assert kept[:len(rows)] == rows and [int(row.split(",")[0]) for row in kept[1:]] == [
        1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 12]  # each step once, and each epoch's test metrics
    log.write_text("global_step,epoch,loss,test_acc,test_loss,run\n1,1\n")
    result = run_script(cwd, "curves")
    assert result.returncode == 1
    assert one_error_line(result) == ("error: ckpt/train/train_log.csv has no complete row to draw (it is empty or "
                                      "damaged); train on with 'python main.py train --auto_resume', or pass "
                                      "another --ckpt_dir")


def test_curves_of_an_unfinished_first_epoch_count_steps(tmp_path):
    from machinery.plotting import plot_training_log
    from machinery.training_log import read_log
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_log.csv").write_text("global_step,epoch,loss,test_acc,test_loss,run\n"
                                                    "1,1,2.3,,,1\n2,1,2.2,,,1\n3,1,2.1,,,1\n")
    result = run_script(tmp_path, "curves", "--ckpt_dir", "run")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "train_curves.png").stat().st_size > 10_000
    figure = plot_training_log(read_log(tmp_path / "run" / "train_log.csv"))
    loss_ax, acc_ax = figure.axes
    assert loss_ax.get_xlabel() == "step" and list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]  # not 1/3 to 1
    assert "no test metrics in the log yet" in acc_ax.texts[0].get_text()
