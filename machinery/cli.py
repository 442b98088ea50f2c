"""The command line of main.py: its options, and the checks that turn bad input into one line."""
import argparse
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
from mnist_data import SHIPPED_DIR, DataError
from .plotting import plot_training_log, show_if_interactive
from .resumable import LOG_NAME, Diverged, StopOnNonFinite, StopOnSignal, TrainingInterrupted, read_log  # noqa: F401 (for main.py)

BACKENDS = ("Ascend", "GPU", "CPU")
DEFAULT_TRAIN_DIR = "ckpt/train"  # train's own folder, beside the tutorial's files in ckpt/
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


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def device_number(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports a bad option in one line, like every other error, rather than with the usage text."""

    def error(self, message):
        self.exit(2, f"error: {message}; see python {self.prog} --help\n")


SEED_MAX = 2**32 - 1  # MindSpore's seeds are unsigned 32-bit integers


def seed_int(text):
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX}, got {text}")
    return value


def add_common_options(parser, suppress=False, runs=True):
    """The options every command takes. A command's own parser gives them no default (`suppress`),
    so that a value given before the command is kept, and one given after it wins. Those about data,
    device and outputs only where the command uses them (`runs`): 'list' and 'curves' read files only."""
    def default(value):
        return argparse.SUPPRESS if suppress else value
    parser.add_argument("--no_progress", action="store_true", default=default(False),
                        help="no progress bars (default: bars on a terminal, none when output goes to a "
                             "file or a pipe)")
    if not runs:
        return
    parser.add_argument("--data_url", default=default(str(SHIPPED_DIR)),
                        help="MNIST folder: train/ and test/ with the IDX files, or the four .gz "
                             "files; obs:// or s3:// on ModelArts (default: MNIST/ next to main.py)")
    parser.add_argument("--train_url", default=default(None),
                        help="folder, or obs:// or s3:// URL, that receives the outputs at the end: the "
                             "checkpoint files the command wrote or used, and the figures it saved "
                             "(default: none)")
    parser.add_argument("--device_target", choices=BACKENDS, default=default(None),
                        help="backend to run on (default: the best available, in the order "
                             "Ascend, GPU, CPU)")
    parser.add_argument("--device_id", type=device_number, default=default(None), metavar="N",
                        help="which GPU or Ascend card of this host to use, from 0; the environment "
                             "variable DEVICE_ID sets it too; ignored on CPU and under msrun, which "
                             "assigns the cards itself (default: DEVICE_ID, or 0)")


def add_ckpt_dir(parser, default_dir, suppress=False):
    parser.add_argument("--ckpt_dir", default=argparse.SUPPRESS if suppress else None,
                        help=f"folder for the checkpoint files (default: {default_dir})")


def add_steps(parser, suppress=False):
    parser.add_argument("--steps_per_epoch", type=positive_int, default=argparse.SUPPRESS if suppress else None,
                        metavar="M", help="train M batches per epoch, on 32*M training images drawn at random, "
                                          "for a quick run (default: all 1875)")


def add_ckpt(parser):
    parser.add_argument("--ckpt", default="latest",
                        help="checkpoint file, 'latest' (the furthest position among the intact checkpoints "
                             "in --ckpt_dir and its subfolders) or 'best' (the highest stored accuracy) "
                             "(default: latest)")


def build_parser():
    """The parser of main.py's command line, with a subparser for each command."""
    parser = OneLineErrorParser(
        allow_abbrev=False,
        description="The MindSpore checkpoint tutorial on LeNet5 and MNIST. Without a command, "
                    "run it all: train, resume from a checkpoint, and predict.")
    add_common_options(parser)
    add_ckpt_dir(parser, "ckpt")
    add_steps(parser)
    commands = parser.add_subparsers(dest="command", title="commands")

    def command(name, help, description, ckpt_dir="ckpt", steps=False, ckpt=False, runs=True):
        sub = commands.add_parser(name, help=help, description=description, allow_abbrev=False)
        add_common_options(sub, suppress=True, runs=runs)
        add_ckpt_dir(sub, ckpt_dir, suppress=True)
        if steps:
            add_steps(sub, suppress=True)
        if ckpt:
            add_ckpt(sub)
        return sub

    train_cmd = command("train", "train, with exact resuming",
                        "Train LeNet5, saving checkpoints that allow an exact continuation after any "
                        "interruption.", ckpt_dir=DEFAULT_TRAIN_DIR, steps=True)
    train_cmd.add_argument("--num_epochs", type=positive_int, default=2,
                           help="train until the run has this many epochs in all: a continued run counts the "
                                "epochs it already has (default: 2)")
    train_cmd.add_argument("--lr", type=positive_float, default=0.01, help="learning rate (default: 0.01)")
    train_cmd.add_argument("--seed", type=seed_int, default=0, metavar="S",
                           help=f"seed for weights and data order, 0 to {SEED_MAX} (default: 0)")
    train_cmd.add_argument("--save_steps", type=positive_int, default=None, metavar="K",
                           help="also save every K steps (default: once per epoch)")
    train_cmd.add_argument("--auto_resume", action="store_true",
                           help="continue from the newest intact checkpoint in --ckpt_dir, if any (default: off: "
                                "refuse a folder that has checkpoints)")
    train_cmd.add_argument("--no_eval", dest="evaluate", action="store_false",
                           help="skip the test-set evaluation after each epoch, and so the best checkpoint "
                                "(default: evaluate)")
    train_cmd.add_argument("--ckpt_format", choices=("ckpt", "safetensors"), default="ckpt",
                           help="checkpoint file format (default: ckpt)")
    resume_cmd = command("resume", "the tutorial's resume step: continue from a checkpoint",
                         "Continue training from a checkpoint, network and optimizer state, with a new "
                         "learning rate, as the tutorial's resume_train does.", steps=True, ckpt=True)
    resume_cmd.add_argument("--num_epochs", type=positive_int, default=2,
                            help="epochs to train after those the checkpoint holds: this many more, not "
                                 "up to (default: 2)")
    resume_cmd.add_argument("--lr", type=positive_float, default=0.001, help="learning rate (default: 0.001)")
    command("infer", "predict the whole test set and save the figures",
            "Predict the whole test set with a checkpoint, print the accuracy, and save "
            "images/prediction.png, confusion_matrix.png and misclassified.png.", ckpt=True)
    command("curves", "draw the curves of a 'train' run from its log",
            "Draw the loss of every step and the test metrics of every epoch of the 'train' run in "
            "--ckpt_dir, from its train_log.csv, with a mark where it was continued; save "
            "images/train_curves.png.", ckpt_dir=DEFAULT_TRAIN_DIR, runs=False)
    command("list", "list the checkpoints in --ckpt_dir and its subfolders",
            "List every checkpoint in --ckpt_dir and its subfolders (train's, msrun's rank_<id>/): "
            "position, stored metrics, and whether each file is intact.", runs=False)
    export_cmd = command("export", "export for deployment",
                         "Write LeNet5 with a checkpoint's weights as one MindIR or ONNX file, for "
                         "inference on batches of 32 images of 1x32x32.", ckpt=True)
    export_cmd.add_argument("--file_format", choices=("MINDIR", "ONNX"), default="MINDIR",
                            help="file format (default: MINDIR)")
    export_cmd.add_argument("--file_name", default="lenet5",
                            help="path of the file to write, with or without its extension; an existing "
                                 "file is never replaced (default: lenet5)")
    return parser


def commands_of(parser):
    """{name: parser} of `parser`'s commands."""
    return next(action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def value_options(parser):
    """The option strings of `parser` and its commands that take a value."""
    found = {name for action in parser._actions if action.option_strings and action.nargs != 0
             for name in action.option_strings}
    for sub in commands_of(parser).values():
        found |= {name for action in sub._actions if action.option_strings and action.nargs != 0
                  for name in action.option_strings}
    return found


def before_command(parser, argv):
    """Refuse, in one line, an option of a command given before the command, where only the common
    options go (argparse would take its value for the command): say where it belongs."""
    commands, takes_value = commands_of(parser), value_options(parser)
    own = {name for action in parser._actions for name in action.option_strings}
    misplaced, skip, command = [], False, None
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif arg in commands:
            command = arg
            break
        elif name.startswith("--"):
            if name not in own and name in option_names(parser):
                misplaced.append(name)
            skip = name in takes_value and "=" not in arg
    if not misplaced:
        return
    option = misplaced[0]
    if command is None:
        users = sorted(name for name, sub in commands.items() if option in option_names(sub))
        parser.exit(2, f"error: {option} does not apply to the tutorial (no command); it is an option of "
                       f"{' and '.join(users)}, after the command; see python {parser.prog} --help\n")
    help_of = f"see python {parser.prog} {command} --help"
    if option in option_names(commands[command]):
        parser.exit(2, f"error: {option} is an option of '{command}' and must come after it "
                       f"(python {parser.prog} {command} {option} ...); {help_of}\n")
    parser.exit(2, f"error: {option} does not apply to '{command}'; {help_of}\n")


def command_index(argv, command):
    """Where `command` stands in `argv`: the first argument equal to it that is not an option's value
    (`--ckpt_dir train train`: the second one)."""
    takes_value = value_options(build_parser())
    skip = False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == command:
            return index
        else:
            skip = arg in takes_value
    raise ValueError(f"{command} is not in {argv}")


def option_names(parser):
    """Every option string of `parser` and of its commands."""
    names = set()
    for action in parser._actions:
        names.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= option_names(sub)
    return names


def parse_args(argv=None):
    """Parse the command line. Unknown arguments are ignored (ModelArts adds its own), but not an
    abbreviation of one of ours, nor one of ours that the command does not take."""
    parser = build_parser()
    before_command(parser, sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    names, help_of = option_names(parser), f"python {parser.prog} {args.command or ''}".rstrip() + " --help"
    for option in (item.split("=", 1)[0] for item in unknown if item.startswith("--")):
        whole = sorted(name for name in names if name.startswith(option) and name != option)
        if option not in names and whole:
            parser.exit(2, f"error: {option}: abbreviations are not accepted; write the whole option "
                           f"({' or '.join(whole)}); see {help_of}\n")
    misplaced = [item.split("=", 1)[0] for item in unknown if item.split("=", 1)[0] in names]
    if args.steps_per_epoch is not None and args.command in ("infer", "list", "export"):
        misplaced.append("--steps_per_epoch")  # given before a command that does not take it
    if misplaced:
        where = f"'{args.command}'" if args.command else "the tutorial (no command)"
        parser.exit(2, f"error: {misplaced[0]} does not apply to {where}; see {help_of}\n")
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    if args.ckpt_dir is None:
        args.ckpt_dir = DEFAULT_TRAIN_DIR if args.command in ("train", "curves") else "ckpt"
    return args


def missing_cuda_libraries(load=ctypes.CDLL):
    """The libraries of CUDA_LIBRARIES that the dynamic loader cannot find, as 'name (what)'."""
    missing = []
    for name, what in CUDA_LIBRARIES.items():
        try:
            load(name)
        except OSError:
            missing.append(f"{name} ({what})")
    return missing


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
    if args.device_id is None and not in_msrun and os.environ.get("DEVICE_ID", "").strip():
        try:
            args.device_id = device_number(os.environ["DEVICE_ID"])
        except (ValueError, argparse.ArgumentTypeError):
            raise UsageError(f"the environment variable DEVICE_ID must be 0 or a positive integer, "
                             f"got {os.environ['DEVICE_ID']!r}") from None
    if args.device_id and (args.device_target or best_available()) == "CPU":
        print(f"Ignoring device id {args.device_id}: MindSpore's CPU backend is one device, id 0, "
              f"which uses all the cores")
        args.device_id = None


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
