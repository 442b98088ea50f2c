"""Bad option values and folders the script cannot use, through the real script: one line saying what is
wrong and how to fix it, a non-zero exit code, no traceback, and nothing of the user's lost (the
users_folder fixture checks). Checkpoint, output and data folders that do not exist, are files, are
read-only, are full, or are too long for MindSpore. Where options go and which command takes which:
test_command_line.py; damaged data: test_data.py; damaged checkpoints: test_checkpoints.py."""
import os
import re
import shutil
import subprocess

import pytest

from machinery.checkpoint_files import read_checkpoint
from conftest import one_error_line, run_script, script_command


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
def test_bad_input_gives_one_line_and_no_traceback(users_folder, args, code, message):
    result = run_script(users_folder, *args)
    assert result.returncode == code
    line = one_error_line(result)
    assert line.startswith(message)
    if code == 2:  # an option the parser refused
        assert line.endswith(" --help")


@pytest.mark.parametrize("ckpt_dir, message", [
    ("nope", "error: --ckpt_dir nope does not exist; pass the folder that holds your checkpoints"),
    ("somefile", "error: --ckpt_dir somefile is a file, not a folder; pass the folder that holds it "
                 "(--ckpt_dir .), or pass the file as --ckpt"),
])
def test_list_refuses_a_missing_folder_or_a_file(tmp_path, ckpt_dir, message):
    (tmp_path / "somefile").write_text("x")
    result = run_script(tmp_path, "list", "--ckpt_dir", ckpt_dir)
    assert result.returncode == 1
    assert one_error_line(result) == message


@pytest.mark.slow
def test_infer_with_a_folder_as_ckpt_says_so(ckpt_then_safetensors_run, small_mnist):
    result = run_script(ckpt_then_safetensors_run, "infer", "--ckpt", "run", "--data_url", str(small_mnist))
    assert result.returncode == 1
    assert one_error_line(result) == ("error: --ckpt run is a folder; pass a checkpoint file, or --ckpt_dir run "
                                      "with --ckpt latest or best")


@pytest.mark.parametrize("command", [[], ["resume", "--ckpt", "plain.ckpt"]])
def test_a_ckpt_dir_too_long_for_modelcheckpoint_is_refused_before_anything_is_made(tmp_path, small_mnist,
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


@pytest.mark.parametrize("where, message", [
    ("train_url", "error: cannot write to --train_url afile/out: Not a directory (afile is a file); pass a "
                  "--train_url you can write to"),
    ("images", "error: cannot write to the figures' folder images: Not a directory (images is a file); make it a "
               "folder you can write to, or run from another folder"),
])
def test_an_unwritable_train_url_or_images_folder_stops_before_training(tmp_path, small_mnist, where, message):
    """Where the outputs go is checked before training, as --ckpt_dir is."""
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "images").write_text("a file") if where == "images" else None
    # train draws its curves beside its log: the lesson is what saves figures in images/
    args = ["train", "--train_url", "afile/out", "--num_epochs", "1"] if where == "train_url" else []
    result = run_script(tmp_path, *args, "--data_url", str(small_mnist), "--steps_per_epoch", "2")
    assert result.returncode == 1
    assert one_error_line(result) == message
    assert not (tmp_path / "ckpt").exists()  # nothing trained, nothing created


# ---- read-only and full disks (a tmpfs; the tests need root to mount it) ----

def test_a_read_only_checkpoint_folder_is_refused_before_training(users_folder, mount_tmpfs, small_mnist):
    small_disk = mount_tmpfs("ro", "size=100k")
    result = run_script(users_folder, "train", "--data_url", str(small_mnist), "--ckpt_dir", str(small_disk))
    assert result.returncode == 1
    assert one_error_line(result) == (f"error: cannot write to --ckpt_dir {small_disk}: Read-only file system; "
                                      f"pass a folder you can write to")
    assert "epoch" not in result.stdout


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_saved_checkpoints(users_folder, mount_tmpfs, small_mnist):
    small_disk = mount_tmpfs("size=1200k")  # room for two LeNet5 checkpoints (about 490 KB each), not three
    ckpt_dir = small_disk / "ckpt"
    options = ["--data_url", str(small_mnist), "--ckpt_dir", str(ckpt_dir), "--steps_per_epoch", "5"]
    result = run_script(users_folder, "train", "--num_epochs", "3", *options)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: cannot save {ckpt_dir}/lenet-")
    assert line.endswith(": No space left on device; free some space or choose another --ckpt_dir "
                         "(the checkpoints already there are kept)")
    saved = sorted(p.name for p in ckpt_dir.iterdir())
    assert saved == ["lenet-1_5.ckpt", "lenet-best.ckpt", "train_log.csv"]  # nothing partial, nothing hidden
    assert all(read_checkpoint(ckpt_dir / name) for name in saved[:2])  # CRC intact

    mount_tmpfs("remount", "size=4m")  # the user makes room, and continues
    result = run_script(users_folder, "train", "--num_epochs", "3", "--auto_resume", *options)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Continuing from \S*disk/ckpt/lenet-1_5.ckpt: epoch 1, step 5", result.stdout)
    assert "lenet-3_5.ckpt" in os.listdir(ckpt_dir)


@pytest.mark.slow
def test_a_full_disk_in_the_tutorials_own_steps_gives_one_line(users_folder, mount_tmpfs, small_mnist):
    """There MindSpore's ModelCheckpoint saves; its error ends the run the same way."""
    small_disk = mount_tmpfs("size=700k")  # the first checkpoint and the graph fit, the second does not
    result = run_script(users_folder, "--data_url", str(small_mnist), "--ckpt_dir", str(small_disk),
                        "--steps_per_epoch", "5")
    assert result.returncode == 1
    assert one_error_line(result) == (f"error: No space left on device, with --ckpt_dir {small_disk}; free some "
                                      f"space or choose another --ckpt_dir (the files already saved are kept)")
    assert read_checkpoint(small_disk / "lenet-1_5.ckpt")


def test_the_error_line_is_written_whole_so_that_mindspores_threads_cannot_split_it(tmp_path):
    """MindSpore's threads write to stderr as a run ends (a stopped dataset pipeline, for one). Between a
    line and its newline written apart, their text would join our line. The error and stop lines go out in
    one write (strace shows each write on stderr)."""
    if not shutil.which("strace"):
        pytest.skip("needs strace, to see the writes: apt-get install strace")
    trace = tmp_path / "writes.txt"
    command = ["strace", "-f", "-qq", "-s", "1000", "-e", "trace=write", "-e", "signal=none", "-o", str(trace),
               *script_command("infer", "--ckpt_dir", "nowhere")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = one_error_line(result)
    assert result.returncode == 1 and line.startswith("error: --ckpt_dir nowhere does not exist")
    writes = re.findall(r'write\(2, "((?:[^"\\]|\\.)*)"', trace.read_text())
    assert f"{line}\\n" in writes, writes
