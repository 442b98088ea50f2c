"""The Windows and macOS branches, run here by simulation (tests/portability_shim.py), and the
device options: --device_id, DEVICE_ID, the CUDA check."""
import ctypes
import os
import signal
import subprocess
import sys

import pytest

from machinery import devices
from machinery.errors import UsageError
from machinery.lesson import load_definitions
from machinery.options import parse_args
from conftest import ROOT, run_script, wait_for

SHIM = ROOT / "tests" / "portability_shim.py"
WINDOWS_LIKE = "O_DIRECTORY,SIGTERM,proc,drives"


def shim(cwd, simulate, *args):
    env = {**os.environ, "SIMULATE": simulate, "ONEDNN_MAX_CPU_ISA": "AVX2"}  # speed only; /proc may be "absent"
    return [sys.executable, "-W", "default", str(SHIM), *args], env


@pytest.mark.slow
def test_saving_resuming_and_listing_work_without_the_posix_only_facilities(tmp_path, small_mnist):
    ckpt = tmp_path / "elsewhere" / "ckpt"  # outside the working folder: "another drive"
    work = tmp_path / "work"
    work.mkdir()
    args = ["train", "--data_url", str(small_mnist), "--ckpt_dir", str(ckpt), "--steps_per_epoch", "6",
            "--save_steps", "2", "--num_epochs", "2", "--seed", "3"]
    command, env = shim(work, WINDOWS_LIKE, *args)
    # Windows stops a process from outside with TerminateProcess, which cannot be caught: SIGKILL here
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(process, (ckpt / "lenet-1_4.ckpt").exists, "lenet-1_4.ckpt", timeout=300, interval=0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = subprocess.run(command + ["--auto_resume"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Simulated: O_DIRECTORY, SIGTERM, drives, proc" in resumed.stdout
    assert f"Continuing from {ckpt / 'lenet-1_'}" in resumed.stdout  # absolute: relpath "failed"
    assert (ckpt / "lenet-2_6.ckpt").exists() and (ckpt / "lenet-best.ckpt").exists()
    listing = subprocess.run(shim(work, WINDOWS_LIKE)[0] + ["list", "--ckpt_dir", str(ckpt)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr[-3000:]
    rows = [line for line in listing.stdout.splitlines() if line.startswith("lenet")]
    assert any(row.startswith("lenet-2_6.ckpt") for row in rows) and all(row.endswith("yes") for row in rows)
    assert "Traceback" not in resumed.stderr + listing.stderr, (resumed.stderr[-1500:], listing.stderr[-1500:])


def test_the_directory_fsync_is_skipped_only_where_the_os_has_none(tmp_path, monkeypatch):
    from machinery import checkpoint_files
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a: opened.append(str(path)) or real_open(path, flags, *a))
    (tmp_path / ".saving-x").write_bytes(b"data")
    checkpoint_files.publish_durably(tmp_path / ".saving-x", tmp_path / "x")
    assert opened == [str(tmp_path / ".saving-x"), str(tmp_path)]
    monkeypatch.delattr(os, "O_DIRECTORY")
    opened.clear()
    (tmp_path / ".saving-y").write_bytes(b"data")
    checkpoint_files.publish_durably(tmp_path / ".saving-y", tmp_path / "y")
    assert opened == [str(tmp_path / ".saving-y")] and (tmp_path / "y").read_bytes() == b"data"


# --device_id, DEVICE_ID, and the CUDA check

def args_for(*argv):
    return parse_args(list(argv))


def check_device(args, load=ctypes.CDLL):
    devices.check_device(args, load_definitions().available_devices, load=load)


def test_device_id_is_ignored_on_cpu_with_a_clear_line(capsys):
    args = args_for("train", "--device_target", "CPU", "--device_id", "3")
    check_device(args)
    assert args.device_id is None
    assert "Ignoring device id 3: MindSpore's CPU backend is one device" in capsys.readouterr().out


def test_device_id_comes_from_the_environment_as_in_the_original(monkeypatch):
    monkeypatch.setenv("DEVICE_ID", "2")
    args = args_for("train", "--device_target", "GPU")
    check_device(args, load=lambda name: None)  # every CUDA library "found"
    assert args.device_id == 2
    args = args_for("train", "--device_target", "GPU", "--device_id", "1")  # the option wins
    check_device(args, load=lambda name: None)
    assert args.device_id == 1
    monkeypatch.setenv("DEVICE_ID", "one")
    with pytest.raises(UsageError, match="DEVICE_ID must be 0 or a positive integer, got 'one'"):
        check_device(args_for("train", "--device_target", "GPU"), load=lambda name: None)


def test_msrun_assigns_the_devices(monkeypatch):
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    monkeypatch.setenv("DEVICE_ID", "5")  # msrun's own business: not read
    args = args_for("train", "--device_target", "CPU")
    check_device(args)
    assert args.device_id is None
    with pytest.raises(UsageError, match="msrun assigns a device to each worker itself"):
        check_device(args_for("train", "--device_id", "1"))


def test_the_cuda_check_names_what_is_missing():
    def load(name):
        if name in ("libcudnn.so.8", "libnvrtc.so.11.2"):
            raise OSError(f"{name}: cannot open shared object file")
    with pytest.raises(UsageError) as error:
        check_device(args_for("train", "--device_target", "GPU"), load=load)
    assert "needs the NVIDIA driver, CUDA 11.6 and cuDNN 8.5" in str(error.value)
    assert "cannot find libnvrtc.so.11.2 (NVRTC of CUDA 11.2 or later), libcudnn.so.8 (cuDNN 8)" in str(error.value)


@pytest.mark.parametrize("argv, code, line", [
    (["--device_target", "GPU"], 1, "error: MindSpore 2.10.0 on GPU needs the NVIDIA driver, CUDA 11.6 and cuDNN 8.5; "
                                    "the loader cannot find libcuda.so.1 (the NVIDIA driver)"),
    (["--device_id", "-1"], 2, "error: argument --device_id: must be 0 or a positive integer, got -1"),
])
@pytest.mark.slow
def test_device_errors_of_the_script_are_one_line(tmp_path, argv, code, line):
    result = run_script(tmp_path, "train", *argv)
    assert result.returncode == code
    # (-W default shows MindSpore's own DeprecationWarning at exit, after our line)
    errors = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_script_runs_with_a_device_id_on_cpu(tmp_path, small_mnist):
    result = run_script(tmp_path, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "2",
                        "--num_epochs", "1", "--no_eval", "--device_id", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Ignoring device id 1" in result.stdout and "Device: CPU" in result.stdout


def test_a_gpu_without_cuda_11_is_named_when_the_best_device_is_picked(capsys, monkeypatch):
    monkeypatch.setattr(devices.platform, "system", lambda: "Linux")

    def load(name):  # a driver, but no CUDA 11 libraries
        if name != "libcuda.so.1":
            raise OSError(name)
    check_device(args_for("train"), load=load)
    out = capsys.readouterr().out
    assert out.startswith("Not using the GPU: MindSpore 2.10.0 on GPU needs the NVIDIA driver, CUDA 11.6")
    assert "libcuda.so.1" not in out and "libcudnn.so.8 (cuDNN 8)" in out


@pytest.mark.parametrize("argv, env, code, line", [
    (["--help"], {}, 0, "usage: main.py"),
    (["train", "--num_epochs", "0"], {}, 2, "error: argument --num_epochs: must be a positive integer, got 0"),
    (["train"], {"DEVICE_ID": "x"}, 1, "error: the environment variable DEVICE_ID must be 0 or a positive integer, "
                                       "got 'x'"),
])
def test_help_and_bad_input_answer_before_mindspore_loads(tmp_path, argv, env, code, line):
    """With the no-MindSpore stand-in first on the path, any import of MindSpore would fail: these
    answers come before it, so at once, and with no MindSpore warning before our line."""
    standin = ROOT / "tests" / "no_mindspore_standin"
    result = subprocess.run([sys.executable, "-W", "default", str(ROOT / "main.py"), *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env, "PYTHONPATH": str(standin)})
    assert result.returncode == code, result.stderr
    assert (result.stdout if code == 0 else result.stderr).splitlines()[0].startswith(line), result
    assert code == 0 or len(result.stderr.splitlines()) == 1
