"""main.py run as a user runs it, in a scratch working directory."""
import hashlib
import re

from conftest import run_script


def metrics(stdout):
    return [float(acc) for acc in re.findall(r"Metrics: \{'acc': ([0-9.]+)", stdout)]


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
    assert re.findall(r"Eval result: epoch (\d+)", out) == ["1", "2", "3", "4"]
    figures = ["confusion_matrix.png", "misclassified.png", "prediction.png", "training_curves.png"]
    assert all((cwd / "images" / name).stat().st_size > 10_000 for name in figures)
    assert sorted(p.name for p in (cwd / "results").iterdir()) == [
        "confusion_matrix.png", "lenet-1_1875.ckpt", "lenet-2_1875.ckpt", "lenet-graph.meta",
        "lenet_1-3_1875.ckpt", "lenet_1-4_1875.ckpt", "lenet_1-graph.meta", "misclassified.png",
        "prediction.png", "training_curves.png"]
    assert re.search(r"Test accuracy of ckpt/lenet_1-4_1875.ckpt: 0\.9\d+ \(\d+ of 10000 wrong\)", out)
    our_warnings = [line for line in result.stderr.splitlines()
                    if "Warning" in line and re.search(r"(main|mnist_data|cloud_storage|plotting|monitoring|checkpoint_files)\.py", line)]
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


def test_help_describes_every_option_with_its_default(tmp_path):
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--data_url", "--train_url", "--device_target", "--ckpt_dir", "--steps_per_epoch"):
        assert option in result.stdout
    assert result.stdout.count("default:") >= 5
