"""Issue 27's discovery cases: checkpoints behind linked folders count for list, 'latest' and 'best', and a
link back to a folder above it is refused in one line. Real checkpoint files, real links."""
import os

import mindspore as ms
import numpy as np
import pytest

from machinery.checkpoint_files import CheckpointError, all_checkpoints, checkpoint_tree, newest_checkpoint, \
    regular_checkpoints, resolve, table


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
