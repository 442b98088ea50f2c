"""--train_url, the folder every output is copied to, through the real script: it receives each run's
checkpoints, log and curves; it never replaces a file that no copy put there; it may be the folder the
outputs are in; a later copy replaces an earlier one, for a user who is not root too. A --train_url that
cannot be used is refused in one line: test_bad_input.py; ModelArts' obs:// and s3:// URLs:
test_modelarts.py."""
import os
import shutil
import subprocess

import pytest

from conftest import as_nobody, copy_checkpoints, one_error_line, run_script, script_command, snapshot

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


def test_train_url_receives_the_checkpoints(one_run_per_format):
    for fmt in ("ckpt", "safetensors"):
        published = {p.name: p.read_bytes() for p in (one_run_per_format / f"published_{fmt}").iterdir()
                     if p.name != ".train_url_copies"}  # the names copied there, which later copies may replace
        expected = {p.name: p.read_bytes() for p in (one_run_per_format / fmt).glob(f"lenet-*.{fmt}")}
        expected["train_log.csv"] = (one_run_per_format / fmt / "train_log.csv").read_bytes()  # and the run's curves
        assert published.pop("train_curves.png").startswith(b"\x89PNG")
        assert published == expected
        assert f"lenet-best.{fmt}" in published


def test_train_url_never_replaces_another_runs_checkpoints(eight_step_run, tmp_path, small_mnist):
    cwd = copy_checkpoints(eight_step_run / "ckpt", tmp_path)
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


def test_train_url_may_be_the_folder_the_outputs_are_in(tmp_path, small_mnist):
    args = ["--data_url", str(small_mnist), "--steps_per_epoch", "2", "--num_epochs", "1"]
    result = run_script(tmp_path, "train", *args, "--ckpt_dir", "ckpt", "--train_url", "ckpt")
    assert result.returncode == 0, result.stderr
    result = run_script(tmp_path, "infer", "--data_url", str(small_mnist), "--train_url", "images")
    assert result.returncode == 0, result.stderr
    assert "Copied the outputs to images" in result.stdout


def test_a_second_copy_to_the_same_train_url_works_for_a_user_who_is_not_root(small_mnist, open_folder):
    as_user = as_nobody("run the script as the user nobody")
    cwd = open_folder
    cwd.chmod(0o777)
    shutil.copytree(small_mnist, cwd / "data")
    env = {**os.environ, "HOME": str(cwd)}
    train = [*script_command("train", "--data_url", "data", "--steps_per_epoch", "2", "--num_epochs", "1",
                             "--ckpt_dir", "ckpt", "--no_eval")]
    done = subprocess.run([*as_user, *train], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (cwd / "ckpt" / "lenet-1_2.ckpt").stat().st_mode & 0o777 == 0o400  # saved read-only
    for _ in range(2):
        done = subprocess.run([*as_user, *script_command("infer", "--data_url", "data", "--train_url", "out")],
                              cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (cwd / "out" / "lenet-1_2.ckpt").read_bytes() == (cwd / "ckpt" / "lenet-1_2.ckpt").read_bytes()
    assert (cwd / "out" / "lenet-1_2.ckpt").stat().st_uid == 65534
