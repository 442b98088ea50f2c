"""main.py run as a user runs it, in a scratch working directory."""
import hashlib
import re
import signal
import subprocess
import time

from conftest import run_script, script_command
from machinery.checkpoint_files import read_checkpoint, run_info
import pytest


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


def accuracies(stdout):
    """The test accuracy of each epoch, from the lines LossMonitor prints under Model.fit."""
    return {int(epoch): float(acc) for epoch, acc in
            re.findall(r"Eval result: epoch (\d+), metrics: .*'acc': ([0-9.]+)", stdout)}


def test_full_tutorial_reaches_the_accuracy_floors_then_the_readme_steps_work(project, small_mnist):
    """The whole tutorial on all of MNIST, in a scratch copy of the project with the default folders;
    then the README's other steps in the same folders, on a small MNIST."""
    cwd = project
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
    figures = ["confusion_matrix.png", "misclassified.png", "prediction.png"]
    assert all((cwd / "images" / name).stat().st_size > 10_000 for name in figures)
    assert sorted(p.name for p in (cwd / "results").iterdir() if p.name != ".train_url_copies") == [
        "confusion_matrix.png", "lenet-1_1875.ckpt", "lenet-2_1875.ckpt", "lenet-best.ckpt", "lenet-graph.meta",
        "lenet_1-3_1875.ckpt", "lenet_1-4_1875.ckpt", "lenet_1-best.ckpt", "lenet_1-graph.meta", "lenet_1.mindir",
        "misclassified.png", "prediction.png"]
    assert "Same parameters as the uninterrupted run, bit for bit: True" in out  # the sections beyond, too
    assert re.search(r"Exported ckpt/lenet_1-best.ckpt to ckpt/lenet_1.mindir", out)
    best = re.search(r"Test accuracy of ckpt/lenet_1-best.ckpt: (0\.\d+) \(\d+ of 10000 wrong\)", out)
    assert best and float(best[1]) == max(acc[3], acc[4])  # the most accurate epoch of the resumed run
    our_warnings = [line for line in result.stderr.splitlines()
                    if "Warning" in line and re.search(r"(main|mnist_data|machinery/\w+)\.py", line)]
    assert not our_warnings
    assert "deprecated" not in result.stderr.replace("getName() is deprecated", "")
    listing = the_readme_commands(cwd, ["--data_url", str(small_mnist)])
    assert {"lenet-best.ckpt", "lenet_1-4_1875.ckpt"} <= listing


def run(project, *args):
    """Run the project copy's main.py in `project`, as the README does; it must succeed."""
    result = run_script(project, *args, main="main.py")
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def the_readme_commands(project, data):
    """The README's steps after the tutorial (the script's or the notebook's), in the same folders,
    with a few steps per epoch: `train --auto_resume` stopped by Ctrl-C and started again, `list`,
    `infer --ckpt best`, `export --ckpt best` and `resume`. Each must succeed and leave the tutorial's
    files in ckpt/ as they were. Returns the names that `list` shows."""
    ckpt = project / "ckpt"
    tutorial_files = {p: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
    train = ["train", "--num_epochs", "2", "--save_steps", "2", "--steps_per_epoch", "5", "--auto_resume", *data]
    process = subprocess.Popen(script_command(*train, main="main.py"), cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (ckpt / "train" / "lenet-1_2.ckpt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.001)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode in (130, 143), err  # MindSpore's runtime may pass SIGINT on as SIGTERM
    assert "Starting a new run" in out
    assert re.search(r"To continue: python \S*main\.py train --auto_resume --num_epochs 2 ", err), err
    continued = run(project, *train)
    assert re.search(r"Continuing from ckpt/train/lenet-1_\d\.ckpt", continued.stdout)
    assert {p: p.read_bytes() for p in ckpt.iterdir() if p.is_file()} == tutorial_files  # untouched

    listing = run(project, "list").stdout
    rows = {line.split()[0] for line in listing.splitlines()[1:]}
    assert {"train/lenet-2_5.ckpt", "train/lenet-best.ckpt"} <= rows

    accuracy = {p: run_info(read_checkpoint(p)).get("acc", -1) for p in ckpt.rglob("*.ckpt")}
    best = max(accuracy.values())
    inferred = run(project, "infer", "--ckpt", "best", *data).stdout
    chosen = re.search(r"Using (\S+) \(best: the highest stored accuracy, (\d\.\d{4})", inferred)
    assert chosen and abs(float(chosen[2]) - best) < 1e-4
    assert chosen[1].endswith("-best.ckpt")
    exported = run(project, "export", "--ckpt", "best").stdout
    assert f"Exported {chosen[1]} to lenet5.mindir" in exported and (project / "lenet5.mindir").exists()
    resumed = run(project, "resume", "--steps_per_epoch", "3", "--num_epochs", "1", *data).stdout
    assert re.search(r"Using \S+ \(latest: the furthest position", resumed)
    assert "Checkpoints after resuming training:" in resumed
    return rows


def digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


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
        "lenet_3-3_3.ckpt", "lenet_3-4_3.ckpt", "lenet_3-best.ckpt", "lenet_3-graph.meta", "lenet_3.mindir"]
    assert "Loaded ckpt/lenet_2-2_3.ckpt (epoch 2)" in second.stdout
    # the listings show this run's files, not the first run's
    assert ("Checkpoints after first training:\nlenet_2-1_3.ckpt\nlenet_2-2_3.ckpt\nlenet_2-best.ckpt\n"
            "lenet_2-graph.meta\n") in second.stdout
    listing = second.stdout.split("Checkpoints after resuming training:\n")[1].split("Test accuracy")[0]
    assert listing.split() == ["lenet_2-1_3.ckpt", "lenet_2-2_3.ckpt", "lenet_2-best.ckpt", "lenet_2-graph.meta",
                               "lenet_3-3_3.ckpt", "lenet_3-4_3.ckpt", "lenet_3-best.ckpt", "lenet_3-graph.meta"]


def alike(text):
    """The distinct lines of `text`, with every number as #, the demos' random folder names as X, and
    runs of spaces as one: what two runs of the lesson print alike (test_jupyterlab.py)."""
    lines = set()
    for line in text.splitlines():
        line = re.sub(r"\b(crash|exact)-\w+", r"\1-X", line)
        line = re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line)
        line = " ".join(line.split())
        if line:
            lines.add(line)
    return lines


def test_help_describes_every_option_with_its_default(tmp_path):
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--data_url", "--train_url", "--device_target", "--ckpt_dir", "--steps_per_epoch"):
        assert option in result.stdout
    assert result.stdout.count("default:") >= 5
