"""The command line of main.py: its options, and the checks that turn bad input into one line."""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from checkpoint_files import CheckpointError, disk_full, table
from cloud_storage import StorageError, check_reachable, publish
from mnist_data import SHIPPED_DIR, DataError
from plotting import show_if_interactive
from resumable import TrainingInterrupted

BACKENDS = ("Ascend", "GPU", "CPU")
DEFAULT_TRAIN_DIR = "ckpt/train"  # train's own folder, beside the tutorial's files in ckpt/


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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


def add_common_options(parser, suppress=False):
    """The options every command takes. A command's own parser gives them no default (`suppress`),
    so that a value given before the command is kept, and one given after it wins."""
    def default(value):
        return argparse.SUPPRESS if suppress else value
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
    parser.add_argument("--no_progress", action="store_true", default=default(False),
                        help="no progress bars (default: bars on a terminal, none when output goes to a "
                             "file or a pipe)")


def add_ckpt_dir(parser, default_dir, suppress=False):
    parser.add_argument("--ckpt_dir", default=argparse.SUPPRESS if suppress else None,
                        help=f"folder for the checkpoint files (default: {default_dir})")


def add_steps(parser, suppress=False):
    parser.add_argument("--steps_per_epoch", type=positive_int, default=argparse.SUPPRESS if suppress else None,
                        metavar="M", help="train only the first M batches of each epoch, for a quick run "
                                          "(default: all 1875)")


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

    def command(name, help, description, ckpt_dir="ckpt", steps=False, ckpt=False):
        sub = commands.add_parser(name, help=help, description=description, allow_abbrev=False)
        add_common_options(sub, suppress=True)
        add_ckpt_dir(sub, ckpt_dir, suppress=True)
        if steps:
            add_steps(sub, suppress=True)
        if ckpt:
            add_ckpt(sub)
        return sub

    train_cmd = command("train", "train, with exact resuming",
                        "Train LeNet5, saving checkpoints that allow an exact continuation after any "
                        "interruption.", ckpt_dir=DEFAULT_TRAIN_DIR, steps=True)
    train_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to train to (default: 2)")
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
    resume_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to add (default: 2)")
    resume_cmd.add_argument("--lr", type=positive_float, default=0.001, help="learning rate (default: 0.001)")
    command("infer", "predict the whole test set and save the figures",
            "Predict the whole test set with a checkpoint, print the accuracy, and save "
            "images/prediction.png, confusion_matrix.png and misclassified.png.", ckpt=True)
    command("list", "list the checkpoints in --ckpt_dir and its subfolders",
            "List every checkpoint in --ckpt_dir and its subfolders (train's, msrun's rank_<id>/): "
            "position, stored metrics, and whether each file is intact.")
    export_cmd = command("export", "export for deployment",
                         "Write LeNet5 with a checkpoint's weights as one MindIR or ONNX file, for "
                         "inference on batches of 32 images of 1x32x32.", ckpt=True)
    export_cmd.add_argument("--file_format", choices=("MINDIR", "ONNX"), default="MINDIR",
                            help="file format (default: MINDIR)")
    export_cmd.add_argument("--file_name", default="lenet5",
                            help="path of the file to write, with or without its extension; an existing "
                                 "file is never replaced (default: lenet5)")
    return parser


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
    args, unknown = parser.parse_known_args(argv)
    names, help_of = option_names(parser), f"python {parser.prog} {args.command or ''}".rstrip() + " --help"
    for option in (item.split("=", 1)[0] for item in unknown if item.startswith("--")):
        whole = sorted(name for name in names if name.startswith(option) and name != option)
        if option not in names and whole:
            parser.exit(2, f"error: {option}: abbreviations are not accepted; write the whole option "
                           f"({' or '.join(whole)}); see python {parser.prog} --help\n")
    misplaced = [item.split("=", 1)[0] for item in unknown if item.split("=", 1)[0] in names]
    if args.steps_per_epoch is not None and args.command in ("infer", "list", "export"):
        misplaced.append("--steps_per_epoch")  # given before a command that does not take it
    if misplaced:
        where = f"'{args.command}'" if args.command else "the tutorial (no command)"
        parser.exit(2, f"error: {misplaced[0]} does not apply to {where}; see {help_of}\n")
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    if args.ckpt_dir is None:
        args.ckpt_dir = DEFAULT_TRAIN_DIR if args.command == "train" else "ckpt"
    return args


def make_writable_dir(path, option):
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
    print(f"Exported {os.path.relpath(ckpt_file)} to {path}, input shape (32, 1, 32, 32)")
    return path


def save_figures(figures):
    """Save each figure of {name: figure} as images/<name>.png; return the paths."""
    paths = []
    for name, figure in figures.items():
        path = Path("images") / f"{name}.png"
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
    args = parse_args(argv)
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch, which ProgressBar follows
    try:
        check_reachable(args.data_url, "--data_url")
        if args.train_url:
            check_reachable(args.train_url, "--train_url")
        if args.command == "list":
            print(table(args.ckpt_dir))
            return
        outputs = main(args)
        if args.train_url:
            publish(outputs, args.train_url)
            print("Copied the outputs to", args.train_url)
    except (CheckpointError, DataError, StorageError, UsageError) as error:
        sys.exit(f"error: {error}")
    except TrainingInterrupted as error:
        print(f"Training {error}. To continue: python main.py train --auto_resume "
              f"--ckpt_dir {args.ckpt_dir} (with the same options)", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit("Interrupted before training started; nothing was saved.")
    except OSError as error:  # such as a full disk under the tutorial's ModelCheckpoint
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or choose another --ckpt_dir" if disk_full(error) else "check the folders you passed"
        sys.exit(f"error: {error.strerror or error}{where}, with --ckpt_dir {args.ckpt_dir}; {fix} "
                 f"(the files already saved are kept)")
    show_if_interactive()
