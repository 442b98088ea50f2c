"""The lesson's one settings cell, which both faces run: the script's options and the notebook's
environment variables set the same names, and a value out of range gets the same one line in both."""
import re

import pytest

from conftest import ROOT, execute, one_error_line, run_script, running_kernel

OUT_OF_RANGE = ("must be a whole number from 1 to 1875 (an epoch of MNIST has 1875 batches of 32), got {}; "
                "leave it unset for whole epochs")


@pytest.mark.parametrize("value", ["5000", "0", "-3", "9" * 30])
@pytest.mark.parametrize("command", [[], ["train"], ["resume"]])
def test_a_quick_run_length_out_of_range_is_one_line_before_anything_is_written(tmp_path, command, value):
    result = run_script(tmp_path, *command, f"--steps_per_epoch={value}")
    assert result.returncode == 2
    help_of = " ".join(["python main.py", *command, "--help"])
    assert one_error_line(result) == (f"error: argument --steps_per_epoch: {OUT_OF_RANGE.format(value)}; "
                                      f"see {help_of}")
    assert list(tmp_path.iterdir()) == []  # no --ckpt_dir made, nothing unpacked, no figure


@pytest.mark.slow
def test_the_notebook_says_the_same_line_and_the_settings_cell_sets_the_quick_run(tmp_path):
    """The settings cell in a kernel, as Run All runs it, with TUTORIAL_STEPS_PER_EPOCH out of range, then
    within it: one line, no traceback; then the name the lesson uses."""
    source = (ROOT / "main.py").read_text()
    cell = re.search(r"^# %%\n(DEVICE_TARGET = .*?)\n\n", source, re.MULTILINE | re.DOTALL)[1]
    with running_kernel(tmp_path) as client:
        _, error = execute(client, f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                                   "from machinery.lesson import load_definitions\n"
                                   "globals().update(vars(load_definitions()))")  # the cells before it
        assert error is None, error
        for value in ("5000", "-3"):
            _, error = execute(client, f"import os; os.environ['TUTORIAL_STEPS_PER_EPOCH'] = {value!r}\n{cell}")
            assert error == [f"TUTORIAL_STEPS_PER_EPOCH {OUT_OF_RANGE.format(value)}"], error
        printed, error = execute(client, f"os.environ['TUTORIAL_STEPS_PER_EPOCH'] = '50'\n{cell}\n"
                                         "print(STEPS_PER_EPOCH, DEVICE_TARGET, CKPT_DIR)")
        assert error is None, error
        assert printed.splitlines()[-1] == "50 None ckpt" and "Device: CPU" in printed
