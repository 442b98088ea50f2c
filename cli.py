"""The command line of main.py: its options, and the checks that turn bad input into one line."""
import argparse
import os
import sys
import tempfile
from pathlib import Path

from checkpoint_files import CheckpointError, disk_full, table
from cloud_storage import StorageError, check_reachable, publish
from mnist_data import SHIPPED_DIR, DataError
from plotting import show_if_interactive
from resumable import TrainingInterrupted

BACKENDS = ("Ascend", "GPU", "CPU")


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


def build_parser():
    """The parser of main.py's command line, with a subparser for each command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data_url", default=str(SHIPPED_DIR),
                        help="MNIST folder: train/ and test/ with the IDX files, or the four .gz "
                             "files; obs:// or s3:// on ModelArts (default: MNIST/ next to main.py)")
    common.add_argument("--train_url", default=None,
                        help="folder, or obs:// or s3:// URL, that receives the outputs at the end: the "
                             "checkpoint files the command wrote or used, and the figures it saved "
                             "(default: none)")
    common.add_argument("--device_target", choices=BACKENDS, default=None,
                        help="backend to run on (default: the best available, in the order "
                             "Ascend, GPU, CPU)")
    common.add_argument("--ckpt_dir", default="ckpt", help="folder for the checkpoint files (default: ckpt)")
    common.add_argument("--no_progress", action="store_true",
                        help="no progress bars (default: bars on a terminal, none when output goes to a "
                             "file or a pipe)")
    steps = argparse.ArgumentParser(add_help=False)
    steps.add_argument("--steps_per_epoch", type=positive_int, default=None, metavar="M",
                       help="train only the first M batches of each epoch, for a quick run "
                            "(default: all 1875)")
    ckpt = argparse.ArgumentParser(add_help=False)
    ckpt.add_argument("--ckpt", default="latest",
                      help="checkpoint file, 'latest' (the newest in --ckpt_dir) or 'best' "
                           "(default: latest)")

    parser = OneLineErrorParser(
        parents=[common, steps],
        description="The MindSpore checkpoint tutorial on LeNet5 and MNIST. Without a command, "
                    "run it all: train, resume from a checkpoint, and predict.")
    commands = parser.add_subparsers(dest="command", title="commands")
    train_cmd = commands.add_parser("train", parents=[common, steps], help="train, with exact resuming",
                                    description="Train LeNet5, saving checkpoints that allow an exact "
                                                "continuation after any interruption.")
    train_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to train to (default: 2)")
    train_cmd.add_argument("--lr", type=positive_float, default=0.01, help="learning rate (default: 0.01)")
    train_cmd.add_argument("--seed", type=int, default=0, help="seed for weights and data order (default: 0)")
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
    resume_cmd = commands.add_parser("resume", parents=[common, steps, ckpt],
                                     help="the tutorial's resume step: continue from a checkpoint",
                                     description="Continue training from a checkpoint, network and "
                                                 "optimizer state, with a new learning rate, as the "
                                                 "tutorial's resume_train does.")
    resume_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to add (default: 2)")
    resume_cmd.add_argument("--lr", type=positive_float, default=0.001, help="learning rate (default: 0.001)")
    commands.add_parser("infer", parents=[common, ckpt], help="predict the whole test set and save the figures",
                        description="Predict the whole test set with a checkpoint, print the accuracy, and "
                                    "save images/prediction.png, confusion_matrix.png and misclassified.png.")
    commands.add_parser("list", parents=[common], help="list the checkpoints in --ckpt_dir",
                        description="List the checkpoints in --ckpt_dir: position, stored metrics, "
                                    "and whether each file is intact.")
    export_cmd = commands.add_parser("export", parents=[common, ckpt], help="export for deployment",
                                     description="Write LeNet5 with a checkpoint's weights as one "
                                                 "MindIR or ONNX file, for inference on batches of "
                                                 "32 images of 1x32x32.")
    export_cmd.add_argument("--file_format", choices=("MINDIR", "ONNX"), default="MINDIR",
                            help="file format (default: MINDIR)")
    export_cmd.add_argument("--file_name", default="lenet5",
                            help="path of the file to write, without its extension (default: lenet5)")
    return parser


def parse_args(argv=None):
    args, unknown = build_parser().parse_known_args(argv)  # ModelArts adds arguments of its own
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    return args


def make_writable_dir(path, option):
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # write access, as the checkpoints will need it
            pass
    except OSError as error:
        raise UsageError(f"cannot write to {option} {path}: {error.strerror}; "
                         f"pass a folder you can write to") from None


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
