"""main.py run as a user runs it, in a scratch working directory."""
import hashlib
import re

from conftest import run_script
import pytest


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


def accuracies(stdout):
    """The test accuracy of each epoch, from the lines LossMonitor prints under Model.fit."""
    return {int(epoch): float(acc) for epoch, acc in
            re.findall(r"Eval result: epoch (\d+), metrics: .*'acc': ([0-9.]+)", stdout)}


def test_full_tutorial_reaches_the_accuracy_floors(tmp_path):
    cwd = tmp_path
    result = run_script(cwd, "--train_url", "results")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    acc = accuracies(out)
    assert acc[2] >= 0.97 and acc[4] >= 0.975, out  # the floors the notebook's prose states
    assert re.findall(r"epoch: (\d+) step: 1875", out) == ["1", "2", "3", "4"]
    assert "Network parameters not loaded: []" in out and "Optimizer parameters not loaded: []" in out
    assert ("Checkpoints after first training:\nlenet-1_1875.ckpt\nlenet-2_1875.ckpt\nlenet-best.ckpt\n"
            "lenet-graph.meta\n") in out
    assert ("Checkpoints after resuming training:\nlenet-1_1875.ckpt\nlenet-2_1875.ckpt\nlenet-best.ckpt\n"
            "lenet-graph.meta\nlenet_1-3_1875.ckpt\nlenet_1-4_1875.ckpt\nlenet_1-best.ckpt\n"
            "lenet_1-graph.meta\n") in out
    assert sorted(acc) == [1, 2, 3, 4]
    figures = ["confusion_matrix.png", "misclassified.png", "prediction.png", "training_curves.png"]
    assert all((cwd / "images" / name).stat().st_size > 10_000 for name in figures)
    assert sorted(p.name for p in (cwd / "results").iterdir() if p.name != ".train_url_copies") == [
        "confusion_matrix.png", "lenet-1_1875.ckpt", "lenet-2_1875.ckpt", "lenet-best.ckpt", "lenet-graph.meta",
        "lenet_1-3_1875.ckpt", "lenet_1-4_1875.ckpt", "lenet_1-best.ckpt", "lenet_1-graph.meta",
        "misclassified.png", "prediction.png", "training_curves.png"]
    best = re.search(r"Test accuracy of ckpt/lenet_1-best.ckpt: (0\.\d+) \(\d+ of 10000 wrong\)", out)
    assert best and float(best[1]) == max(acc[3], acc[4])  # the most accurate epoch of the resumed run
    our_warnings = [line for line in result.stderr.splitlines()
                    if "Warning" in line and re.search(r"(main|mnist_data|machinery/\w+)\.py", line)]
    assert not our_warnings
    assert "deprecated" not in result.stderr.replace("getName() is deprecated", "")


def digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_a_second_run_keeps_the_first_runs_checkpoints(tmp_path, small_mnist):
    cwd = tmp_path
    first = run_script(cwd, "--steps_per_epoch", "3", "--data_url", str(small_mnist))
    assert first.returncode == 0, first.stderr
    before = digest(cwd / "ckpt")
    second = run_script(cwd, "--steps_per_epoch", "3", "--data_url", str(small_mnist))
    assert second.returncode == 0, second.stderr
    after = digest(cwd / "ckpt")
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == [
        "lenet_2-1_3.ckpt", "lenet_2-2_3.ckpt", "lenet_2-best.ckpt", "lenet_2-graph.meta",
        "lenet_3-3_3.ckpt", "lenet_3-4_3.ckpt", "lenet_3-best.ckpt", "lenet_3-graph.meta"]
    assert "Loaded ckpt/lenet_2-2_3.ckpt (epoch 2)" in second.stdout


def test_help_describes_every_option_with_its_default(tmp_path):
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--data_url", "--train_url", "--device_target", "--ckpt_dir", "--steps_per_epoch"):
        assert option in result.stdout
    assert result.stdout.count("default:") >= 5
