"""The benchmark scripts run on a tiny subset and print their tables (nothing here is timed)."""
import re
import subprocess
import sys

from conftest import ROOT
import pytest


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


def run(script, *args):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_compare_pytorch_prints_the_table_and_saves_the_plot(tmp_path):
    out = run("compare_pytorch.py", "--repeats", "1", "--epochs", "2", "--steps_per_epoch", "5",
              "--plot", str(tmp_path / "b.png"))
    for label in ("training epoch, s", "training steps per second", "training step on one fixed batch",
                  "evaluation over the test set",
                  "save one checkpoint", "load one checkpoint", "process start to first step",
                  "peak resident memory", "one-epoch train, start to exit"):
        assert re.search(rf"\| {re.escape(label)}.*\| +\d+\.\d\d \| +\d+\.\d\d \| +\d+\.\d\d \|", out), label
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_profile_step_breaks_a_step_down():
    out = run("profile_step.py", "--steps", "20")
    # every kernel of the step, from MindSpore's profiler, with the oneDNN implementation where oneDNN runs it
    assert re.search(r"\| Conv2DBackpropFilter +\| +2 \| +\d+\.\d\d \| oneDNN convolution \S+", out)
    assert re.search(r"\| MaxPool3DGradWithArgmax +\| +2 \| +\d+\.\d\d \| MindSpore", out)
    assert re.search(r"framework between kernels, Python, callbacks +\| +\| +-?\d+\.\d\d \|", out)
    # the pipeline's CPU time while it runs beside the training steps, from its threads (Linux)
    assert re.search(r"\| the data pipeline's threads +\| +\d+\.\d\d \|", out)


def test_checkpoint_cost_compares_a_save_with_a_step():
    out = run("checkpoint_cost.py", "--repeats", "5")
    assert re.search(r"save, safetensors \(CRC, fsync, rename\) +\d+\.\d\d +\d+\.\d\d", out)
