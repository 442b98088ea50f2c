"""Which checkpoint a command takes, and what 'list' shows: 'best' (the highest stored accuracy) and 'latest'
(the furthest intact position) in either format, for every command; --ckpt given a path; damaged, foreign and
empty files skipped; a folder holding only a best file, and an empty one; the list sorted by position, with
its metrics and integrity; folders behind symbolic links searched, and a link back to a folder above refused
in one line. Real checkpoint files, real links."""
import os
import re
import shutil

import mindspore as ms
import numpy as np
import pytest

from machinery.checkpoint_files import CheckpointError, all_checkpoints, checkpoint_tree, newest_checkpoint, \
    read_checkpoint, regular_checkpoints, resolve, run_info, table
from conftest import assert_saved_the_figures, one_error_line, run_script


def save(path, epoch, step, acc):
    """A real checkpoint file (CRC and all, in the format its suffix names) storing its position and accuracy
    as train does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ms.save_checkpoint([{"name": "fc.weight", "data": ms.Tensor(np.full((2, 2), epoch, np.float32))}], str(path),
                       append_dict={"epoch_num": epoch, "step_num": step, "acc": acc}, crc_check=True,
                       format=path.suffix[1:])
    return path


@pytest.fixture
def linked(tmp_path, monkeypatch):
    """ckpt/ holds one checkpoint of its own, and train/, a link to a folder elsewhere with the better ones."""
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "ckpt" / "lenet-1_10.ckpt", 1, 10, 0.90)
    save(tmp_path / "elsewhere" / "train" / "lenet-2_20.ckpt", 2, 20, 0.98)
    save(tmp_path / "elsewhere" / "train" / "lenet-3_30.safetensors", 3, 30, 0.95)
    (tmp_path / "ckpt" / "train").symlink_to(tmp_path / "elsewhere" / "train", target_is_directory=True)
    return tmp_path / "ckpt"


def test_a_linked_folder_is_searched_like_a_real_one(linked, capsys):
    assert sorted(p.relative_to(linked).as_posix() for p in checkpoint_tree(linked)) == [
        "lenet-1_10.ckpt", "train/lenet-2_20.ckpt", "train/lenet-3_30.safetensors"]
    assert resolve("best", linked) == linked / "train" / "lenet-2_20.ckpt"
    assert resolve("latest", linked) == linked / "train" / "lenet-3_30.safetensors"
    assert capsys.readouterr().out.splitlines() == [
        f"Using {linked / 'train' / 'lenet-2_20.ckpt'} (best: the highest stored accuracy, 0.9800, epoch 2, "
        f"global step 20; of 3 intact checkpoints in {linked} and below)",
        f"Using {linked / 'train' / 'lenet-3_30.safetensors'} (latest: the furthest position, epoch 3, global step 30; "
        f"of 3 intact checkpoints in {linked} and below)"]
    rows = [line.split() for line in table(linked).splitlines()[1:]]
    assert [row[0] for row in rows] == ["lenet-1_10.ckpt", "train/lenet-2_20.ckpt", "train/lenet-3_30.safetensors"]
    assert rows[1][1:] == ["2", "20", "0.9800", "-", "-", "yes"]


def test_a_linked_folder_inside_a_linked_folder_and_a_linked_root_are_searched(linked, tmp_path):
    save(tmp_path / "further" / "lenet-4_40.ckpt", 4, 40, 0.99)
    (tmp_path / "elsewhere" / "train" / "more").symlink_to(tmp_path / "further", target_is_directory=True)
    (tmp_path / "root-link").symlink_to(linked, target_is_directory=True)
    for root in (linked, tmp_path / "root-link"):
        assert resolve("best", root) == root / "train" / "more" / "lenet-4_40.ckpt"


def test_a_link_to_a_folder_above_it_is_refused_in_one_line(linked, tmp_path):
    (tmp_path / "elsewhere" / "train" / "back").symlink_to(linked, target_is_directory=True)  # through train/
    for call in (checkpoint_tree, table, lambda folder: resolve("best", folder)):
        with pytest.raises(CheckpointError) as error:
            call(linked)
        assert str(error.value) == (
            f"{os.path.join('ckpt', 'train', 'back')} is a link to {os.path.join('ckpt')}, a folder that holds it, "
            f"so searching --ckpt_dir {linked} would never end; remove the link, or point it at another folder")


def test_two_links_to_one_folder_are_no_loop(linked, tmp_path):
    (linked / "latest").symlink_to(tmp_path / "elsewhere" / "train", target_is_directory=True)
    names = sorted(p.relative_to(linked).as_posix() for p in checkpoint_tree(linked))
    assert names == ["latest/lenet-2_20.ckpt", "latest/lenet-3_30.safetensors", "lenet-1_10.ckpt",
                     "train/lenet-2_20.ckpt", "train/lenet-3_30.safetensors"]


def test_a_dangling_link_or_a_folder_named_like_a_checkpoint_is_not_one(linked, tmp_path):
    (linked / "lenet-9_90.ckpt").symlink_to(tmp_path / "removed.ckpt")
    (linked / "lenet-8_80.ckpt").mkdir()
    assert all_checkpoints(linked) == [linked / "lenet-1_10.ckpt"]
    assert newest_checkpoint(linked) == linked / "lenet-1_10.ckpt"
    assert regular_checkpoints(linked) == [linked / "lenet-1_10.ckpt"]
    assert len(checkpoint_tree(linked)) == 3


# ---- best and latest, through the real script ----

def stored(path):
    return run_info(read_checkpoint(path))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["infer", "export", "resume"])
def test_best_is_the_highest_stored_accuracy_in_either_format_for_every_command(ckpt_then_safetensors_run,
                                                                                small_mnist, command):
    run_dir = ckpt_then_safetensors_run
    files = [p for p in (run_dir / "run").iterdir() if p.suffix in (".ckpt", ".safetensors")]
    accuracy = {p: stored(p).get("acc", -1) for p in files}
    top = max(accuracy.values())
    expected = sorted(p for p in files if accuracy[p] == top and "-best." in p.name)[0]  # a -best file holds it
    extra = {"infer": [], "export": ["--file_name", f"best_{command}"],
             "resume": ["--steps_per_epoch", "1", "--num_epochs", "1", "--ckpt_dir", "run_resume"]}[command]
    ckpt_dir = ["--ckpt_dir", "run"] if command != "resume" else []
    args = [command, "--ckpt", "best", *ckpt_dir, *extra]
    if command == "resume":  # resume writes into its --ckpt_dir: read from a copy
        shutil.copytree(run_dir / "run", run_dir / "run_resume", dirs_exist_ok=True)
        expected = run_dir / "run_resume" / expected.name
    if command != "export":
        args += ["--data_url", str(small_mnist)]
    result = run_script(run_dir, *args)
    assert result.returncode == 0, result.stderr
    rel = os.path.relpath(expected, run_dir)
    assert f"Using {rel} (best: the highest stored accuracy, {top:.4f}" in result.stdout
    if command == "infer":
        assert_saved_the_figures(result)


@pytest.mark.slow
def test_latest_is_the_furthest_intact_position_and_skips_damaged_and_foreign_files(ckpt_then_safetensors_run,
                                                                                   small_mnist):
    run_dir = ckpt_then_safetensors_run
    folder = run_dir / "latest"
    shutil.copytree(run_dir / "run", folder)
    (folder / "x.ckpt").write_bytes(b"")  # empty, and the newest file
    newest = folder / "lenet-3_20.safetensors"
    furthest = stored(newest)
    for command in ("infer", "export"):
        args = [command, "--ckpt_dir", "latest"] + (["--data_url", str(small_mnist)] if command == "infer"
                                                   else ["--file_name", "latest_model"])
        result = run_script(run_dir, *args)
        assert result.returncode == 0, result.stderr
        assert (f"Using latest/lenet-3_20.safetensors (latest: the furthest position, epoch 3, global step "
                f"{furthest['step_num']}") in result.stdout
        if command == "infer":
            assert_saved_the_figures(result)
    listing = run_script(run_dir, "list", "--ckpt_dir", "latest").stdout
    assert re.search(r"^x\.ckpt .* NO: damaged$", listing, re.MULTILINE)


@pytest.mark.slow
def test_infer_takes_a_path(one_run_per_format, small_mnist):
    """--ckpt best and latest: the two tests above, with which file each picks."""
    result = run_script(one_run_per_format, "infer", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt",
                        "--ckpt", "safetensors/lenet-best.safetensors")
    assert result.returncode == 0, result.stderr
    assert_saved_the_figures(result)


@pytest.mark.slow
def test_infer_uses_a_folder_that_holds_only_a_best_file(ckpt_then_safetensors_run, small_mnist):
    run_dir = ckpt_then_safetensors_run
    (run_dir / "only_best").mkdir(exist_ok=True)
    shutil.copy2(run_dir / "run" / "lenet-best.ckpt", run_dir / "only_best" / "lenet-best.ckpt")
    result = run_script(run_dir, "infer", "--ckpt_dir", "only_best", "--data_url", str(small_mnist))
    assert result.returncode == 0, result.stderr
    assert "Using only_best/lenet-best.ckpt (latest: the furthest position" in result.stdout


@pytest.mark.slow
def test_an_empty_folder_has_no_checkpoint_yet(tmp_path):
    (tmp_path / "empty").mkdir()
    for command in ("infer", "export", "resume"):
        result = run_script(tmp_path, command, "--ckpt_dir", "empty")
        assert result.returncode == 1
        assert one_error_line(result) == ("error: no checkpoint in empty yet: run 'python main.py train' first, "
                                          "or pass --ckpt_dir")
    result = run_script(tmp_path, "list", "--ckpt_dir", "empty")
    assert result.returncode == 0 and result.stdout.strip() == "no checkpoints in empty"


# ---- the list ----

@pytest.mark.slow
def test_list_sorts_by_position(ckpt_then_safetensors_run):
    result = run_script(ckpt_then_safetensors_run, "list", "--ckpt_dir", "run")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names[0] == "lenet-best.ckpt"  # epoch 1's best; rotation kept the newest five regular files
    assert [name for name in names if "-best." not in name] == [
        "lenet-2_16.safetensors", "lenet-2_20.safetensors", "lenet-3_5.safetensors", "lenet-3_14.safetensors",
        "lenet-3_20.safetensors"]  # by name, lenet-3_14 would come before lenet-3_5


@pytest.mark.slow
def test_list_shows_position_metrics_and_integrity(one_run_per_format):
    damaged = one_run_per_format / "ckpt" / "lenet-1_10.ckpt"
    original = damaged.read_bytes()
    damaged.chmod(0o600)
    damaged.write_bytes(original[:len(original) // 2])
    try:
        result = run_script(one_run_per_format, "list", "--ckpt_dir", "ckpt")
    finally:
        damaged.write_bytes(original)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "epoch", "global", "step", "acc", "loss", "best", "acc", "intact"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"lenet-1_10.ckpt", "lenet-1_20.ckpt", "lenet-2_10.ckpt", "lenet-2_20.ckpt",
                         "lenet-best.ckpt"}
    assert rows["lenet-2_20.ckpt"][:3] == ["lenet-2_20.ckpt", "2", "40"] and rows["lenet-2_20.ckpt"][-1] == "yes"
    assert re.fullmatch(r"0\.\d{4}", rows["lenet-2_20.ckpt"][3])
    assert rows["lenet-1_10.ckpt"][-2:] == ["NO:", "damaged"]
    assert rows["lenet-2_10.ckpt"][3:6] == ["-", "-", rows["lenet-1_20.ckpt"][5]]  # mid-epoch: best so far


@pytest.mark.slow
def test_the_script_trains_into_a_linked_folder_then_lists_and_infers_from_it(tmp_path, small_mnist):
    """As a user links ckpt/train to another disk: every command searches it like a real folder."""
    elsewhere = tmp_path / "elsewhere" / "train"
    elsewhere.mkdir(parents=True)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "train").symlink_to(elsewhere, target_is_directory=True)
    data = ["--data_url", str(small_mnist)]
    trained = run_script(tmp_path, "train", "--steps_per_epoch", "3", "--num_epochs", "1", "--no_progress", *data)
    assert trained.returncode == 0, trained.stderr
    assert (elsewhere / "lenet-best.ckpt").exists()
    listing = run_script(tmp_path, "list")
    assert listing.returncode == 0 and re.search(r"^train/lenet-1_3\.ckpt ", listing.stdout, re.M), listing.stdout
    inferred = run_script(tmp_path, "infer", "--ckpt", "best", "--no_progress", *data)
    assert inferred.returncode == 0, inferred.stderr
    assert "Using ckpt/train/lenet-best.ckpt (best: the highest stored accuracy" in inferred.stdout
