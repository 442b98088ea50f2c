"""A diverging run, through the real script: it stops at once in one line, saves nothing non-finite, and
never buries the good checkpoints. Under msrun: test_distributed.py."""
import csv
import re

import numpy as np
import pytest

from machinery.checkpoint_files import read_checkpoint, regular_checkpoints
from conftest import QUICK, copy_checkpoints, finite, one_error_line, run_script

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


DIVERGING = ["train", "--num_epochs", "6", "--save_steps", "2", "--lr", "0.4", "--ckpt_dir", "nan", *QUICK]
DIVERGED = re.compile(r"error: the loss is (nan|inf|-inf) at epoch (\d+), step (\d) \(global step (\d+)\): training "
                      r"diverged and stopped without saving it; the last checkpoint saved, (nan/\S+\.ckpt), is "
                      r"finite and kept \(a smaller --lr avoids this\)")


def test_a_diverging_run_stops_at_once_and_keeps_its_finite_checkpoints(tmp_path, small_mnist):
    args = [*DIVERGING, "--data_url", str(small_mnist)]
    result = run_script(tmp_path, *args)
    assert result.returncode == 1
    match = DIVERGED.fullmatch(one_error_line(result))
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
    assert DIVERGED.fullmatch(one_error_line(again))[4] == str(stopped_at)
    log = list(csv.DictReader(open(tmp_path / "nan" / "train_log.csv")))
    assert all(np.isfinite(float(row["loss"])) for row in log if row["loss"])
    assert [int(row["global_step"]) for row in log if row["loss"]] == list(range(1, stopped_at))


def test_a_diverging_resume_in_the_tutorials_steps_saves_nothing_non_finite(tmp_path, small_mnist, one_epoch_run):
    copy_checkpoints(one_epoch_run, tmp_path)
    result = run_script(tmp_path, "resume", "--ckpt", "ckpt/lenet-1_5.ckpt", "--lr", "1000", "--ckpt_dir", "tut",
                        "--data_url", str(small_mnist), *QUICK)
    assert result.returncode == 1
    assert re.fullmatch(r"error: the loss is (nan|inf|-inf) at epoch 2, step \d \(global step \d+\): training "
                        r"diverged and stopped without saving it; no checkpoint was saved \(a smaller --lr avoids "
                        r"this\)", one_error_line(result))
    assert not list((tmp_path / "tut").glob("*.ckpt"))
