"""Data-parallel training with 2 workers under msrun on 127.0.0.1: identical ranks, resuming, every command
finding msrun's output, one msrun per folder, a diverging msrun, and a run continued only with the number of
workers it started with. Every msrun command of the project joins its workers."""
import inspect
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from machinery.checkpoint_files import read_checkpoint
from conftest import ROOT, finite, free_port, network_parameters, one_error_line, run_script, snapshot, wait_for


TRAIN = ["train", "--num_epochs", "2", "--save_steps", "5", "--seed", "3", "--auto_resume", "--ckpt_dir", "ckpt"]


def start_msrun(cwd, log_dir, *args):
    """Start 2 workers under msrun, in a process group of their own so that all can be killed."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["msrun", "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", f"--log_dir={log_dir}", "--join=True",
               str(ROOT / "main.py"), *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def descendants(pid):
    """All processes below `pid`: msrun starts each worker in a session of its own."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_of[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


def kill_all(process):
    """kill -9 msrun and every process it started."""
    for pid in [process.pid, *descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def worker_logs(log_dir):
    return [(Path(log_dir) / f"worker_{rank}.log").read_text() for rank in (0, 1)]


def run_to_end(cwd, log_dir, *args, succeeds=True):
    """Run msrun to its end, which is a success or, with `succeeds=False`, a failure; return the workers' logs."""
    process = start_msrun(cwd, log_dir, *args)
    try:
        out, _ = process.communicate(timeout=600)
    finally:
        kill_all(process)
    assert (process.returncode == 0) == succeeds, out + "".join(worker_logs(cwd / log_dir))
    return worker_logs(cwd / log_dir)


def visible_files(folder):
    """snapshot(folder) without hidden files, such as the lock file a run leaves while it holds the folder."""
    return {path: data for path, data in snapshot(folder).items() if not path.name.startswith(".")}


def assert_same_parameters(path_a, path_b):
    a, b = network_parameters(path_a), network_parameters(path_b)
    assert a.keys() == b.keys()
    assert not [name for name in a if not np.array_equal(a[name], b[name])], (path_a, path_b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_mnist):
    cwd = tmp_path_factory.mktemp("dp_reference")
    run_to_end(cwd, "logs", *TRAIN, "--data_url", str(small_mnist), "--train_url", "published")
    return cwd / "ckpt"


@pytest.mark.slow
def test_two_workers_train_interrupt_resume_and_agree(tmp_path, small_mnist, uninterrupted):
    args = [*TRAIN, "--data_url", str(small_mnist)]
    process = start_msrun(tmp_path, "logs_1", *args)
    try:
        wait_for(process, (tmp_path / "ckpt" / "rank_0" / "lenet-1_5.ckpt").exists, "rank 0's first checkpoint",
                 timeout=300, interval=0.01)
    finally:
        kill_all(process)  # kill -9 msrun and both workers
    first_logs = worker_logs(tmp_path / "logs_1")
    assert all("Starting a new run" in log for log in first_logs)

    resumed_logs = run_to_end(tmp_path, "logs_2", *args)
    starts = [re.search(r"Continuing from ckpt/rank_0/lenet-1_(\d+)\.ckpt: epoch 1, step (\d+)", log)
              for log in resumed_logs]
    assert all(starts) and starts[0].groups() == starts[1].groups()  # both ranks from the same step
    assert int(starts[0][2]) >= 5

    ckpt = tmp_path / "ckpt"
    assert_same_parameters(ckpt / "rank_0" / "lenet-2_10.ckpt", ckpt / "rank_1" / "lenet-2_10.ckpt")
    assert_same_parameters(ckpt / "rank_0" / "lenet-2_10.ckpt", uninterrupted / "rank_0" / "lenet-2_10.ckpt")
    losses = [float(x) for log in (first_logs[0], resumed_logs[0])
              for x in re.findall(r"epoch \d/2: .* loss (\d+\.\d+)", log)]
    assert len(losses) == 2 and losses[1] < losses[0], losses

    result = run_script(tmp_path, "infer", "--data_url", str(small_mnist), "--ckpt_dir", "ckpt/rank_1")
    assert result.returncode == 0, result.stderr
    assert "Saved images/prediction.png" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("ckpt_dir", ["ckpt", "published"])
def test_every_command_finds_msrun_output_where_it_was_written(uninterrupted, small_mnist, ckpt_dir, tmp_path):
    """--ckpt_dir as given to msrun (which holds rank_0/ and rank_1/), and the --train_url folder."""
    cwd = uninterrupted.parent
    listing = run_script(cwd, "list", "--ckpt_dir", ckpt_dir)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    ranks = ("rank_0/", "rank_1/") if ckpt_dir == "ckpt" else ("",)
    assert [f"{rank}lenet-2_10.ckpt" for rank in ranks] == [row for row in rows if row.endswith("lenet-2_10.ckpt")]
    assert f"{ranks[0]}lenet-best.ckpt" in rows  # rank 0 evaluates, and keeps the best file
    taken = rf"Using {ckpt_dir}/{'rank_[01]/' if ckpt_dir == 'ckpt' else ''}lenet-2_10\.ckpt \(latest: "
    for args in (["infer", "--data_url", str(small_mnist)], ["export", "--file_name", str(tmp_path / "m")]):
        result = run_script(cwd, *args, "--ckpt_dir", ckpt_dir)
        assert result.returncode == 0, result.stderr
        assert re.search(taken, result.stdout), result.stdout
    best = run_script(cwd, "export", "--ckpt", "best", "--ckpt_dir", ckpt_dir, "--file_name", str(tmp_path / "b"))
    assert best.returncode == 0 and "(best: the highest stored accuracy" in best.stdout, best.stderr
    copy = tmp_path / "copy"
    shutil.copytree(cwd / ckpt_dir, copy)
    resumed = run_script(cwd, "resume", "--ckpt_dir", str(copy), "--data_url", str(small_mnist),
                         "--steps_per_epoch", "2", "--num_epochs", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"Using \S+lenet-2_10\.ckpt \(latest: ", resumed.stdout)
    assert "epoch: 3 step: 2" in resumed.stdout


@pytest.mark.slow
def test_a_second_msrun_is_refused_but_the_workers_of_one_are_not(tmp_path, small_mnist):
    args = ["train", "--num_epochs", "1000", "--steps_per_epoch", "5", "--data_url", str(small_mnist),
            "--ckpt_dir", "busy", "--no_progress"]
    first = start_msrun(tmp_path, "logs_1", *args)
    try:
        wait_for(first, (tmp_path / "busy" / "rank_1" / "lenet-1_5.ckpt").exists, "rank 1's first checkpoint",
                 timeout=300, interval=0.01)  # both workers train
        for pid in [first.pid, *descendants(first.pid)]:  # paused, it holds its folder without using a core
            os.kill(pid, signal.SIGSTOP)
        second = start_msrun(tmp_path, "logs_2", *args)
        second.communicate(timeout=300)
        assert second.returncode != 0
        refused = [re.findall(r"^error: (busy\S*) is in use by another run \(pid (\d+): python .*main\.py train .*\); "
                              r"wait for it to end, or choose another --ckpt_dir$", log, re.M)
                   for log in worker_logs(tmp_path / "logs_2")]
        assert [folder for found in refused for folder, _ in found] == ["busy", "busy/rank_1"], refused
        alone = run_script(tmp_path, *args)  # nor may a single process train into an msrun's folder
        assert alone.returncode == 1 and "error: busy is in use by another run (pid " in alone.stderr
        assert first.poll() is None
    finally:
        kill_all(first)


@pytest.mark.slow
def test_a_diverging_msrun_stops_every_worker_and_saves_nothing_non_finite(tmp_path, small_mnist):
    logs = run_to_end(tmp_path, "logs", "train", "--num_epochs", "6", "--steps_per_epoch", "5", "--save_steps", "2",
                      "--lr", "0.4", "--data_url", str(small_mnist), "--ckpt_dir", "nan", "--no_progress",
                      succeeds=False)
    for rank, log in enumerate(logs):
        assert re.search(rf"^error: the loss is (nan|inf|-inf) at epoch \d, step \d \(global step \d+\): training "
                         rf"diverged and stopped without saving it; the last checkpoint saved, "
                         rf"nan/rank_{rank}/lenet-\d_\d\.ckpt, is finite and kept", log, re.M), log
    files = list((tmp_path / "nan").rglob("*.ckpt"))
    assert files and all(finite(path) for path in files)  # the parameters; a test loss may be inf


# ---- a run continues only with the number of workers it started with ----

@pytest.mark.slow
def test_one_process_refuses_a_folder_of_an_msrun_run(eight_step_run, tmp_path, small_mnist):
    import mindspore as ms
    # the layout of a 2-worker msrun killed while saving: rank_0's checkpoints, each storing 2 workers,
    # and rank_1's folder, where that save had not happened yet
    for rank in (0, 1):
        (tmp_path / "two" / f"rank_{rank}").mkdir(parents=True)
    for path in (eight_step_run / "ckpt" / "train").glob("*.ckpt"):
        params = {**read_checkpoint(path), "workers": ms.Tensor(2, ms.int64)}
        ms.save_checkpoint([{"name": name, "data": value} for name, value in params.items()],
                           str(tmp_path / "two" / "rank_0" / path.name), crc_check=True)
    before = snapshot(tmp_path / "two")
    for extra in (["--auto_resume"], []):
        result = run_script(tmp_path, "train", "--data_url", str(small_mnist), "--ckpt_dir", "two",
                            "--steps_per_epoch", "4", "--num_epochs", "3", *extra)
        assert result.returncode == 1
        assert one_error_line(result) == (
            "error: two holds a run trained by 2 workers under msrun, and this is 1 process; a run continues only "
            "with the number of workers it started with (it sets the global batch and the data order): continue "
            "it with msrun --worker_num=2 --join=True ... main.py train --auto_resume, or choose another --ckpt_dir")
        assert "Starting a new run" not in result.stdout
    assert snapshot(tmp_path / "two") == before


@pytest.mark.slow
def test_an_msrun_refuses_a_folder_of_a_single_process_run(eight_step_run, tmp_path, small_mnist):
    shutil.copytree(eight_step_run / "ckpt" / "train", tmp_path / "one")
    before = snapshot(tmp_path / "one")
    logs = run_to_end(tmp_path, "logs", "train", "--data_url", str(small_mnist), "--ckpt_dir", "one",
                      "--steps_per_epoch", "4", "--auto_resume", succeeds=False)
    for log in logs:
        assert ("error: one holds a run trained by 1 process, and this is 2 workers under msrun; a run continues "
                "only with the number of workers it started with (it sets the global batch and the data order): "
                "continue it with python main.py train --auto_resume, in one process, or choose another "
                "--ckpt_dir") in log, log
        assert "Starting a new run" not in log
    assert visible_files(tmp_path / "one") == before


def test_every_msrun_command_of_the_project_joins_its_workers():
    """msrun as the project runs and shows it waits for its workers."""
    text = (ROOT / "main.py").read_text()  # each msrun command, with the lines a backslash continues
    shown = [re.split(r"(?<!\\)\n", text[at.start():], maxsplit=1)[0] for at in re.finditer("msrun --worker_num", text)]
    assert shown and all("--join=True" in command for command in shown), shown
    assert "--join=True" in inspect.getsource(start_msrun)  # as these tests run it
    ignored = subprocess.run(["git", "check-ignore", "-q", "msrun_logs/worker_0.log"], cwd=ROOT)
    assert ignored.returncode == 0  # msrun's logs stay out of git status


@pytest.mark.slow
def test_the_documented_msrun_command_works_after_the_readmes_train(eight_step_run, tmp_path, small_mnist):
    """docs/distributed.md's example, as written but for shorter epochs, where the README's `train` has
    left a one-process run in ckpt/train: it trains into a folder of its own, and leaves that run alone."""
    page = (ROOT / "docs" / "distributed.md").read_text()
    example = re.search(r"```sh\n(.*?)```", page, re.DOTALL)[1].replace("\\\n", " ")
    args = shlex.split(example.split("main.py", 1)[1])
    shutil.copytree(eight_step_run / "ckpt" / "train", tmp_path / "ckpt" / "train")
    before = snapshot(tmp_path / "ckpt" / "train")
    logs = run_to_end(tmp_path, "msrun_logs", *args, "--data_url", str(small_mnist), "--steps_per_epoch", "2",
                      "--num_epochs", "1")
    assert all("Starting a new run" in log for log in logs), logs
    ckpt_dir = args[args.index("--ckpt_dir") + 1]
    assert list((tmp_path / ckpt_dir / "rank_0").glob("lenet-1_*.ckpt"))
    assert visible_files(tmp_path / "ckpt" / "train") == before
