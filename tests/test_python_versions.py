"""Every supported Python runs the tutorial, from a venv built with the README's own install
command (started in the background by conftest.py): the short tutorial, a training run
interrupted by SIGTERM and continued with --auto_resume, and infer."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import SUPPORTED_PYTHONS, VENV_BUILDS, find_python, readme_install_command

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


INSTALL_TIMEOUT_S = 900


def test_the_readme_install_command_is_the_one_built():
    assert readme_install_command() == "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"


@pytest.mark.parametrize("version", SUPPORTED_PYTHONS)
def test_the_tutorial_runs_on_python(version, small_mnist):
    if find_python(version) is None:
        pytest.skip(f"no Python {version} interpreter here (looked in $PYENV_ROOT/versions/{version}.*)")
    folder, build = VENV_BUILDS[version]
    assert build.wait(timeout=INSTALL_TIMEOUT_S) == 0, (folder / "install.log").read_text()[-3000:]
    python = str(folder / ".venv" / "bin" / "python")
    env = {**os.environ, "MPLBACKEND": "Agg"}

    def run(*args):
        return subprocess.run([python, "-W", "default", "main.py", *args, "--data_url", str(small_mnist)],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=600)

    version_line = subprocess.run([python, "--version"], capture_output=True, text=True).stdout
    assert version_line.startswith(f"Python {version}.")
    tutorial = run("--steps_per_epoch", "3", "--ckpt_dir", "tutorial")
    assert tutorial.returncode == 0, tutorial.stderr[-3000:]
    assert "epoch: 4 step: 3" in tutorial.stdout
    assert re.search(r"Test accuracy of .*lenet_1-best\.ckpt", tutorial.stdout)

    train = [python, "-W", "default", "main.py", "train", "--data_url", str(small_mnist), "--steps_per_epoch", "6",
             "--save_steps", "2", "--num_epochs", "2"]
    process = subprocess.Popen(train, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (folder / "ckpt" / "train" / "lenet-1_2.ckpt").exists():  # train's default folder
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Training stopped by SIGTERM" in err, err[-2000:]
    resumed = subprocess.run(train + ["--auto_resume"], cwd=folder, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Continuing from ckpt/train/lenet-1_" in resumed.stdout
    assert (folder / "ckpt" / "train" / "lenet-2_6.ckpt").exists()
    infer = run("infer", "--ckpt", "best")
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert "Test accuracy of ckpt/train/lenet-best.ckpt" in infer.stdout
    for result in (tutorial, resumed, infer):
        ours = [line for line in result.stderr.splitlines() if "DeprecationWarning" in line and str(folder) in line
                and "/.venv/" not in line]
        assert not ours, ours
