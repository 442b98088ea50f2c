"""The command line of main.py: its options and commands. It imports nothing heavy, so that the
script answers --help and refuses a bad option at once, before MindSpore loads (seconds)."""
import argparse
import os
import sys

from mnist_data import SHIPPED_DIR

BACKENDS = ("Ascend", "GPU", "CPU")
DEFAULT_TRAIN_DIR = "ckpt/train"  # train's own folder, beside the tutorial's files in ckpt/


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


def environment_device_id():
    """The card that the environment variable DEVICE_ID names (the original tutorial's way), or None;
    a ValueError in one line when it is not a card number."""
    text = os.environ.get("DEVICE_ID", "").strip()
    if not text:
        return None
    try:
        return device_number(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"the environment variable DEVICE_ID must be 0 or a positive integer, "
                         f"got {os.environ['DEVICE_ID']!r}") from None


def check_command_line(argv=None):
    """The script's first step, before MindSpore loads (which takes seconds, and warns of a bad
    DEVICE_ID): answer --help, and refuse a bad option or DEVICE_ID in one line."""
    parse_args(argv)
    if "MS_WORKER_NUM" not in os.environ:  # under msrun, DEVICE_ID is msrun's business
        try:
            environment_device_id()
        except ValueError as error:
            sys.exit(f"error: {error}")
