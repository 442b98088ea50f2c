"""main.py's commands, each declared once: its name, what it does, its own options and its handler.

A handler takes the lesson's definitions (lesson.py), the parsed options and the worker's shard
(rank, workers), and returns the files to copy to --train_url. This module imports nothing heavy:
options.py builds the parser from the table before MindSpore loads; the handlers import what they use."""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from .options import SEED_MAX, positive_float, positive_int, seed_int

DEFAULT_CKPT_DIR = "ckpt"  # the lesson's folder
DEFAULT_TRAIN_DIR = "ckpt/train"  # train's own folder, beside the lesson's files in ckpt/


@dataclass(frozen=True)
class Command:
    name: Optional[str]  # None: the lesson, which runs without a command
    help: str
    description: str
    handler: Optional[Callable] = None
    options: Tuple = ()  # its own options: (flags, argparse keyword arguments), as for argparse
    ckpt_dir: str = DEFAULT_CKPT_DIR
    trains: bool = False  # takes --steps_per_epoch, and holds --ckpt_dir while it writes there
    takes_ckpt: bool = False  # takes --ckpt: a file, 'latest' or 'best'
    runs: bool = True  # runs MindSpore on a device and takes the data, device and output options
    draws: bool = False  # saves figures in images/ (train and curves save theirs in the run's folder)
    distributed: bool = False  # runs under msrun
    uses_ckpt_dir: bool = True  # takes --ckpt_dir


def data_dir_of(args):
    from mnist_data import prepare_mnist

    from .cloud_storage import fetch_dir
    from .monitoring import progress_enabled
    return prepare_mnist(fetch_dir(args.data_url, "cache/data"), progress=progress_enabled())


def checkpoint_of(lesson, args):
    from .checkpoint_files import resolve
    return str(resolve(args.ckpt, args.ckpt_dir, lesson.LeNet5()))


def train(lesson, args, shard):
    from .checkpoint_files import all_checkpoints
    from .folder_lock import claim_dir
    from .resumable import TrainConfig, train_resumable
    from .stops import mark_complete, trained
    from .training_log import save_curves
    data_dir = data_dir_of(args)
    claim_dir(args.ckpt_dir, shard)
    last = trained(train_resumable(lesson.LeNet5, lesson.create_dataset, data_dir, args.ckpt_dir,
                                   TrainConfig.from_args(args), args.auto_resume, shard=shard,
                                   when_complete=mark_complete))
    return [*all_checkpoints(last.parent), *save_curves(args.ckpt_dir, lesson.save_figure)] if shard[0] == 0 else []


def resume(lesson, args, shard):
    from .checkpoint_files import run_files
    from .folder_lock import claim_dir
    from .monitoring import ProgressBar
    from .resumable import StopOnNonFinite
    from .stops import trained
    data_dir, ckpt_file = data_dir_of(args), checkpoint_of(lesson, args)
    args.ckpt = ckpt_file  # a stop counts the epochs left from it (stops.py)
    claim_dir(args.ckpt_dir, shard)
    last, _ = trained(lesson.resume_train(data_dir, ckpt_file, args.lr, num_epochs=args.num_epochs,
                                          callbacks=[StopOnNonFinite(), ProgressBar()], ckpt_dir=args.ckpt_dir,
                                          steps_per_epoch=args.steps_per_epoch))
    lesson.print_checkpoints("Checkpoints after resuming training:", last)
    return run_files(last)


def infer(lesson, args, shard):
    from .outputs import save_figures
    from .plotting import plot_confusion_matrix, plot_misclassified
    data_dir, ckpt_file = data_dir_of(args), checkpoint_of(lesson, args)
    figure, (images, labels, preds) = lesson.infer(data_dir, ckpt_file)
    figures = {"prediction": figure, "confusion_matrix": plot_confusion_matrix(labels, preds),
               "misclassified": plot_misclassified(images, labels, preds)}
    return [ckpt_file, *save_figures(figures, lesson.save_figure)]


def export(lesson, args, shard):
    from .outputs import export_file
    ckpt_file = checkpoint_of(lesson, args)
    return [export_file(args, lambda name: lesson.export_model(ckpt_file, args.file_format, name), ckpt_file)]


def list_checkpoints(lesson, args, shard):
    from .checkpoint_files import table
    print(table(args.ckpt_dir))
    return []


def convert(lesson, args, shard):
    from .convert import convert
    convert(args.src, args.dst, renames=args.rename, force=args.force, network=lesson.LeNet5())
    return []


def curves(lesson, args, shard):
    from .plotting import show_if_interactive
    from .training_log import save_curves
    save_curves(args.ckpt_dir, lesson.save_figure, required=True)
    show_if_interactive()
    return []


NUM_EPOCHS_HELP = {
    "train": "train until the run has this many epochs in all: a continued run counts the epochs it already has "
             "(default: 2)",
    "resume": "epochs to train after those the checkpoint holds: this many more, not up to (default: 2)",
}

LESSON = Command(None, "", "The MindSpore checkpoint tutorial on LeNet5 and MNIST. Without a command, run the "
                           "whole lesson, as Run All in the notebook does: train, resume from a checkpoint, "
                           "predict, and the sections beyond the original.", trains=True, draws=True)

COMMANDS = {command.name: command for command in (
    Command("train", "train, with exact resuming",
            "Train LeNet5, saving checkpoints that allow an exact continuation after any interruption.",
            train, ckpt_dir=DEFAULT_TRAIN_DIR, trains=True, distributed=True, options=(
                (("--num_epochs",), dict(type=positive_int, default=2, help=NUM_EPOCHS_HELP["train"])),
                (("--lr",), dict(type=positive_float, default=0.01, help="learning rate (default: 0.01)")),
                (("--seed",), dict(type=seed_int, default=0, metavar="S",
                                   help=f"seed for weights and data order, 0 to {SEED_MAX} (default: 0)")),
                (("--save_steps",), dict(type=positive_int, default=None, metavar="K",
                                         help="also save every K steps (default: once per epoch)")),
                (("--auto_resume",), dict(action="store_true",
                                          help="continue from the newest intact checkpoint in --ckpt_dir, if any "
                                               "(default: off: refuse a folder that has checkpoints)")),
                (("--no_eval",), dict(dest="evaluate", action="store_false",
                                      help="skip the test-set evaluation after each epoch, and so the best "
                                           "checkpoint (default: evaluate)")),
                (("--ckpt_format",), dict(choices=("ckpt", "safetensors"), default="ckpt",
                                          help="checkpoint file format (default: ckpt)")))),
    Command("resume", "the tutorial's resume step: continue from a checkpoint",
            "Continue training from a checkpoint, network and optimizer state, with a new learning rate, as "
            "the tutorial's resume_train does.", resume, trains=True, takes_ckpt=True, options=(
                (("--num_epochs",), dict(type=positive_int, default=2, help=NUM_EPOCHS_HELP["resume"])),
                (("--lr",), dict(type=positive_float, default=0.001, help="learning rate (default: 0.001)")))),
    Command("infer", "predict the whole test set and save the figures",
            "Predict the whole test set with a checkpoint, print the accuracy, and save images/prediction.png, "
            "confusion_matrix.png and misclassified.png.", infer, takes_ckpt=True, draws=True),
    Command("curves", "draw the curves of a 'train' run from its log",
            "Draw the loss of every step and the test metrics of every epoch of the 'train' run in --ckpt_dir, "
            "from its train_log.csv, with a mark where it was continued; save train_curves.png beside it.",
            curves, ckpt_dir=DEFAULT_TRAIN_DIR, runs=False),
    Command("list", "list the checkpoints in --ckpt_dir and its subfolders",
            "List every checkpoint in --ckpt_dir and its subfolders (train's, msrun's rank_<id>/): position, "
            "stored metrics, and whether each file is intact.", list_checkpoints, runs=False),
    Command("export", "export for deployment",
            "Write LeNet5 with a checkpoint's weights as one MindIR or ONNX file, for inference on batches of "
            "32 images of 1x32x32.", export, takes_ckpt=True, options=(
                (("--file_format",), dict(choices=("MINDIR", "ONNX"), default="MINDIR",
                                          help="file format (default: MINDIR)")),
                (("--file_name",), dict(default="lenet5", help="path of the file to write, with or without its "
                                                               "extension; an existing file is never replaced "
                                                               "(default: lenet5)")))),
    Command("convert", "convert LeNet5's weights between PyTorch and MindSpore",
            "Convert LeNet5's weights from PyTorch (.pth, .pt, .safetensors) to MindSpore (.ckpt, .safetensors) or "
            "back; the formats follow from the suffixes, the direction from SRC (docs/pytorch.md). Every parameter "
            "of LeNet5 must be filled, with its shape; the optimizer's state is left out.", convert, runs=False,
            uses_ckpt_dir=False, options=(
                (("src",), dict(metavar="SRC", help="the weights to convert")),
                (("dst",), dict(metavar="DST", help="the file to write; an existing one only with --force")),
                (("--rename",), dict(action="append", default=[], metavar="OLD=NEW",
                                     help="rename SRC's names before the name table: OLD is a prefix, or a regular "
                                          "expression if it holds one of \\^$*+?{}[]()|, matched at the start; "
                                          "repeatable (default: none)")),
                (("--force",), dict(action="store_true", help="overwrite DST if it exists (default: never)")))),
)}


def command_of(args):
    """The Command that `args` ask for: one of COMMANDS, or the lesson."""
    return COMMANDS[args.command] if args.command else LESSON
