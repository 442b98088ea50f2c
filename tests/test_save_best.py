"""The lesson's SaveBest: the most accurate parameters so far, in <prefix>-best.ckpt, which is never
missing or half-written, so that a stop in the middle of a save keeps the previous best."""
import shutil
import subprocess
import sys
import time

import pytest

from conftest import LESSON_ON_CPU

pytestmark = pytest.mark.slow  # MindSpore trains for seconds


def test_the_best_model_is_never_missing_while_a_better_one_is_saved(tmp_path, small_mnist):
    """MindSpore's save_checkpoint deletes a file before it writes it again: a stop in that window left no
    best model at all. With every deletion held up for a second (strace), lenet-best.ckpt, once there, must
    stay there through each later save, and end whole."""
    if not shutil.which("strace"):
        pytest.skip("needs strace, to hold up MindSpore's deletions: apt-get install strace")
    code = (LESSON_ON_CPU +
            f"lesson.train({str(small_mnist)!r}, steps_per_epoch=20, num_epochs=6)\n")
    command = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink,unlinkat",
               "-e", "inject=unlink,unlinkat:delay_exit=1000000", sys.executable, "-c", code]
    best = tmp_path / "ckpt" / "lenet-best.ckpt"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = missing = 0
    deadline = time.monotonic() + 600
    try:
        while process.poll() is None and time.monotonic() < deadline:
            exists = best.exists()
            seen, missing = seen or exists, missing + (seen and not exists)
            time.sleep(0.005)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0
    assert out.count("Best so far: saved ckpt/lenet-best.ckpt") >= 2, out  # a best model replaced at least once
    assert not missing, f"lenet-best.ckpt was missing {missing} times while a better one was saved"
    import mindspore as ms
    params = ms.load_checkpoint(str(best), crc_check=True)  # whole: its CRC matches
    assert "conv1.weight" in params and "acc" in params
