"""Issue 14's edge cases, each run through the real script: nothing of the user's overwritten, the
same 'latest' and 'best' for every command, one line for every bad value, no option ignored."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mindspore as ms
import pytest

from machinery.checkpoint_files import read_checkpoint, run_info
from conftest import ROOT, assert_saved_the_figures, run_script, script_command


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_mnist):
    """One epoch of 20 steps in .ckpt (saves at steps 9, 18, 20), continued to 3 epochs in .safetensors."""
    cwd = tmp_path_factory.mktemp("edge")
    common = ["--data_url", str(small_mnist), "--ckpt_dir", "run", "--steps_per_epoch", "20", "--save_steps", "9"]
    result = run_script(cwd, "train", *common, "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    result = run_script(cwd, "train", *common, "--num_epochs", "3", "--auto_resume", "--ckpt_format", "safetensors")
    assert result.returncode == 0, result.stderr
    return cwd


@pytest.mark.slow
def test_1_a_new_run_never_overwrites_an_earlier_best_file(run_dir, small_mnist):
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


def stored(path):
    return run_info(read_checkpoint(path))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["infer", "export", "resume"])
def test_2_best_is_the_highest_stored_accuracy_in_either_format_for_every_command(run_dir, small_mnist, command):
    files = [p for p in (run_dir / "run").iterdir() if p.suffix in (".ckpt", ".safetensors")]
    accuracy = {p: stored(p).get("acc", -1) for p in files}
    top = max(accuracy.values())
    expected = sorted(p for p in files if accuracy[p] == top and "-best." in p.name)[0]  # a -best file holds it
    extra = {"infer": [], "export": ["--file_name", f"best_{command}"],
             "resume": ["--steps_per_epoch", "1", "--num_epochs", "1", "--ckpt_dir", "run_resume"]}[command]
    ckpt_dir = ["--ckpt_dir", "run"] if command != "resume" else []
    args = [command, "--ckpt", "best", *ckpt_dir, *extra]
    if command == "resume":  # resume writes into its --ckpt_dir: read from a copy
        shutil.copytree(run_dir / "run", run_dir / "run_resume", dirs_exist_ok=True)
        expected = run_dir / "run_resume" / expected.name
    if command != "export":
        args += ["--data_url", str(small_mnist)]
    result = run_script(run_dir, *args)
    assert result.returncode == 0, result.stderr
    rel = os.path.relpath(expected, run_dir)
    assert f"Using {rel} (best: the highest stored accuracy, {top:.4f}" in result.stdout
    if command == "infer":
        assert_saved_the_figures(result)


@pytest.mark.slow
def test_2_latest_is_the_furthest_intact_position_and_skips_damaged_and_foreign_files(run_dir, small_mnist):
    folder = run_dir / "latest"
    shutil.copytree(run_dir / "run", folder)
    (folder / "x.ckpt").write_bytes(b"")  # empty, and the newest file
    newest = folder / "lenet-3_20.safetensors"
    furthest = stored(newest)
    for command in ("infer", "export"):
        args = [command, "--ckpt_dir", "latest"] + (["--data_url", str(small_mnist)] if command == "infer"
                                                   else ["--file_name", "latest_model"])
        result = run_script(run_dir, *args)
        assert result.returncode == 0, result.stderr
        assert (f"Using latest/lenet-3_20.safetensors (latest: the furthest position, epoch 3, global step "
                f"{furthest['step_num']}") in result.stdout
        if command == "infer":
            assert_saved_the_figures(result)
    listing = run_script(run_dir, "list", "--ckpt_dir", "latest").stdout
    assert re.search(r"^x\.ckpt .* NO: damaged$", listing, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_3_resume_from_plain_weights_starts_at_epoch_0_and_says_so(tmp_path, small_mnist, cpu, fmt):
    plain = tmp_path / f"plain.{fmt}"
    ms.save_checkpoint(cpu.LeNet5(), str(plain), format=fmt)
    result = run_script(tmp_path, "resume", "--ckpt", plain.name, "--data_url", str(small_mnist),
                        "--steps_per_epoch", "2", "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    assert f"Loaded {plain.name}: it stores no epoch (plain weights), so training starts at epoch 0" in result.stdout
    assert "epoch: 1 step: 2" in result.stdout
    assert "Traceback" not in result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr  # the lists printed say what was not loaded


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1e3"])
def test_4_a_seed_out_of_range_is_refused_by_the_parser(tmp_path, seed):
    result = run_script(tmp_path, "train", "--seed", seed)
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: argument --seed: ")


@pytest.mark.slow
def test_4_every_seed_in_the_range_trains(tmp_path, small_mnist):
    for seed in ("42950", "4294967295"):  # the data-order seed of both is beyond 2**32 without the modulo
        result = run_script(tmp_path, "train", "--seed", seed, "--data_url", str(small_mnist), "--ckpt_dir",
                            f"s{seed}", "--steps_per_epoch", "1", "--num_epochs", "2", "--no_eval")
        assert result.returncode == 0, result.stderr
        assert stored(tmp_path / f"s{seed}" / "lenet-2_1.ckpt")["seed"] == int(seed)


@pytest.mark.parametrize("file_format, file_name, written", [
    ("MINDIR", "m.mindir", "m.mindir"),
    ("ONNX", "m.onnx", "m.onnx"),
    ("MINDIR", "my model", "my model.mindir"),
    ("ONNX", "a folder/with space/net", "a folder/with space/net.onnx"),
])
@pytest.mark.slow
def test_5_export_writes_the_file_it_names(run_dir, file_format, file_name, written):
    cwd = Path(tempfile.mkdtemp(dir=run_dir))
    result = run_script(cwd, "export", "--ckpt_dir", str(run_dir / "run"), "--file_format", file_format,
                        "--file_name", file_name, "--train_url", "published")
    assert result.returncode == 0, result.stderr
    assert f" to {written}, input shape (32, 1, 32, 32)" in result.stdout
    assert (cwd / written).stat().st_size > 200_000
    assert (cwd / "published" / Path(written).name).read_bytes() == (cwd / written).read_bytes()
    assert "will be deleted" not in result.stderr  # MindSpore's word on ms.export(file_format='ONNX')
    ours = [line for line in result.stderr.splitlines() if "Warning:" in line and "site-packages" not in line]
    assert not ours, ours  # no warning from our code (MindSpore warns of its own getName() call)


@pytest.mark.parametrize("file_name, message", [
    ("out/", "error: --file_name out/ is a folder; give a file name, such as out/lenet5"),
    ("taken", "error: taken.mindir already exists; pass another --file_name, or move the file away"),
    ("a_file/model", "error: cannot write a_file/model.mindir: Not a directory; pass a --file_name in a "
                     "folder you can write to"),
])
@pytest.mark.slow
def test_5_an_export_name_that_cannot_be_written_gives_one_line(run_dir, file_name, message):
    cwd = Path(tempfile.mkdtemp(dir=run_dir))
    (cwd / "taken.mindir").write_bytes(b"the user's file")
    (cwd / "a_file").write_bytes(b"not a folder")
    result = run_script(cwd, "export", "--ckpt_dir", str(run_dir / "run"), "--file_name", file_name)
    assert result.returncode == 1
    assert one_error_line(result) == message
    assert (cwd / "taken.mindir").read_bytes() == b"the user's file"
    assert sorted(p.name for p in cwd.iterdir()) == ["a_file", "taken.mindir"]


@pytest.mark.slow
def test_6_train_url_may_be_the_folder_the_outputs_are_in(tmp_path, small_mnist):
    args = ["--data_url", str(small_mnist), "--steps_per_epoch", "2", "--num_epochs", "1"]
    result = run_script(tmp_path, "train", *args, "--ckpt_dir", "ckpt", "--train_url", "ckpt")
    assert result.returncode == 0, result.stderr
    result = run_script(tmp_path, "infer", "--data_url", str(small_mnist), "--train_url", "images")
    assert result.returncode == 0, result.stderr
    assert "Copied the outputs to images" in result.stdout


@pytest.mark.slow
def test_6_a_second_copy_to_the_same_train_url_works_for_a_user_who_is_not_root(small_mnist):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the script as the user nobody")
    cwd = Path(tempfile.mkdtemp(prefix="train-url-"))
    try:
        cwd.chmod(0o777)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*as_nobody, sys.executable, "-c", f"open({str(ROOT / 'main.py')!r})"],
                          capture_output=True).returncode:
            pytest.skip(f"the user nobody cannot read {ROOT} or run {sys.executable}")
        shutil.copytree(small_mnist, cwd / "data")
        env = {**os.environ, "HOME": str(cwd)}
        train = [*script_command("train", "--data_url", "data", "--steps_per_epoch", "2", "--num_epochs", "1",
                                 "--ckpt_dir", "ckpt", "--no_eval")]
        done = subprocess.run([*as_nobody, *train], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (cwd / "ckpt" / "lenet-1_2.ckpt").stat().st_mode & 0o777 == 0o400  # saved read-only
        for _ in range(2):
            done = subprocess.run([*as_nobody, *script_command("infer", "--data_url", "data", "--train_url", "out")],
                                  cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
            assert done.returncode == 0, done.stderr
        assert (cwd / "out" / "lenet-1_2.ckpt").read_bytes() == (cwd / "ckpt" / "lenet-1_2.ckpt").read_bytes()
        assert (cwd / "out" / "lenet-1_2.ckpt").stat().st_uid == 65534
    finally:
        shutil.rmtree(cwd)


@pytest.mark.slow
def test_7_options_before_the_command_are_honoured(tmp_path, small_mnist):
    result = run_script(tmp_path, "--steps_per_epoch", "3", "--ckpt_dir", "b2", "--data_url", str(small_mnist),
                        "train", "--num_epochs", "1", "--no_eval")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "b2").glob("*.ckpt")) == ["lenet-1_3.ckpt"]
    result = run_script(tmp_path, "--ckpt_dir", "b2", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("lenet-1_3.ckpt ")


@pytest.mark.parametrize("args, message", [
    (["list", "--ckpt", "best"], "error: --ckpt does not apply to 'list'; see python main.py list --help"),
    (["--steps_per_epoch", "7", "infer"], "error: --steps_per_epoch does not apply to 'infer'; "
                                          "see python main.py infer --help"),
    (["train", "--num_ep", "1"], "error: --num_ep: abbreviations are not accepted; write the whole option "
                                 "(--num_epochs); see python main.py train --help"),
    (["list", "--ckpt_d", "x"], "error: --ckpt_d: abbreviations are not accepted; write the whole option "
                                "(--ckpt_dir); see python main.py list --help"),
])
def test_7_options_that_do_not_apply_or_are_abbreviated_are_refused(tmp_path, args, message):
    result = run_script(tmp_path, *args)
    assert result.returncode == 2
    assert one_error_line(result) == message


@pytest.mark.slow
def test_8_a_signal_after_the_last_step_ends_a_complete_run_that_publishes(tmp_path, small_mnist):
    """SIGTERM once the last step has begun: the run finishes its evaluation and its last save."""
    full = tmp_path / "full"  # the small training set, with the whole test set, so that evaluation takes a while
    shutil.copytree(small_mnist / "train", full / "train")
    from mnist_data import prepare_mnist
    shutil.copytree(prepare_mnist(ROOT / "MNIST") / "test", full / "test")
    train = script_command("train", "--data_url", str(full), "--ckpt_dir", "run", "--steps_per_epoch", "3",
                           "--save_steps", "1", "--num_epochs", "1", "--train_url", "out")
    process = subprocess.Popen(train, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "lenet-1_2.ckpt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.001)
        time.sleep(0.3)  # step 3, the last, takes milliseconds; evaluating 10,000 images takes seconds
        assert process.poll() is None, "the run ended before the signal"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM arrived after the last step: training is complete, saved run/lenet-1_3.ckpt" in err
    assert "To continue" not in err and "Traceback" not in err
    assert "epoch 1/1:" in out and "Copied the outputs to out" in out
    assert {"lenet-1_3.ckpt", "lenet-best.ckpt"} <= {p.name for p in (tmp_path / "out").iterdir()}


@pytest.mark.slow
def test_9_infer_with_a_folder_as_ckpt_says_so(run_dir, small_mnist):
    result = run_script(run_dir, "infer", "--ckpt", "run", "--data_url", str(small_mnist))
    assert result.returncode == 1
    assert one_error_line(result) == ("error: --ckpt run is a folder; pass a checkpoint file, or --ckpt_dir run "
                                      "with --ckpt latest or best")


@pytest.mark.slow
def test_9_infer_uses_a_folder_that_holds_only_a_best_file(run_dir, small_mnist):
    (run_dir / "only_best").mkdir(exist_ok=True)
    shutil.copy2(run_dir / "run" / "lenet-best.ckpt", run_dir / "only_best" / "lenet-best.ckpt")
    result = run_script(run_dir, "infer", "--ckpt_dir", "only_best", "--data_url", str(small_mnist))
    assert result.returncode == 0, result.stderr
    assert "Using only_best/lenet-best.ckpt (latest: the furthest position" in result.stdout


@pytest.mark.parametrize("ckpt_dir, message", [
    ("nope", "error: --ckpt_dir nope does not exist; pass the folder that holds your checkpoints"),
    ("somefile", "error: --ckpt_dir somefile is a file, not a folder; pass the folder that holds it "
                 "(--ckpt_dir .), or pass the file as --ckpt"),
])
def test_9_list_refuses_a_missing_folder_or_a_file(tmp_path, ckpt_dir, message):
    (tmp_path / "somefile").write_text("x")
    result = run_script(tmp_path, "list", "--ckpt_dir", ckpt_dir)
    assert result.returncode == 1
    assert one_error_line(result) == message


@pytest.mark.slow
def test_9_list_sorts_by_position(run_dir):
    result = run_script(run_dir, "list", "--ckpt_dir", "run")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names[0] == "lenet-best.ckpt"  # epoch 1's best; rotation kept the newest five regular files
    assert [name for name in names if "-best." not in name] == [
        "lenet-2_16.safetensors", "lenet-2_20.safetensors", "lenet-3_5.safetensors", "lenet-3_14.safetensors",
        "lenet-3_20.safetensors"]  # by name, lenet-3_14 would come before lenet-3_5


@pytest.mark.slow
def test_9_an_empty_folder_has_no_checkpoint_yet(tmp_path):
    (tmp_path / "empty").mkdir()
    for command in ("infer", "export", "resume"):
        result = run_script(tmp_path, command, "--ckpt_dir", "empty")
        assert result.returncode == 1
        assert one_error_line(result) == ("error: no checkpoint in empty yet: run 'python main.py train' first, "
                                          "or pass --ckpt_dir")
    result = run_script(tmp_path, "list", "--ckpt_dir", "empty")
    assert result.returncode == 0 and result.stdout.strip() == "no checkpoints in empty"
