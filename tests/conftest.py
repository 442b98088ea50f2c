"""What the tests share: data (tiny IDX files, a small MNIST), a scratch copy of the project, running the
script and reading what it did, the training runs that tests of several modules share, and the session's
order, grouping and core pinning (docs/development.md#tests)."""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROJECT_FILES = ["main.py", "main.ipynb", "mnist_data.py", "machinery", "pytorch"]
# The environment variable naming the test session's shared folder: made in the one process (or xdist's
# controller), inherited by the workers. It holds the version matrix's results and the cores' claims.
SESSION_FOLDER = "TUTORIAL_TEST_SESSION_FOLDER"
# The cores this session may use, read before any test pins itself to one.
ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def copy_project_files(names, target):
    """Copy the named files and folders of the project into the folder `target`."""
    for name in names:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, target / name)


def copy_project(target):
    """A scratch copy of the project in `target`, as a user's clone, sharing the shipped MNIST files by
    symlink; return it. The tests run the script and the notebook there, and .ci/build_notebook.py too."""
    (target / "MNIST").mkdir(parents=True)
    copy_project_files(PROJECT_FILES, target)
    for gz in (ROOT / "MNIST").glob("*.gz"):
        (target / "MNIST" / gz.name).symlink_to(gz)
    return target


def write_idx(split_dir, prefix, images, labels):
    """Write `images` (N x 28 x 28 uint8) and `labels` (N) as MNIST IDX files."""
    split_dir.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (split_dir / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, 28, 28) + np.asarray(images, np.uint8).tobytes())
    (split_dir / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + np.asarray(labels, np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path):
    """An MNIST layout with 96 training and 64 test images of random noise."""
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "tiny"
    for split, prefix, n in [("train", "train", 96), ("test", "t10k", 64)]:
        write_idx(data_dir / split, prefix, rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    return data_dir


def mnist_subset(data_dir, train_images, test_images):
    """The first `train_images` and `test_images` of the shipped MNIST, as an MNIST layout in `data_dir`."""
    from mnist_data import prepare_mnist
    shipped = prepare_mnist(ROOT / "MNIST")
    for split, prefix, n in [("train", "train", train_images), ("test", "t10k", test_images)]:
        raw_images = (shipped / split / f"{prefix}-images-idx3-ubyte").read_bytes()[16:16 + n * 784]
        raw_labels = (shipped / split / f"{prefix}-labels-idx1-ubyte").read_bytes()[8:8 + n]
        write_idx(data_dir / split, prefix, np.frombuffer(raw_images, np.uint8).reshape(n, 28, 28),
                  np.frombuffer(raw_labels, np.uint8))
    return data_dir


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory):
    """The first 640 training and 320 test images of the shipped MNIST: 20 and 10 batches."""
    return mnist_subset(tmp_path_factory.mktemp("small") / "mnist", 640, 320)


@pytest.fixture(scope="session")
def cpu():
    """The lesson's definitions (machinery/lesson.py), on the CPU."""
    from machinery.lesson import load_definitions
    lesson = load_definitions()
    lesson.set_device("CPU")
    return lesson


@pytest.fixture
def project(tmp_path):
    """A scratch copy of the project for the notebook, sharing the shipped MNIST files by symlink."""
    return copy_project(tmp_path / "project")


def copy_small_project(target):
    """A scratch copy of the project in `target`, with MNIST/ holding the first 6,400 training and 640 test
    images, unpacked: 200 and 20 batches, enough for every step of the notebook, and quick to evaluate."""
    project = copy_project(target)
    for gz in (project / "MNIST").glob("*.gz"):
        gz.unlink()
    mnist_subset(project / "MNIST", 6400, 640)
    return project


@pytest.fixture
def small_project(tmp_path):
    """copy_small_project in tmp_path/project."""
    return copy_small_project(tmp_path / "project")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_command(*args, main=ROOT / "main.py"):
    """The command that runs `main` (the repository's main.py, or, relative, a project copy's)."""
    return [sys.executable, "-W", "default", str(main), *args]


def run_script(cwd, *args, main=ROOT / "main.py", timeout=900, env=None):
    """Run main.py in the folder `cwd` as a user would, with the environment variables `env` added; return the
    CompletedProcess."""
    return subprocess.run(script_command(*args, main=main), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})


def start_script(cwd, *args, **popen):
    """Start main.py in the folder `cwd`, its output unbuffered and piped (or where `popen` says); return the
    Popen."""
    options = {"cwd": cwd, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True,
               "env": {**os.environ, "PYTHONUNBUFFERED": "1"}}
    return subprocess.Popen(script_command(*args), **{**options, **popen})


def wait_for(process, condition, what, timeout=180, interval=0.005):
    """Wait until `condition()` holds, while `process` runs; fail, saying `what` never came, if it ends or
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(interval)


def signal_after(process, line_start, sig=signal.SIGINT, delay=0, timeout=300):
    """Send `sig`, `delay` seconds after the process prints a line that starts with `line_start`; return its
    output (stdout, stderr) once it has ended."""
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if line.startswith(line_start):
            if delay:
                time.sleep(delay)
            process.send_signal(sig)
            break
        assert time.monotonic() < deadline
    out, err = process.communicate(timeout=timeout)
    return "".join(seen) + out, err


# The code that loads the lesson's definitions as `lesson`, on the CPU, in a fresh process or kernel
LESSON_ON_CPU = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                 "from machinery.lesson import load_definitions\n"
                 "lesson = load_definitions()\n"
                 "lesson.set_device('CPU')\n")


@contextmanager
def running_kernel(cwd):
    """A Jupyter kernel started in `cwd`, shut down after the block; yields its client."""
    from jupyter_client.manager import start_new_kernel
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(cwd))
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client, code, timeout=300):
    """Run `code` in the Jupyter kernel of `client`; return what it printed, and what it showed of an error
    (a list of lines) or None."""
    msg_id = client.execute(code)
    printed, error = [], None
    while True:
        message = client.get_iopub_msg(timeout=timeout)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind == "error":
            error = content["traceback"]
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(printed), error


def one_error_line(result):
    """The one `error:` line of a finished run that failed as it should: no traceback, no usage text,
    no MindSpore [WARNING] or [ERROR] lines."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert "[WARNING]" not in result.stderr and "[ERROR]" not in result.stderr, result.stderr
    return lines[0]


def stop_line(stderr):
    """The one line a stop prints (MindSpore may still print a DeprecationWarning of its own at exit)."""
    lines = [line for line in stderr.splitlines() if line.startswith("Stopped by")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def assert_saved_the_figures(infer):
    """`infer` (a finished run of the command) saved its three figures."""
    for name in ("prediction", "confusion_matrix", "misclassified"):
        assert f"Saved images/{name}.png" in infer.stdout


def shipped_gz(folder):
    """`folder`, made, holding a fresh copy of the four shipped .gz files."""
    folder.mkdir(parents=True, exist_ok=True)
    for gz in (ROOT / "MNIST").glob("*.gz"):
        shutil.copy(gz, folder)
    return folder


def assert_verified(root):
    """`root` holds the tutorial's layout of the real MNIST files (and maybe hidden partial files)."""
    from mnist_data import MNIST_FILES
    for split, files in MNIST_FILES.items():
        assert sorted(p.name for p in (root / split).iterdir() if not p.name.startswith(".")) == sorted(files)
        for name, md5 in files.items():
            assert hashlib.md5((root / split / name).read_bytes()).hexdigest() == md5


def snapshot(folder):
    """Every file below `folder`, with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def copy_checkpoints(ckpt_dir, cwd):
    """Copy the folder `ckpt_dir` into the working folder `cwd` as ckpt/ (a test changes its copy, never a
    shared run); return `cwd`."""
    shutil.copytree(ckpt_dir, cwd / "ckpt")
    return cwd


def network_parameters(path):
    """The network's parameters stored in the checkpoint `path`, as arrays by name, without the run's
    information (epoch, step, accuracy...)."""
    from machinery.checkpoint_files import RUN_INFO, read_checkpoint
    return {name: value.asnumpy() for name, value in read_checkpoint(path).items() if name not in RUN_INFO}


def finite(path):
    """Whether the parameters in the checkpoint `path` are finite (a stored test loss may be inf)."""
    return all(np.isfinite(value).all() for value in network_parameters(path).values())


USERS_FILE = "ckpt/lenet-1_1875.ckpt"


@pytest.fixture
def users_folder(tmp_path):
    """A working folder holding a file of the user's, ckpt/lenet-1_1875.ckpt, and main.py, a file where a
    folder could be asked for; no error may touch them."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / USERS_FILE).write_bytes(b"the user's checkpoint")
    (tmp_path / "main.py").write_text("not a folder")
    yield tmp_path
    assert (tmp_path / USERS_FILE).read_bytes() == b"the user's checkpoint"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["lenet-1_1875.ckpt"]


@pytest.fixture
def mount_tmpfs(tmp_path):
    """A function that mounts (or remounts) a small tmpfs with the given options at tmp_path/disk; returns its
    path. The test is skipped where that needs root and the tests are not root."""
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(*options):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(disk)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
        return disk
    yield mount
    subprocess.run(["umount", "--lazy", str(disk)], check=False, capture_output=True)


def as_nobody(why):
    """The command prefix that runs a command as the user nobody, for whom root's folders can be unreadable or
    unwritable; the test is skipped, saying that it needs root and setpriv to `why`, where that cannot be done."""
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip(f"needs root and setpriv to {why}")
    if subprocess.run([*command, sys.executable, "-c", f"open({str(ROOT / 'main.py')!r})"],
                      capture_output=True).returncode:
        pytest.skip(f"the user nobody cannot read {ROOT} or run {sys.executable}")
    return command


@pytest.fixture
def open_folder():
    """A scratch folder for a test that runs a command as the user nobody: outside pytest's tmp_path, which is
    root's alone. Removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="as-nobody-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


# ---- training runs that tests of several modules share ----
# Each is made once a session: pytest_collection_modifyitems sends every test that uses one to the same
# pytest-xdist worker. A test copies what it changes, unless it restores it.

QUICK = ["--steps_per_epoch", "5", "--no_progress"]  # 5 steps an epoch, no progress bars
SHARED_RUNS = set()  # the names of the fixtures below


def shared_run(fixture):
    """A session-scoped fixture whose tests go to one worker."""
    SHARED_RUNS.add(fixture.__name__)
    return pytest.fixture(scope="session")(fixture)


@shared_run
def eight_step_run(tmp_path_factory, small_mnist):
    """A folder where 'train' ran into ckpt/train: 2 epochs of 4 steps, saved at steps 4, 5 and 8 (lenet-1_4,
    lenet-2_1, mid-epoch, and lenet-2_4)."""
    cwd = tmp_path_factory.mktemp("eight_step_run")
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--steps_per_epoch", "4", "--save_steps", "5",
                        "--num_epochs", "2", "--no_progress")
    assert result.returncode == 0, result.stderr
    return cwd


@shared_run
def ckpt_then_safetensors_run(tmp_path_factory, small_mnist):
    """A folder holding run/: one epoch of 20 steps in .ckpt (saves at steps 9, 18, 20), continued to 3 epochs
    in .safetensors."""
    cwd = tmp_path_factory.mktemp("ckpt_then_safetensors_run")
    common = ["--data_url", str(small_mnist), "--ckpt_dir", "run", "--steps_per_epoch", "20", "--save_steps", "9"]
    result = run_script(cwd, "train", *common, "--num_epochs", "1")
    assert result.returncode == 0, result.stderr
    result = run_script(cwd, "train", *common, "--num_epochs", "3", "--auto_resume", "--ckpt_format", "safetensors")
    assert result.returncode == 0, result.stderr
    return cwd


@shared_run
def one_run_per_format(tmp_path_factory, small_mnist):
    """A folder holding ckpt/ and safetensors/: a 'train' run in each format, 2 epochs of 20 steps saved every
    10, each copied to --train_url published_ckpt and published_safetensors."""
    cwd = tmp_path_factory.mktemp("one_run_per_format")
    for fmt in ("ckpt", "safetensors"):
        result = run_script(cwd, "train", "--data_url", str(small_mnist), "--ckpt_dir", fmt,
                            "--ckpt_format", fmt, "--num_epochs", "2", "--save_steps", "10",
                            "--train_url", f"published_{fmt}")
        assert result.returncode == 0, result.stderr
    return cwd


@shared_run
def one_epoch_run(tmp_path_factory, small_mnist):
    """ckpt/ after one QUICK epoch of 'train' (lenet-1_5.ckpt), for the tests that resume or infer from it to
    copy."""
    cwd = tmp_path_factory.mktemp("one_epoch_run")
    result = run_script(cwd, "train", "--num_epochs", "1", "--ckpt_dir", "ckpt", "--data_url", str(small_mnist),
                        *QUICK)
    assert result.returncode == 0, result.stderr
    return cwd / "ckpt"


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the one process, or xdist's controller: its workers inherit it
        os.environ[SESSION_FOLDER] = tempfile.mkdtemp(prefix="tutorial-tests-")


@contextmanager
def on_least_busy_core(holder):
    """Run the calling thread, and every process it starts meanwhile, on one core: the one that the
    fewest others (pytest-xdist's workers, the version matrix's threads) hold right now; on a machine
    with one core, where it runs. Why: docs/development.md#tests."""
    if len(ALL_CORES) < 2:
        yield
        return
    core = _claims(holder, claim=True)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        _claims(holder, claim=False)


def _claims(holder, claim):
    """Claim the least held core for `holder`, or drop its claim, in the session's shared claims file."""
    folder = Path(os.environ[SESSION_FOLDER])
    with open(folder / "cores.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "cores.json"
        claims = json.loads(path.read_text()) if path.exists() else {}
        claims.pop(holder, None)
        core = None
        if claim:
            core = min(ALL_CORES, key=lambda c: sum(held_core == c for held_core in claims.values()))
            claims[holder] = core
        path.write_text(json.dumps(claims))
        return core


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with on_least_busy_core(os.environ.get("PYTEST_XDIST_WORKER", "main")):
        yield


STARTED = []  # whether this process has started the version matrix


def start_version_matrix(nodeids):
    """The version matrix builds its environments and runs its cells in the background from here on, in
    this one process, beside the other tests; its tests, which run last, wait for what the cells did
    (test_versions_matrix.py). Once a session."""
    if STARTED:
        return
    STARTED.append(True)
    selected = {nodeid.split("[")[1].split("]")[0] if "[" in nodeid else "cross" for nodeid in nodeids
                if "test_versions_matrix.py::" in nodeid}
    if selected:
        import test_versions_matrix
        test_versions_matrix.start(selected)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(session, config, items):
    """For pytest-xdist's workers (`--dist loadgroup`, pyproject.toml): the tests that share a training run
    (a module-scoped fixture, or one of the shared runs above) go to one worker, so that the run happens
    once; the longest (LONGEST) go first, then the other slow ones, so that the quick ones fill the end;
    the version matrix's tests, which only wait for its cells, go last."""
    groups = group_by_shared_run(items)
    for item in items:
        if item.nodeid in groups:
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))

    def order(item):
        if item.module.__name__ == "test_versions_matrix":
            return 3, 0
        for rank, name in enumerate(LONGEST):
            if name in (item.name, item.module.__name__, groups.get(item.nodeid)):
                return 0, rank
        return (1 if item.get_closest_marker("slow") else 2), 0
    items.sort(key=order)


def group_by_shared_run(items):
    """{node ID: group} for the tests that share a run: a module-scoped fixture's run is its module's (named
    after the module), a shared run's is its own (named after the fixture); a test that uses two joins their
    groups into one, named after the first name of the two in alphabetical order. Every worker names them alike."""
    parent = {}

    def root(name):
        while parent[name] != name:
            name = parent[name]
        return name

    runs = {}
    for item in items:
        names = sorted({item.module.__name__ if definitions[-1].scope == "module" else fixture
                        for fixture, definitions in item._fixtureinfo.name2fixturedefs.items()
                        if definitions[-1].scope == "module" or fixture in SHARED_RUNS})
        for name in names:
            parent.setdefault(name, name)
        for name in names[1:]:
            first, other = sorted((root(names[0]), root(name)))
            parent[other] = first
        if names:
            runs[item.nodeid] = names[0]
    return {nodeid: root(name) for nodeid, name in runs.items()}


# What takes longest, measured (CPU seconds of a whole run, 2026-12-02), first, longest first: started
# late, one of them would leave the other workers idle at the end. The whole tutorial (116 s) is one
# process that nothing can share; a shared run's tests (named by the run) go to one worker whole.
LONGEST = ("test_full_tutorial_reaches_the_accuracy_floors_then_the_readme_steps_work", "ckpt_then_safetensors_run",
           "test_notebook_runs_twice_in_jupyterlab_then_the_readme_commands_work", "test_distributed",
           "eight_step_run", "test_interrupted_runs_continue_bit_for_bit")


@pytest.hookimpl(tryfirst=True)  # on a worker, before pytest-xdist reports the collection to the controller
def pytest_collection_finish(session):
    """Without pytest-xdist, the one process starts the version matrix once it has collected (after -k
    and -m deselect). A worker checks that pytest-xdist has grouped the tests as asked."""
    if hasattr(session.config, "workerinput"):
        check_groups(session)
    elif not session.config.option.collectonly:
        start_version_matrix([item.nodeid for item in session.items])


UNGROUPED = "ungrouped"  # a file in the session folder: a worker found its tests not grouped


def check_groups(session):
    """pytest-xdist names a test's group in its node ID (`test@group`); where it cannot, its
    loadgroup mode silently spreads the tests of a group over the workers, and a module's shared
    run happens on each of them (pytest-xdist 3.8 under pytest 9.2: pytest-dev/pytest-xdist#1386).
    A worker cannot stop the session cleanly: it tells the controller."""
    if session.config.getvalue("loadgroup") and any(item.get_closest_marker("xdist_group") and "@" not in item.nodeid
                                                    for item in session.items):
        Path(os.environ[SESSION_FOLDER], UNGROUPED).touch()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under pytest-xdist, the controller starts the version matrix when the first worker has collected,
    or stops the session if that worker's tests are not grouped."""
    if Path(os.environ[SESSION_FOLDER], UNGROUPED).exists():
        pytest.exit(f"pytest-xdist does not group tests under pytest {pytest.__version__} "
                    "(pytest-dev/pytest-xdist#1386): install requirements-test.txt, which pins pytest<9.2",
                    returncode=pytest.ExitCode.USAGE_ERROR)
    start_version_matrix(ids)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return
    matrix = sys.modules.get("test_versions_matrix")
    if matrix:
        matrix.stop()
    shutil.rmtree(os.environ[SESSION_FOLDER], ignore_errors=True)
