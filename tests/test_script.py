"""main.py run as a user runs it, in a scratch working directory."""
import hashlib
import re

import pytest

from conftest import run_script


def metrics(stdout):
    return [float(acc) for acc in re.findall(r"'acc': (?:np\.float64\()?([0-9.]+)", stdout)]


def test_full_tutorial_reaches_the_accuracy_floors(tmp_path):
    cwd = tmp_path
    result = run_script(cwd, "--train_url", "results")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    first, resumed = metrics(out)
    assert first >= 0.97 and resumed >= 0.975, out
    assert re.findall(r"epoch: (\d+) step: 1875", out) == ["1", "2", "3", "4"]
    assert "Network parameters not loaded: []" in out
    assert "Checkpoint files of this run: lenet-1_1875.ckpt lenet-2_1875.ckpt lenet-graph.meta" in out
    assert "Checkpoint files of this run: lenet_1-3_1875.ckpt lenet_1-4_1875.ckpt lenet_1-graph.meta" in out
    assert (cwd / "images" / "prediction.png").stat().st_size > 10_000
    assert sorted(p.name for p in (cwd / "results").iterdir()) == [
        "lenet-1_1875.ckpt", "lenet-2_1875.ckpt", "lenet-graph.meta",
        "lenet_1-3_1875.ckpt", "lenet_1-4_1875.ckpt", "lenet_1-graph.meta", "prediction.png"]
    our_warnings = [line for line in result.stderr.splitlines()
                    if "Warning" in line and re.search(r"(main|mnist_data|cloud_storage|plotting)\.py", line)]
    assert not our_warnings
    assert "deprecated" not in result.stderr.replace("getName() is deprecated", "")


def digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_a_second_run_keeps_the_first_runs_checkpoints(tmp_path):
    cwd = tmp_path
    first = run_script(cwd, "--steps_per_epoch", "3")
    assert first.returncode == 0, first.stderr
    before = digest(cwd / "ckpt")
    second = run_script(cwd, "--steps_per_epoch", "3")
    assert second.returncode == 0, second.stderr
    after = digest(cwd / "ckpt")
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == [
        "lenet_2-1_3.ckpt", "lenet_2-2_3.ckpt", "lenet_2-graph.meta",
        "lenet_3-3_3.ckpt", "lenet_3-4_3.ckpt", "lenet_3-graph.meta"]
    assert "Loaded ckpt/lenet_2-2_3.ckpt (epoch 2)" in second.stdout


def error_lines(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines


@pytest.mark.parametrize("args, message", [
    (["--data_url", "nowhere"], "error: data directory nowhere cannot be used: it does not exist"),
    (["--data_url", "main.py"], "error: data directory main.py cannot be used: it is a file"),
    (["--data_url", "obs://bucket/mnist"], "error: --data_url obs://bucket/mnist needs ModelArts' moxing"),
    (["--train_url", "s3://bucket/out"], "error: --train_url s3://bucket/out needs ModelArts' moxing"),
    (["--device_target", "GPU"], "error: device_target GPU is not available here; available: CPU"),
    (["--ckpt_dir", "main.py/ckpt"], "error: cannot create --ckpt_dir main.py/ckpt: Not a directory"),
])
def test_bad_input_gives_one_line_and_no_traceback(tmp_path, args, message):
    cwd = tmp_path
    (cwd / "main.py").write_text("not a folder")
    result = run_script(cwd, *args)
    assert result.returncode == 1
    assert error_lines(result) == [message] or error_lines(result)[0].startswith(message)
    assert "Traceback" not in result.stderr
    assert not (cwd / "ckpt").exists() or not any((cwd / "ckpt").iterdir())


def test_damaged_data_stops_before_training(tmp_path):
    cwd = tmp_path
    data = cwd / "data"
    (data / "train").mkdir(parents=True)
    (data / "test").mkdir()
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            (data / split / f"{prefix}-{kind}").write_bytes(b"")
    result = run_script(cwd, "--data_url", "data")
    assert result.returncode == 1
    assert error_lines(result)[0].startswith("error: data/train/train-images-idx3-ubyte is not an MNIST image file")
    assert "epoch:" not in result.stdout


def test_an_invalid_number_is_refused_by_the_parser(tmp_path):
    result = run_script(tmp_path, "train", "--num_epochs", "0")
    assert result.returncode == 2
    assert ("main.py train: error: argument --num_epochs: must be a positive integer, got 0"
            in result.stderr.splitlines())


def test_help_describes_every_option_with_its_default(tmp_path):
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--data_url", "--train_url", "--device_target", "--ckpt_dir", "--steps_per_epoch"):
        assert option in result.stdout
    assert result.stdout.count("default:") >= 5
