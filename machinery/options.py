"""The command line of main.py: its options and commands. It imports nothing heavy, so that the
script answers --help and refuses a bad option at once, before MindSpore loads (seconds)."""
import argparse
import os
import sys

from mnist_data import MNIST_STEPS_PER_EPOCH, SHIPPED_DIR, check_steps_per_epoch
from .errors import end

BACKENDS = ("Ascend", "GPU", "CPU")


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


def steps_per_epoch(text):
    """--steps_per_epoch: checked as TUTORIAL_STEPS_PER_EPOCH is in the notebook."""
    try:
        return check_steps_per_epoch(text, name="--steps_per_epoch")
    except ValueError as error:
        raise argparse.ArgumentTypeError("must " + str(error).split(" must ", 1)[1]) from None


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
                             "variable DEVICE_ID sets it too; ignored on CPU, and refused under msrun, "
                             "which assigns the cards itself (default: DEVICE_ID, or 0)")


def add_command_options(parser, command, suppress=False):
    """The options that depend on what `command` (a commands.Command) does, and its own."""
    if command.uses_ckpt_dir:
        parser.add_argument("--ckpt_dir", default=argparse.SUPPRESS if suppress else None,
                            help=f"folder for the checkpoint files (default: {command.ckpt_dir})")
    if command.trains:
        parser.add_argument("--steps_per_epoch", type=steps_per_epoch, default=argparse.SUPPRESS if suppress else None,
                            metavar="M", help=f"train M batches per epoch, on 32*M training images drawn at random, "
                                              f"for a quick run (default: all {MNIST_STEPS_PER_EPOCH})")
    if command.takes_ckpt:
        parser.add_argument("--ckpt", default="latest",
                            help="checkpoint file, 'latest' (the furthest position among the intact checkpoints "
                                 "in --ckpt_dir and its subfolders) or 'best' (the highest stored accuracy) "
                                 "(default: latest)")
    for flags, settings in command.options:
        parser.add_argument(*flags, **settings)


def build_parser():
    """The parser of main.py's command line, with a subparser for each command of the table."""
    from .commands import COMMANDS, LESSON
    parser = OneLineErrorParser(allow_abbrev=False, description=LESSON.description)
    add_common_options(parser)
    add_command_options(parser, LESSON)
    subparsers = parser.add_subparsers(dest="command", title="commands")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.description, allow_abbrev=False)
        add_common_options(sub, suppress=True, runs=command.runs)
        add_command_options(sub, command, suppress=True)
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


def command_of(args):
    from .commands import command_of
    return command_of(args)


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
    if args.steps_per_epoch is not None and not command_of(args).trains:
        misplaced.append("--steps_per_epoch")  # given before a command that does not take it
    if args.ckpt_dir is not None and not command_of(args).uses_ckpt_dir:
        misplaced.append("--ckpt_dir")
    if misplaced:
        where = f"'{args.command}'" if args.command else "the tutorial (no command)"
        parser.exit(2, f"error: {misplaced[0]} does not apply to {where}; see {help_of}\n")
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    if args.ckpt_dir is None:
        args.ckpt_dir = command_of(args).ckpt_dir  # given before a command that takes none: refused above
    return args


def in_msrun():
    """Whether msrun started this process (it sets MS_WORKER_NUM for its workers)."""
    return "MS_WORKER_NUM" in os.environ


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
    DEVICE_ID): answer --help, and refuse a bad option, or a bad DEVICE_ID where a device is used, in
    one line. Returns the options."""
    args = parse_args(argv)
    if command_of(args).runs and not in_msrun():  # under msrun, DEVICE_ID is msrun's
        try:
            environment_device_id()
        except ValueError as error:
            end(f"error: {error}")
    return args
