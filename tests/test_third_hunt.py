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


# Case 1: --train_url never writes over a file that no copy put there.

@pytest.mark.slow
def test_1_train_url_never_replaces_another_runs_checkpoints(trained, tmp_path, small_mnist):
    cwd = copy_of(trained, tmp_path)
    shutil.copy2(cwd / "ckpt" / "train" / "lenet-1_4.ckpt", cwd / "ckpt" / "lenet-1_4.ckpt")  # as the tutorial's
    before = snapshot(cwd / "ckpt")
    data = ["--data_url", str(small_mnist), "--steps_per_epoch", "4"]
    for args, folder in ((data, "ckpt/train"), (["train", *data, "--ckpt_dir", "other"], "ckpt")):
        result = run_script(cwd, *args, "--train_url", folder)  # the tutorial into train's folder, and back
        assert result.returncode == 1
        assert one_error_line(result).startswith(f"error: --train_url {folder} holds checkpoints that a run saved "
                                                 f"there (lenet-")
        assert "pass a --train_url of its own, or this run's --ckpt_dir" in result.stderr
        assert "epoch" not in result.stdout  # refused before training
    assert snapshot(cwd / "ckpt") == before and not (cwd / "other").exists()

    # a file that no copy put there is never replaced, whatever it is; earlier copies are
    (cwd / "out").mkdir()
    (cwd / "out" / "prediction.png").write_bytes(b"the user's figure")
    infer = ["infer", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt/train"]
    result = run_script(cwd, *infer, "--train_url", "out")
    assert result.returncode == 1
    assert one_error_line(result) == ("error: cannot copy prediction.png to --train_url out: a file of that name is "
                                      "there, and no earlier copy put it there; move it away, or pass another "
                                      "--train_url (the outputs here are kept)")
    assert sorted(p.name for p in (cwd / "out").iterdir()) == ["prediction.png"]  # nothing copied
    assert (cwd / "out" / "prediction.png").read_bytes() == b"the user's figure"
    for _ in range(2):  # the second run replaces the copies of the first
        result = run_script(cwd, *infer, "--train_url", "copies")
        assert result.returncode == 0, result.stderr
    assert (cwd / "copies" / "prediction.png").read_bytes() == (cwd / "images" / "prediction.png").read_bytes()


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
        # read as it is (test_data_layout.py): the data passes, and infer then finds no checkpoint
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


# Case 3: a run continues only with the number of workers it started with.

@pytest.mark.slow
def test_3_one_process_refuses_a_folder_of_an_msrun_run(trained, tmp_path, small_mnist):
    import mindspore as ms
    # the layout of a 2-worker msrun killed while saving: rank_0's checkpoints, each storing 2 workers,
    # and rank_1's folder, where that save had not happened yet
    for rank in (0, 1):
        (tmp_path / "two" / f"rank_{rank}").mkdir(parents=True)
    for path in (trained / "ckpt" / "train").glob("*.ckpt"):
        params = {**read_checkpoint(path), "workers": ms.Tensor(2, ms.int64)}
        ms.save_checkpoint([{"name": name, "data": value} for name, value in params.items()],
                           str(tmp_path / "two" / "rank_0" / path.name), crc_check=True)
    before = snapshot(tmp_path / "two")
    for extra in (["--auto_resume"], []):
        result = run_script(tmp_path, "train", "--data_url", str(small_mnist), "--ckpt_dir", "two",
                            "--steps_per_epoch", "4", "--num_epochs", "3", *extra)
        assert result.returncode == 1
        assert one_error_line(result) == (
            "error: two holds a run trained by 2 workers under msrun, and this is 1 process; a run continues only "
            "with the number of workers it started with (it sets the global batch and the data order): continue "
            "it with msrun --worker_num=2 --join=True ... main.py train --auto_resume, or choose another --ckpt_dir")
        assert "Starting a new run" not in result.stdout
    assert snapshot(tmp_path / "two") == before


@pytest.mark.slow
def test_3_an_msrun_refuses_a_folder_of_a_single_process_run(trained, tmp_path, small_mnist):
    shutil.copytree(trained / "ckpt" / "train", tmp_path / "one")
    before = snapshot(tmp_path / "one")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["msrun", "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "--log_dir=logs", "--join=True", str(ROOT / "main.py"), "train",
               "--data_url", str(small_mnist), "--ckpt_dir", "one", "--steps_per_epoch", "4", "--auto_resume"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    for rank in (0, 1):
        log = (tmp_path / "logs" / f"worker_{rank}.log").read_text()
        assert ("error: one holds a run trained by 1 process, and this is 2 workers under msrun; a run continues "
                "only with the number of workers it started with (it sets the global batch and the data order): "
                "continue it with python main.py train --auto_resume, in one process, or choose another "
                "--ckpt_dir") in log, log
        assert "Starting a new run" not in log
    assert {p: b for p, b in snapshot(tmp_path / "one").items() if not p.name.startswith(".")} == before


# Case 4: resume stores the position it trained to.

@pytest.mark.slow
def test_4_resume_from_a_mid_epoch_checkpoint_stores_the_optimizers_step(trained, tmp_path, small_mnist):
    source = trained / "ckpt" / "train" / "lenet-2_1.ckpt"  # epoch 2, step 1 of 4: global step 5
    result = run_script(tmp_path, "resume", "--ckpt", str(source), "--data_url", str(small_mnist),
                        "--steps_per_epoch", "4", "--num_epochs", "1", "--ckpt_dir", "r", "--no_progress")
    assert result.returncode == 0, result.stderr
    assert "epoch: 2 step: 4" in result.stdout  # epoch 1 was complete; this is a second pass of 4 steps
    params = read_checkpoint(tmp_path / "r" / "lenet-2_4.ckpt")
    assert run_info(params)["step_num"] == int(params["global_step"].asnumpy()[0]) == 9
    listing = run_script(tmp_path, "list", "--ckpt_dir", "r").stdout
    assert re.search(r"^lenet-2_4\.ckpt +2 +9 ", listing, re.M), listing


# Case 5, and a Ctrl-C during the tutorial's figures: a signal once training is complete stops nothing.

def start(cwd, *args):
    return subprocess.Popen(script_command(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def signal_after(process, line_start, sig=signal.SIGINT, timeout=300):
    """Send `sig` once the process prints a line that starts with `line_start`; return its output."""
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if line.startswith(line_start):
            process.send_signal(sig)
            break
        assert time.monotonic() < deadline
    out, err = process.communicate(timeout=timeout)
    return "".join(seen) + out, err


@pytest.mark.slow
@pytest.mark.parametrize("command, after", [("train", "epoch 1/1:")])  # the lesson trains to its last cell
def test_5_a_signal_once_training_is_complete_still_ends_with_the_outputs_and_exit_0(tmp_path, small_mnist,
                                                                                    command, after):
    args = ["--data_url", str(small_mnist), "--steps_per_epoch", "2", "--train_url", "out", "--no_progress"]
    args = ["train", *args, "--num_epochs", "1"] if command == "train" else args
    process = start(tmp_path, *args)
    try:
        out, err = signal_after(process, after)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Stopped by" not in err and "To continue" not in err and "Traceback" not in err
    assert ("A stop signal arrived after training was complete, so it stopped nothing: the outputs are finished "
            "and copied") in err or "arrived after the last step: training is complete" in err
    assert "Copied the outputs to out" in out
    figures = ["train_curves.png"] if command == "train" else ["confusion_matrix.png", "misclassified.png",
                                                               "prediction.png"]
    if command == "tutorial":  # the metrics print in one order, the README's and the notebook's
        assert re.findall(r"Eval result: epoch \d, metrics: \{'(\w+)': [0-9.]+, '(\w+)'", out) == [("loss", "acc")] * 4
    assert set(figures) <= {p.name for p in (tmp_path / "out").iterdir()}


# Case 6: a torn last row of the log is left out.

@pytest.mark.slow
def test_6_a_torn_last_log_row_is_left_out_and_an_unreadable_log_says_so(trained, tmp_path, small_mnist):
    cwd = copy_of(trained, tmp_path)
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


# Case 7: where the outputs go is checked before training, as --ckpt_dir is.

@pytest.mark.parametrize("where, message", [
    ("train_url", "error: cannot write to --train_url afile/out: Not a directory (afile is a file); pass a "
                  "--train_url you can write to"),
    ("images", "error: cannot write to the figures' folder images: Not a directory (images is a file); make it a "
               "folder you can write to, or run from another folder"),
])
def test_7_an_unwritable_train_url_or_images_folder_stops_before_training(tmp_path, small_mnist, where, message):
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "images").write_text("a file") if where == "images" else None
    extra = ["--train_url", "afile/out"] if where == "train_url" else []
    result = run_script(tmp_path, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "2",
                        "--num_epochs", "1", *extra)
    assert result.returncode == 1
    assert one_error_line(result) == message
    assert not (tmp_path / "ckpt").exists()  # nothing trained, nothing created


# Case 8: a stop while MindSpore compiles a graph waits for the compilation, and says only its line.

@pytest.mark.slow
def test_8_ctrl_c_while_a_graph_compiles_gives_the_stop_line_alone_and_writes_nothing(tmp_path, small_mnist):
    for delay in (0.6, 1.0, 1.4):  # after the device line: the data, then the first graph's compilation
        cwd = tmp_path / str(delay)
        cwd.mkdir()
        process = start(cwd, "--data_url", str(small_mnist), "--steps_per_epoch", "2", "--no_progress")
        try:
            for line in process.stdout:
                if line.startswith("Device:"):
                    time.sleep(delay)
                    process.send_signal(signal.SIGINT)
                    break
            _, err = process.communicate(timeout=300)
        finally:
            process.kill()
        assert process.returncode in (130, 143), err  # during a step, MindSpore passes SIGINT on as SIGTERM
        assert "[ERROR]" not in err and "[WARNING]" not in err and "Traceback" not in err, err
        assert re.search(r"^Stopped by SIG(INT|TERM); ", err, re.M), err
        assert not (cwd / "rank_0").exists()  # no analyze_fail.ir from a failed compilation


# Case 9: a --ckpt_dir too long for MindSpore's ModelCheckpoint.

@pytest.mark.parametrize("command", [[], ["resume", "--ckpt", "plain.ckpt"]])
def test_9_a_ckpt_dir_too_long_for_modelcheckpoint_is_refused_before_anything_is_made(tmp_path, small_mnist,
                                                                                     command):
    (tmp_path / "plain.ckpt").write_bytes(b"")
    long_dir = "/".join(["d" * 200] * 6)
    result = run_script(tmp_path, *command, "--ckpt_dir", long_dir, "--data_url", str(small_mnist),
                        "--steps_per_epoch", "1")
    assert result.returncode == 1
    length = len(str((tmp_path / long_dir).resolve()))
    assert one_error_line(result) == (f"error: --ckpt_dir is {length} characters long as an absolute path, and "
                                      f"MindSpore's ModelCheckpoint takes at most 1024; pass a shorter --ckpt_dir")
    assert not (tmp_path / ("d" * 200)).exists()


# Case 10: a checkpoint fits LeNet5 only with its shapes and its dtypes.

@pytest.mark.slow
def test_10_integer_weights_of_the_right_shapes_are_refused_and_latest_skips_them(trained, tmp_path, small_mnist):
    import mindspore as ms
    import numpy as np
    good = read_checkpoint(trained / "ckpt" / "train" / "lenet-2_4.ckpt")
    (tmp_path / "run").mkdir()
    shutil.copy2(trained / "ckpt" / "train" / "lenet-1_4.ckpt", tmp_path / "run" / "lenet-1_4.ckpt")
    ints = [{"name": name, "data": ms.Tensor(np.zeros(value.shape, np.int32))} for name, value in good.items()
            if value.dtype == ms.float32] + [{"name": "epoch_num", "data": ms.Tensor(9, ms.int32)}]
    ms.save_checkpoint(ints, str(tmp_path / "run" / "ints-9_1.ckpt"))  # the furthest position, if it counted
    result = run_script(tmp_path, "infer", "--ckpt", "run/ints-9_1.ckpt", "--data_url", str(small_mnist))
    assert result.returncode == 1
    assert one_error_line(result) == ("error: run/ints-9_1.ckpt: parameter conv1.weight is Int32, LeNet5 needs "
                                      "Float32; use a checkpoint saved from LeNet5")
    result = run_script(tmp_path, "infer", "--ckpt_dir", "run", "--data_url", str(small_mnist))
    assert result.returncode == 0, result.stderr
    assert "Using run/lenet-1_4.ckpt (latest: the furthest position, epoch 1" in result.stdout


# Case 11: options before the command, and the command that continues.

@pytest.mark.parametrize("args, message", [
    (["--num_epochs=3", "train"], "error: --num_epochs is an option of 'train' and must come after it (python "
                                  "main.py train --num_epochs ...); see python main.py train --help"),
    (["--lr", "0.1", "resume"], "error: --lr is an option of 'resume' and must come after it (python main.py "
                                "resume --lr ...); see python main.py resume --help"),
    (["--ckpt", "best", "list"], "error: --ckpt does not apply to 'list'; see python main.py list --help"),
    (["--num_epochs", "3"], "error: --num_epochs does not apply to the tutorial (no command); it is an option of "
                            "resume and train, after the command; see python main.py --help"),
])
def test_11_an_option_of_a_command_before_it_says_where_it_goes(tmp_path, args, message):
    result = run_script(tmp_path, *args)
    assert result.returncode == 2
    assert one_error_line(result) == message


def test_11_the_continue_command_puts_auto_resume_after_the_command(tmp_path, small_mnist):
    process = start(tmp_path, "--ckpt_dir", "train", "train", "--data_url", str(small_mnist), "--no_progress")
    try:
        _, err = signal_after(process, "Device:", signal.SIGTERM)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert (f"To continue: python {ROOT / 'main.py'} --ckpt_dir train train --auto_resume --data_url {small_mnist} "
            f"--no_progress\n") in err, err


# Case 12: msrun as the project runs and shows it waits for its workers.

def test_12_every_msrun_command_of_the_project_joins_its_workers():
    text = (ROOT / "main.py").read_text()  # each msrun command, with the lines a backslash continues
    shown = [re.split(r"(?<!\\)\n", text[at.start():], maxsplit=1)[0] for at in re.finditer("msrun --worker_num", text)]
    assert shown and all("--join=True" in command for command in shown), shown
    assert "--join=True" in (ROOT / "tests" / "test_distributed.py").read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", "msrun_logs/worker_0.log"], cwd=ROOT)
    assert ignored.returncode == 0  # msrun's logs stay out of git status


# The smaller ones.

@pytest.mark.slow
def test_small_one_line_for_a_file_as_ckpt_dir_and_options_of_list_and_curves(tmp_path):
    (tmp_path / "afile").write_text("a file")
    cases = {
        ("curves", "--ckpt_dir", "afile"): (1, "error: --ckpt_dir afile is a file, not a folder; pass the folder of a "
                                              "'train' run, which holds its train_log.csv"),
        ("train", "--ckpt_dir", "afile"): (1, "error: cannot write to --ckpt_dir afile: it is a file, not a folder; "
                                             "pass a folder you can write to"),
        ("list", "--data_url", "x"): (2, "error: --data_url does not apply to 'list'; see python main.py list --help"),
        ("curves", "--train_url", "x"): (2, "error: --train_url does not apply to 'curves'; see python main.py "
                                           "curves --help"),
    }
    for args, (code, message) in cases.items():
        result = run_script(tmp_path, *args)
        assert (result.returncode, one_error_line(result)) == (code, message)
    helps = {command: run_script(tmp_path, command, "--help").stdout for command in ("list", "train", "resume")}
    assert "--data_url" not in helps["list"] and "--device_id" not in helps["list"]
    assert "train until the run has this many epochs in all" in " ".join(helps["train"].split())
    assert "this many more, not up to" in " ".join(helps["resume"].split())


def test_small_nothing_to_do_names_the_epochs_trained(trained, tmp_path, small_mnist):
    cwd = copy_of(trained, tmp_path)
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "4", "--save_steps", "5",
                        "--num_epochs", "1", "--auto_resume")
    assert result.returncode == 0, result.stderr
    assert "Already trained for 2 epochs, beyond --num_epochs 1; nothing to do" in result.stdout


@pytest.mark.slow
def test_small_curves_of_an_unfinished_first_epoch_count_steps(tmp_path):
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
