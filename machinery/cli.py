"""Running main.py's commands (their options are in options.py), and the checks that turn bad input
or a stop into one line."""
import ctypes
import errno
import logging
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .checkpoint_files import CheckpointError, claim_folder, disk_full, mindspore_log_silenced, newest_checkpoint, \
    release_folders, shown, table
from .cloud_storage import StorageError, check_reachable, check_train_url, is_remote, publish
from .compat import add_onnx_export
from mnist_data import DataError
from .options import BACKENDS, command_index, environment_device_id, parse_args
from .plotting import plot_training_log, show_if_interactive
from .resumable import LOG_NAME, Diverged, StopOnNonFinite, StopOnSignal, TrainingInterrupted, read_log  # noqa: F401 (for main.py)

# What MindSpore 2.10.0's GPU plugin (lib/plugin/libmindspore_gpu.so.11.6) links against, read from
# its ELF header (readelf -d): CUDA 11 (NVRTC of 11.2 or later), cuDNN 8, and the NVIDIA driver. Its other
# plugin, .so.11.1, differs only in libnvrtc.so.11.1.
CUDA_LIBRARIES = {
    "libcuda.so.1": "the NVIDIA driver",
    "libcudart.so.11.0": "the CUDA 11 runtime",
    "libcublas.so.11": "cuBLAS of CUDA 11",
    "libcufft.so.10": "cuFFT of CUDA 11",
    "libcurand.so.10": "cuRAND of CUDA 11",
    "libcusolver.so.11": "cuSOLVER of CUDA 11",
    "libcusparse.so.11": "cuSPARSE of CUDA 11",
    "libnvrtc.so.11.2": "NVRTC of CUDA 11.2 or later",
    "libcudnn.so.8": "cuDNN 8",
}


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def missing_cuda_libraries(load=ctypes.CDLL):
    """The libraries of CUDA_LIBRARIES that the dynamic loader cannot find, as 'name (what)'."""
    return [f"{name} ({what})" for name, what in CUDA_LIBRARIES.items() if not load_ok(load, name)]


def best_available():
    with mindspore_log_silenced(logging.WARNING):  # probing a device that is not installed logs a warning
        import mindspore as ms
        return next(d for d in BACKENDS if getattr(ms.device_context, d.lower()).is_available())


def check_device(args, load=ctypes.CDLL):
    """Before MindSpore starts on a device: for a GPU, say which CUDA libraries are missing; set
    args.device_id from --device_id or DEVICE_ID, or to None where it means nothing."""
    wants_gpu = args.device_target == "GPU"
    if wants_gpu and (platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64")):
        raise UsageError(f"MindSpore 2.10.0 has GPU support on Linux x86_64 only, not on "
                         f"{platform.system()} {platform.machine()}; use --device_target CPU")
    has_driver = platform.system() == "Linux" and load_ok(load, "libcuda.so.1")  # an NVIDIA GPU is there
    if wants_gpu or (args.device_target is None and has_driver):
        missing = missing_cuda_libraries(load)
        if missing:
            message = (f"MindSpore 2.10.0 on GPU needs the NVIDIA driver, CUDA 11.6 and cuDNN 8.5; "
                       f"the loader cannot find {', '.join(missing)}; install them and add their "
                       f"folder to LD_LIBRARY_PATH")
            if wants_gpu:
                raise UsageError(message + ", or use --device_target CPU")
            print(f"Not using the GPU: {message}")
    in_msrun = "MS_WORKER_NUM" in os.environ
    if args.device_id is not None and in_msrun:
        raise UsageError("msrun assigns a device to each worker itself; leave out --device_id")
    if args.device_id is None and not in_msrun:
        try:
            args.device_id = environment_device_id()
        except ValueError as error:
            raise UsageError(error) from None
    if args.device_id and (args.device_target or best_available()) == "CPU":
        print(f"Ignoring device id {args.device_id}: MindSpore's CPU backend is one device, id 0, "
              f"which uses all the cores")
        args.device_id = None


def only_train_under_msrun(shard, command):
    """`shard`, (rank, number of workers), once checked: under msrun only 'train' runs."""
    if shard[1] > 1 and command != "train":
        raise UsageError("under msrun, run the 'train' command; the others run in one process")
    return shard


def sink_mode_for_tests():
    """TUTORIAL_SINK_MODE=1 makes the tutorial's training ask for dataset sink mode on any device
    (tests use it on CPU); unset, run_training decides: sink mode on Ascend only."""
    return True if os.environ.get("TUTORIAL_SINK_MODE") == "1" else None


def load_ok(load, name):
    try:
        load(name)
        return True
    except OSError:
        return False


FIGURES_DIR = "images"  # in the working folder
FIGURE_COMMANDS = (None, "train", "infer", "curves")  # the tutorial (no command) and the commands that draw


def check_writable(path, what, fix):
    """Fail with one line unless `path` is a folder that can be written, or can be created: checked before
    any work, so that nothing is found unwritable only at the end. Creates nothing."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        where = f" ({error.filename} is a file)" if isinstance(error, NotADirectoryError) else ""
        raise UsageError(f"cannot write to {what} {path}: {error.strerror}{where}; {fix}") from None


def make_writable_dir(path, option):
    if Path(path).is_file():
        raise UsageError(f"cannot write to {option} {path}: it is a file, not a folder; pass a folder you can "
                         f"write to")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # write access, as the checkpoints will need it
            pass
    except OSError as error:
        raise UsageError(f"cannot write to {option} {path}: {error.strerror}; "
                         f"pass a folder you can write to") from None


def export_file(args, export, ckpt_file):
    """Run `export(name)`, which writes the model of `ckpt_file` as name + its extension, and give
    the file the path --file_name asks for (with the extension added if missing). MindSpore accepts
    only some characters in a name, so it writes into a temporary folder first; an existing file is
    never replaced. Return the path."""
    file_name, file_format = args.file_name, args.file_format
    if file_format == "ONNX":
        add_onnx_export()  # MindSpore 2.7.x has no ms.onnx
    suffix = "." + file_format.lower()
    if file_name.endswith(("/", os.sep)) or Path(file_name).is_dir():
        raise UsageError(f"--file_name {file_name} is a folder; give a file name, such as "
                         f"{Path(file_name) / 'lenet5'}")
    path = Path(file_name if file_name.lower().endswith(suffix) else file_name + suffix)
    if path.exists():
        raise UsageError(f"{path} already exists; pass another --file_name, or move the file away")
    with tempfile.TemporaryDirectory() as scratch:
        written = Path(export(os.path.join(scratch, "model")))
        if not written.is_file():
            raise UsageError(f"MindSpore could not write the {file_format} file; see its message above")
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
            with open(written, "rb") as source, open(path, "xb") as target:  # x: never over a file
                shutil.copyfileobj(source, target)
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror}; pass a --file_name in a folder "
                             f"you can write to") from None
    print(f"Exported {shown(ckpt_file)} to {path}, input shape (32, 1, 32, 32)")
    return path


def claim_dir(ckpt_dir, shard=(0, 1)):
    """Make sure `ckpt_dir` is writable and that no other process trains into it, and keep it so.

    Under msrun, rank 0 holds the shared folder and every worker its rank_<id>/ folder: a second
    msrun, or a single process, is refused, but the workers of one msrun are not.
    """
    make_writable_dir(ckpt_dir, "--ckpt_dir")
    rank, workers = shard
    folders = ([ckpt_dir] if rank == 0 else []) + ([os.path.join(ckpt_dir, f"rank_{rank}")] if workers > 1 else [])
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        claim_folder(folder, "python " + shlex.join(sys.argv))


def log_dir(ckpt_dir):
    """Where the 'train' run of `ckpt_dir` keeps its log: the folder, or rank 0's under msrun."""
    rank_0 = Path(ckpt_dir) / "rank_0"
    return rank_0 if not (Path(ckpt_dir) / LOG_NAME).exists() and (rank_0 / LOG_NAME).exists() else Path(ckpt_dir)


def save_curves(ckpt_dir, required=False):
    """Draw the curves of the run logged in `ckpt_dir`; return the figure's path and the log's (none
    without a log, unless `required`: a folder trained before logs existed has none)."""
    if Path(ckpt_dir).is_file():
        raise UsageError(f"--ckpt_dir {ckpt_dir} is a file, not a folder; pass the folder of a 'train' run, "
                         f"which holds its {LOG_NAME}")
    path = log_dir(ckpt_dir) / LOG_NAME
    rows = read_log(path)
    if not rows and not required:
        return []
    if not rows and path.is_file():
        raise UsageError(f"{path} has no complete row to draw (it is empty or damaged); train on with "
                         f"'python main.py train --auto_resume', or pass another --ckpt_dir")
    if not rows:
        raise UsageError(f"no training log in {ckpt_dir} ({LOG_NAME}): run 'python main.py train' first, "
                         f"or pass --ckpt_dir")
    return [*save_figures({"train_curves": plot_training_log(rows)}), path]


def save_figures(figures):
    """Save each figure of {name: figure} as images/<name>.png; return the paths."""
    paths = []
    for name, figure in figures.items():
        path = Path(FIGURES_DIR) / f"{name}.png"
        try:
            path.parent.mkdir(exist_ok=True)
            figure.savefig(path)
        except OSError as error:
            raise UsageError(f"cannot save {path}: {error.strerror}; run from a folder you can write to") from None
        print("Saved", path)
        paths.append(path)
    return paths


def run(main, argv=None):
    """Parse the command line, run `main(args)`, and copy what it returns to --train_url.

    Every error ends in one line on stderr and a non-zero exit code, without a traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch, which ProgressBar follows
    for sig in StopOnSignal.SIGNALS:  # those of this platform; train_resumable has its own, while it trains
        signal.signal(sig, _interrupt)
    try:
        check_reachable(args.data_url, "--data_url")
        if args.train_url:
            check_reachable(args.train_url, "--train_url")
        if args.train_url and args.command not in ("list", "curves"):  # the commands that copy their outputs
            if not is_remote(args.train_url):
                check_writable(args.train_url, "--train_url", "pass a --train_url you can write to")
            check_train_url(args.train_url, args.ckpt_dir)
        if args.command in FIGURE_COMMANDS:
            check_writable(FIGURES_DIR, "the figures' folder", "make it a folder you can write to, or run from "
                                                               "another folder")
        if args.command in (None, "resume"):  # MindSpore's ModelCheckpoint saves there
            check_path_length(args.ckpt_dir)
        if args.command == "list":
            print(table(args.ckpt_dir))
            return
        if args.command == "curves":
            save_curves(args.ckpt_dir, required=True)
            show_if_interactive()
            return
        check_device(args)
        outputs = main(args)
        if args.train_url:
            publish(outputs, args.train_url)
            print("Copied the outputs to", args.train_url)
        if _late_signals or _pending_signals:
            print("A stop signal arrived after training was complete, so it stopped nothing: the outputs are "
                  "finished" + (" and copied" if args.train_url else ""), file=sys.stderr)
    except (CheckpointError, DataError, StorageError, UsageError, Diverged) as error:
        sys.exit(f"error: {error}")
    except TrainingInterrupted as error:
        print(f"Training {error}. To continue: {continue_command(args, argv)}", file=sys.stderr)
        sys.exit(error.exit_code)
    except Interrupted as stop:
        print(stop_message(args, argv, stop.signum), file=sys.stderr)
        sys.exit(128 + stop.signum)
    except OSError as error:  # such as a full disk under the tutorial's ModelCheckpoint
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or choose another --ckpt_dir" if disk_full(error) else "check the folders you passed"
        sys.exit(f"error: {error.strerror or error}{where}, with --ckpt_dir {args.ckpt_dir}; {fix} "
                 f"(the files already saved are kept)")
    finally:
        release_folders()
    show_if_interactive()


# MindSpore's ModelCheckpoint refuses a folder whose absolute path is longer (_make_dir's MAX_PATH_LENGTH)
MINDSPORE_MAX_PATH = 1024


def check_path_length(ckpt_dir):
    """Fail with one line, before anything is created, if MindSpore's ModelCheckpoint would refuse
    `ckpt_dir` for the length of its path."""
    length = len(os.path.realpath(ckpt_dir))
    if length > MINDSPORE_MAX_PATH:
        raise UsageError(f"--ckpt_dir is {length} characters long as an absolute path, and MindSpore's "
                         f"ModelCheckpoint takes at most {MINDSPORE_MAX_PATH}; pass a shorter --ckpt_dir")


_late_signals = []  # stop signals that arrived once training was complete
_pending_signals = []  # stop signals that arrived while a finalizer ran, where raising would be lost


def trained(result):
    """Mark training as complete, and return `result`. From here on a stop signal stops nothing: the
    command finishes its figures and copies, as a signal after the last step of 'train' does, and ends
    with exit code 0; a line says that the signal came. (A signal while the training function's
    objects were freed, on its way out, counts as one after training too.)"""
    for sig in StopOnSignal.SIGNALS:
        signal.signal(sig, lambda signum, _frame: _late_signals.append(signum))
    _late_signals.extend(_pending_signals)
    _pending_signals.clear()
    return result


class Interrupted(Exception):
    """SIGINT or SIGTERM outside the training loop of 'train', which stops that loop by itself."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_held_signal = []  # a signal that arrived while MindSpore compiled a graph, held until it is done


def _interrupt(signum, frame):
    if _in_finalizer(frame):  # Python prints an exception raised in __del__ as a traceback, and drops it
        _pending_signals.append(signum)
        return
    if _compiling(frame):
        # Raised inside MindSpore's graph compiler, the stop would come out as about 30 [ERROR] ANALYZER
        # lines and a rank_0/om/analyze_fail.ir in the working folder: hold it, and deliver it again
        # shortly, until it lands outside the compiler (as the signal first received, even if
        # MindSpore's runtime passes it on as SIGTERM meanwhile).
        _held_signal[:] = _held_signal or [signum]
        again = threading.Timer(0.05, signal.raise_signal, (signum,))  # not os.kill: Windows would terminate
        again.daemon = True
        again.start()
        return
    signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the message short
    raise Interrupted(_held_signal[0] if _held_signal else signum)


def _compiling(frame):
    """Whether `frame` runs inside MindSpore's graph compiler (its Python parts, which it calls back)."""
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/mindspore/graph/_parse/" in path or (path.endswith("/mindspore/graph/api.py")
                                                 and frame.f_code.co_name == "compile"):
            return True
        frame = frame.f_back
    return False


def _in_finalizer(frame):
    """Whether `frame` runs inside a __del__ method, such as MindSpore's Cell.__del__."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _without(argv, option, takes_value=True):
    """`argv` without `option` (and its value)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = takes_value
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def continue_command(args, argv, ckpt_file=None):
    """The exact command that continues from what is on disk: 'train --auto_resume' for a 'train'
    run, the tutorial's 'resume --ckpt <file>' for its own steps, and else the command again."""
    if args.command == "train":
        rest = _without(argv, "--auto_resume", takes_value=False)
        rest.insert(command_index(rest, "train") + 1, "--auto_resume")
    elif args.command in (None, "resume") and ckpt_file:
        rest = _without(argv, "--ckpt")
        if args.command is None:
            rest = ["resume", *rest]
        at = command_index(rest, "resume") + 1
        rest[at:at] = ["--ckpt", str(ckpt_file)]
    else:
        rest = argv
    return shlex.join(["python", sys.argv[0], *rest])


def stop_message(args, argv, signum):
    """One line for a stop by `signum`: what is on disk, and the command that continues."""
    name = signal.Signals(signum).name
    if args.command in ("infer", "export", "curves", "list"):
        return f"Stopped by {name}; nothing was written. To run it again: {continue_command(args, argv)}"
    ckpt_dir = args.ckpt_dir if args.command != "train" else _train_folder(args.ckpt_dir)
    last = newest_checkpoint(ckpt_dir)
    if args.command == "train":
        kept = f"; the newest checkpoint is {shown(last)}" if last else " before training started; no checkpoint " \
                                                                      "was saved yet"
        return f"Stopped by {name}{kept}. To continue: {continue_command(args, argv)}"
    if last is None:
        return f"Stopped by {name}; no checkpoint was saved yet. To start again: {continue_command(args, argv)}"
    return (f"Stopped by {name}; the last complete checkpoint is {shown(last)}. To continue from it: "
            f"{continue_command(args, argv, shown(last))}")


def _train_folder(ckpt_dir):
    """Where 'train' keeps its checkpoints: `ckpt_dir`, or rank 0's folder under msrun."""
    return os.path.join(ckpt_dir, "rank_0") if "MS_WORKER_NUM" in os.environ else ckpt_dir
