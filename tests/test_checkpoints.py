"""Best checkpoints, integrity checks on load, safetensors, and the list, infer and resume commands."""
import re

import mindspore as ms
import numpy as np
import pytest

from machinery.checkpoint_files import read_checkpoint, run_info
from conftest import assert_saved_the_figures, run_script


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_mnist):
    """A folder with checkpoints from `train`, in both formats."""
    cwd = tmp_path_factory.mktemp("trained")
    for fmt in ("ckpt", "safetensors"):
        result = run_script(cwd, "train", "--data_url", str(small_mnist), "--ckpt_dir", fmt,
                            "--ckpt_format", fmt, "--num_epochs", "2", "--save_steps", "10",
                            "--train_url", f"published_{fmt}")
        assert result.returncode == 0, result.stderr
    return cwd


@pytest.mark.slow
def test_train_url_receives_the_checkpoints(trained):
    for fmt in ("ckpt", "safetensors"):
        published = {p.name: p.read_bytes() for p in (trained / f"published_{fmt}").iterdir()
                     if p.name != ".train_url_copies"}  # the names copied there, which later copies may replace
        expected = {p.name: p.read_bytes() for p in (trained / fmt).glob(f"lenet-*.{fmt}")}
        expected["train_log.csv"] = (trained / fmt / "train_log.csv").read_bytes()  # and the run's curves
        assert published.pop("train_curves.png").startswith(b"\x89PNG")
        assert published == expected
        assert f"lenet-best.{fmt}" in published


@pytest.mark.slow
def test_list_shows_position_metrics_and_integrity(trained):
    damaged = trained / "ckpt" / "lenet-1_10.ckpt"
    original = damaged.read_bytes()
    damaged.chmod(0o600)
    damaged.write_bytes(original[:len(original) // 2])
    try:
        result = run_script(trained, "list", "--ckpt_dir", "ckpt")
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
def test_safetensors_files_are_readable_by_the_safetensors_package(trained):
    from safetensors.numpy import load_file
    path = trained / "safetensors" / "lenet-2_20.safetensors"
    tensors = load_file(path)
    ours = {name: value.asnumpy() for name, value in read_checkpoint(path).items()}
    assert tensors.keys() == ours.keys()
    for name in ours:
        np.testing.assert_array_equal(tensors[name], ours[name], err_msg=name)
    # the same run in the ckpt format holds the same numbers
    same_run = {name: value.asnumpy() for name, value in read_checkpoint(trained / "ckpt" / "lenet-2_20.ckpt").items()}
    for name in ours:
        np.testing.assert_array_equal(same_run[name], ours[name], err_msg=name)


@pytest.mark.slow
def test_infer_takes_a_path(trained, small_mnist):
    """`--ckpt best` and `latest`: test_edge_cases.py's test_2 tests, with which file each picks."""
    result = run_script(trained, "infer", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt",
                        "--ckpt", "safetensors/lenet-best.safetensors")
    assert result.returncode == 0, result.stderr
    assert_saved_the_figures(result)


@pytest.mark.slow
def test_resume_command_continues_the_epoch_count(trained, small_mnist):
    result = run_script(trained, "resume", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt",
                        "--ckpt", "ckpt/lenet-2_20.ckpt", "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "Loaded ckpt/lenet-2_20.ckpt (epoch 2)" in result.stdout
    assert "epoch: 3 step: 20" in result.stdout
    assert "Checkpoints after resuming training:\n" in result.stdout
    assert "\nlenet_1-3_20.ckpt\nlenet_1-best.ckpt\nlenet_1-graph.meta\n" in result.stdout


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
def test_a_bad_checkpoint_gives_one_line(trained, small_mnist, tmp_path, make, problem):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(make((trained / "ckpt" / "lenet-best.ckpt").read_bytes()))
    result = run_script(trained, "infer", "--data_url", str(small_mnist), "--ckpt", str(bad))
    assert result.returncode == 1
    assert f"error: {bad}: {problem}; use another checkpoint file" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "[ERROR]" not in result.stderr


@pytest.mark.slow
def test_a_checkpoint_of_another_network_is_refused(trained, small_mnist, tmp_path, cpu):
    other = tmp_path / "other.ckpt"
    ms.save_checkpoint(cpu.nn.Conv2d(1, 8, 3), str(other), crc_check=True)
    wrong_shape = tmp_path / "wrong_shape.ckpt"
    params = read_checkpoint(trained / "ckpt" / "lenet-best.ckpt")
    params["fc3.weight"] = ms.Parameter(ms.Tensor(np.zeros((12, 84), np.float32)), name="fc3.weight")
    ms.save_checkpoint([{"name": k, "data": v} for k, v in params.items()], str(wrong_shape), crc_check=True)
    for path, message in [(other, "has no parameter conv1.weight; it was not saved from LeNet5"),
                          (wrong_shape, "parameter fc3.weight has shape (12, 84), LeNet5 needs (10, 84)")]:
        result = run_script(trained, "infer", "--data_url", str(small_mnist), "--ckpt", str(path))
        assert result.returncode == 1
        assert f"error: {path}: {message}" in result.stderr.splitlines()
        assert "Traceback" not in result.stderr

