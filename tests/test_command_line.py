"""The command line, through the real script: options before the command count, an option that a command
does not take or that is abbreviated is refused in one line saying where it goes, the seed's range, and
what --help says of the commands. Bad values and folders: test_bad_input.py."""
import shlex
import subprocess

import pytest

from machinery.checkpoint_files import read_checkpoint, run_info
from conftest import one_error_line, run_script, script_command


@pytest.mark.slow
def test_options_before_the_command_are_honoured(tmp_path, small_mnist):
    result = run_script(tmp_path, "--steps_per_epoch", "3", "--ckpt_dir", "b2", "--data_url", str(small_mnist),
                        "train", "--num_epochs", "1", "--no_eval")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "b2").glob("*.ckpt")) == ["lenet-1_3.ckpt"]
    result = run_script(tmp_path, "--ckpt_dir", "b2", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("lenet-1_3.ckpt ")


@pytest.mark.parametrize("args, message", [
    (["--num_epochs=3", "train"], "error: --num_epochs is an option of 'train' and must come after it (python "
                                  "main.py train --num_epochs ...); see python main.py train --help"),
    (["--lr", "0.1", "resume"], "error: --lr is an option of 'resume' and must come after it (python main.py "
                                "resume --lr ...); see python main.py resume --help"),
    (["--ckpt", "best", "list"], "error: --ckpt does not apply to 'list'; see python main.py list --help"),
    (["--num_epochs", "3"], "error: --num_epochs does not apply to the tutorial (no command); it is an option of "
                            "resume and train, after the command; see python main.py --help"),
])
def test_an_option_of_a_command_before_it_says_where_it_goes(tmp_path, args, message):
    result = run_script(tmp_path, *args)
    assert result.returncode == 2
    assert one_error_line(result) == message


@pytest.mark.parametrize("args, message", [
    (["list", "--ckpt", "best"], "error: --ckpt does not apply to 'list'; see python main.py list --help"),
    (["--steps_per_epoch", "7", "infer"], "error: --steps_per_epoch does not apply to 'infer'; "
                                          "see python main.py infer --help"),
    (["train", "--num_ep", "1"], "error: --num_ep: abbreviations are not accepted; write the whole option "
                                 "(--num_epochs); see python main.py train --help"),
    (["list", "--ckpt_d", "x"], "error: --ckpt_d: abbreviations are not accepted; write the whole option "
                                "(--ckpt_dir); see python main.py list --help"),
    (["list", "--data_url", "x"], "error: --data_url does not apply to 'list'; see python main.py list --help"),
    (["curves", "--train_url", "x"], "error: --train_url does not apply to 'curves'; see python main.py curves --help"),
])
def test_options_that_do_not_apply_or_are_abbreviated_are_refused(tmp_path, args, message):
    result = run_script(tmp_path, *args)
    assert result.returncode == 2
    assert one_error_line(result) == message


@pytest.mark.slow
def test_one_line_for_a_file_as_ckpt_dir_and_what_help_says(tmp_path):
    (tmp_path / "afile").write_text("a file")
    cases = {
        ("curves", "--ckpt_dir", "afile"): (1, "error: --ckpt_dir afile is a file, not a folder; pass the folder of a "
                                              "'train' run, which holds its train_log.csv"),
        ("train", "--ckpt_dir", "afile"): (1, "error: cannot write to --ckpt_dir afile: it is a file, not a folder; "
                                             "pass a folder you can write to"),
    }
    for args, (code, message) in cases.items():
        result = run_script(tmp_path, *args)
        assert (result.returncode, one_error_line(result)) == (code, message)
    helps = {command: run_script(tmp_path, command, "--help").stdout for command in ("list", "train", "resume")}
    assert "--data_url" not in helps["list"] and "--device_id" not in helps["list"]
    assert "train until the run has this many epochs in all" in " ".join(helps["train"].split())
    assert "this many more, not up to" in " ".join(helps["resume"].split())


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1e3"])
def test_a_seed_out_of_range_is_refused_by_the_parser(tmp_path, seed):
    result = run_script(tmp_path, "train", "--seed", seed)
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: argument --seed: ")


@pytest.mark.slow
def test_every_seed_in_the_range_trains(tmp_path, small_mnist):
    for seed in ("42950", "4294967295"):  # the data-order seed of both is beyond 2**32 without the modulo
        result = run_script(tmp_path, "train", "--seed", seed, "--data_url", str(small_mnist), "--ckpt_dir",
                            f"s{seed}", "--steps_per_epoch", "1", "--num_epochs", "2", "--no_eval")
        assert result.returncode == 0, result.stderr
        assert run_info(read_checkpoint(tmp_path / f"s{seed}" / "lenet-2_1.ckpt"))["seed"] == int(seed)


def test_a_closed_pipe_ends_list_quietly(tmp_path):
    """`python main.py list | head -1`: the reader has what it wants, as with `ls | head`. Here the reader
    (`true`) has gone before the script writes at all."""
    (tmp_path / "ckpt").mkdir()
    done = subprocess.run(f"{shlex.join(script_command('list'))} | true; echo \"${{PIPESTATUS[0]}}\"",
                          shell=True, executable="/bin/bash", cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout == "0\n", done.stderr
    assert "Broken pipe" not in done.stderr and "error" not in done.stderr.lower(), done.stderr


@pytest.mark.parametrize("command", ["list", "curves"])
def test_a_bad_device_id_does_not_matter_to_commands_that_use_no_device(tmp_path, command):
    (tmp_path / "ckpt" / "train").mkdir(parents=True)
    (tmp_path / "ckpt" / "train" / "train_log.csv").write_text("global_step,epoch,loss,test_acc,test_loss,run\n"
                                                               "1,1,2.3,,,1\n2,1,2.2,,,1\n")
    result = run_script(tmp_path, command, timeout=300, env={"DEVICE_ID": "abc", "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert "DEVICE_ID" not in result.stderr and "[WARNING]" not in result.stderr, result.stderr


def test_unknown_arguments_are_reported_once(tmp_path):
    (tmp_path / "ckpt").mkdir()
    result = run_script(tmp_path, "list", "--foo", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Ignoring unknown arguments: --foo 1") == 1
