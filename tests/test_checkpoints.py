"""Checkpoint files: the best file (it survives rotation, a continued run compares against the best it
inherited, a new run never overwrites an earlier one's), safetensors files that the safetensors package
reads, and the checkpoints refused in one line: damaged files, and those that do not fit LeNet5 (another
network, another shape, another dtype). Which file a command takes, and 'list': test_checkpoint_discovery.py."""
import re
import shutil

import mindspore as ms
import numpy as np
import pytest

from machinery.checkpoint_files import read_checkpoint, run_info
from conftest import one_error_line, run_script


def test_best_checkpoint_survives_rotation_and_keeps_the_highest_accuracy(cpu, small_mnist, tmp_path, capsys):
    config = cpu.TrainConfig(num_epochs=3, save_steps=2, seed=1, keep_checkpoint_max=2)
    cpu.train_resumable(cpu.LeNet5, cpu.create_dataset, small_mnist, tmp_path, config)
    accuracies = [float(a) for a in re.findall(r"acc (\d\.\d+)", capsys.readouterr().out)]
    best = run_info(read_checkpoint(tmp_path / "lenet-best.ckpt"))
    assert best["acc"] == pytest.approx(max(accuracies), abs=1e-4)
    assert best["epoch_num"] == 1 + accuracies.index(max(accuracies))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["lenet-3_18.ckpt", "lenet-3_20.ckpt",
                                                              "lenet-best.ckpt"]


def test_a_continued_run_compares_against_the_best_it_inherited(cpu, small_mnist, tmp_path, capsys):
    config = cpu.TrainConfig(num_epochs=1, seed=1)
    first = cpu.train_resumable(cpu.LeNet5, cpu.create_dataset, small_mnist, tmp_path, config)
    # Raise the stored best accuracy beyond reach, in a real checkpoint with a valid CRC.
    params = read_checkpoint(first)
    info = {key: value for key, value in run_info(params).items()}
    info["best_acc"] = 0.999
    for key in info:
        params.pop(key)
    first.chmod(0o600)
    ms.save_checkpoint(list({"name": k, "data": v} for k, v in params.items()), str(first),
                       append_dict=info, crc_check=True)
    best_before = (tmp_path / "lenet-best.ckpt").read_bytes()
    last = cpu.train_resumable(cpu.LeNet5, cpu.create_dataset, small_mnist, tmp_path,
                               cpu.TrainConfig(num_epochs=2, seed=1), auto_resume=True)
    assert "best acc 0.9990" in capsys.readouterr().out
    assert (tmp_path / "lenet-best.ckpt").read_bytes() == best_before  # epoch 2 did not beat 0.999
    assert run_info(read_checkpoint(last))["best_acc"] == pytest.approx(0.999)


@pytest.mark.slow
def test_a_new_run_never_overwrites_an_earlier_best_file(ckpt_then_safetensors_run, small_mnist):
    run_dir = ckpt_then_safetensors_run
    folder = run_dir / "b2"
    folder.mkdir()
    shutil.copy2(run_dir / "run" / "lenet-best.ckpt", folder / "lenet-best.ckpt")  # the best file alone
    before = (folder / "lenet-best.ckpt").read_bytes()
    for extra in ([], ["--auto_resume"]):
        result = run_script(run_dir, "train", "--data_url", str(small_mnist), "--ckpt_dir", "b2",
                            "--steps_per_epoch", "2", "--num_epochs", "1", *extra)
        assert result.returncode == 1
        assert one_error_line(result) == ("error: b2/lenet-best.ckpt belongs to an earlier run, and a new run "
                                          "would overwrite it; choose another --ckpt_dir, or move the file away")
        assert (folder / "lenet-best.ckpt").read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["lenet-best.ckpt"]


@pytest.mark.slow
def test_safetensors_files_are_readable_by_the_safetensors_package(one_run_per_format):
    from safetensors.numpy import load_file
    path = one_run_per_format / "safetensors" / "lenet-2_20.safetensors"
    tensors = load_file(path)
    ours = {name: value.asnumpy() for name, value in read_checkpoint(path).items()}
    assert tensors.keys() == ours.keys()
    for name in ours:
        np.testing.assert_array_equal(tensors[name], ours[name], err_msg=name)
    # the same run in the ckpt format holds the same numbers
    same_run = {name: value.asnumpy()
                for name, value in read_checkpoint(one_run_per_format / "ckpt" / "lenet-2_20.ckpt").items()}
    for name in ours:
        np.testing.assert_array_equal(same_run[name], ours[name], err_msg=name)


DAMAGED = "damaged or not a checkpoint (its format or CRC check failed)"


def flip_a_bit(data):
    data = bytearray(data)
    data[len(data) // 2] ^= 0x10
    return bytes(data)


@pytest.mark.parametrize("make, problem", [
    (lambda good: b"just some text, not a checkpoint\n", DAMAGED),
    (lambda good: good[:len(good) // 3], DAMAGED),
    (flip_a_bit, DAMAGED),
])
@pytest.mark.slow
def test_a_bad_checkpoint_gives_one_line(one_run_per_format, small_mnist, tmp_path, make, problem):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(make((one_run_per_format / "ckpt" / "lenet-best.ckpt").read_bytes()))
    result = run_script(one_run_per_format, "infer", "--data_url", str(small_mnist), "--ckpt", str(bad))
    assert result.returncode == 1
    assert f"error: {bad}: {problem}; use another checkpoint file" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "[ERROR]" not in result.stderr


@pytest.mark.slow
def test_a_checkpoint_of_another_network_is_refused(one_run_per_format, small_mnist, tmp_path, cpu):
    other = tmp_path / "other.ckpt"
    ms.save_checkpoint(cpu.nn.Conv2d(1, 8, 3), str(other), crc_check=True)
    wrong_shape = tmp_path / "wrong_shape.ckpt"
    params = read_checkpoint(one_run_per_format / "ckpt" / "lenet-best.ckpt")
    params["fc3.weight"] = ms.Parameter(ms.Tensor(np.zeros((12, 84), np.float32)), name="fc3.weight")
    ms.save_checkpoint([{"name": k, "data": v} for k, v in params.items()], str(wrong_shape), crc_check=True)
    for path, message in [(other, "has no parameter conv1.weight; it was not saved from LeNet5"),
                          (wrong_shape, "parameter fc3.weight has shape (12, 84), LeNet5 needs (10, 84)")]:
        result = run_script(one_run_per_format, "infer", "--data_url", str(small_mnist), "--ckpt", str(path))
        assert result.returncode == 1
        assert f"error: {path}: {message}" in result.stderr.splitlines()
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_integer_weights_of_the_right_shapes_are_refused_and_latest_skips_them(eight_step_run, tmp_path, small_mnist):
    """A checkpoint fits LeNet5 only with its shapes and its dtypes."""
    good = read_checkpoint(eight_step_run / "ckpt" / "train" / "lenet-2_4.ckpt")
    (tmp_path / "run").mkdir()
    shutil.copy2(eight_step_run / "ckpt" / "train" / "lenet-1_4.ckpt", tmp_path / "run" / "lenet-1_4.ckpt")
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
