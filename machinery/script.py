"""main.py as a script: its first cell hands the command line to `start`, which runs a command of the
table (commands.py) with the lesson's definitions, or the whole lesson, and then copies the outputs
to --train_url. Every error ends in one line on stderr and a non-zero exit code, without a traceback."""
import os
import sys
from pathlib import Path

from mnist_data import DataError, SettingError, check_mindspore

from .commands import command_of
from .errors import UsageError, end
from .options import check_command_line

LESSON_FIGURES = ("prediction", "confusion_matrix", "misclassified")  # what the lesson saves in images/


def start(argv=None):
    """Run what the command line asks for, and exit."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = check_command_line(argv)  # --help and bad options answered before MindSpore loads
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch, which ProgressBar follows
    if not command_of(args).runs:
        os.environ.pop("DEVICE_ID", None)  # no device used: MindSpore would warn of a bad one as it loads
    check_mindspore()  # no MindSpore, or one too old: one line, before anything imports it
    from . import stops
    stops.catch_stop_signals()
    from .checkpoint_files import CheckpointError, disk_full
    from .convert import ConvertError
    from .cloud_storage import StorageError, publish
    from .folder_lock import release_folders
    from .plotting import show_if_interactive
    from .resumable import Diverged, TrainingInterrupted
    try:
        command = command_of(args)
        check_outputs(args, command)
        from .lesson import load_definitions
        lesson = load_definitions()
        if command.runs:
            from .devices import check_device
            check_device(args, lesson.available_devices)
        outputs = run_lesson(lesson, args) if command.name is None else run_command(lesson, args, command)
        if args.train_url and command.runs:
            publish(outputs, args.train_url)
            print("Copied the outputs to", args.train_url)
        stops.report_late_signals(args.train_url)
        sys.stdout.flush()  # here, where a reader that has gone (list | head) is caught, not at exit
    except (CheckpointError, ConvertError, DataError, SettingError, StorageError, UsageError, Diverged) as error:
        end(f"error: {error}")
    except TrainingInterrupted as error:
        end(f"Training {error}. To continue: {stops.continue_command(args, argv)}", error.exit_code)
    except stops.Interrupted as stop:
        end(stops.stop_message(args, argv, stop.signum), 128 + stop.signum)
    except ValueError as error:
        if "Invalid loss" not in str(error):  # LossMonitor's, in the lesson: the loss is NaN or Inf
            raise
        end(f"error: training diverged: {error}; lower the learning rate (the files already saved are kept)")
    except BrokenPipeError:  # `python main.py list | head -1`: the reader has all it wants, as with `ls | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        sys.exit(0)
    except OSError as error:  # such as a full disk under the lesson's ModelCheckpoint
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or choose another --ckpt_dir" if disk_full(error) else "check the folders you passed"
        end(f"error: {error.strerror or error}{where}, with --ckpt_dir {args.ckpt_dir}; {fix} "
                 f"(the files already saved are kept)")
    finally:
        release_folders()
    show_if_interactive()
    sys.exit(0)


def check_outputs(args, command):
    """Before any work: the folders and URLs the run will write to."""
    from .cloud_storage import check_reachable, check_train_url, is_remote
    from .outputs import FIGURES_DIR, check_path_length, check_writable, make_writable_dir
    if not command.runs:
        return
    check_reachable(args.data_url, "--data_url")
    if args.train_url:
        check_reachable(args.train_url, "--train_url")
        if not is_remote(args.train_url):
            check_writable(args.train_url, "--train_url", "pass a --train_url you can write to")
        check_train_url(args.train_url, args.ckpt_dir)
    if command.draws:
        check_writable(FIGURES_DIR, "the figures' folder", "make it a folder you can write to, or run from "
                                                           "another folder")
    if command.trains and command.name != "train":  # MindSpore's ModelCheckpoint saves there
        check_path_length(args.ckpt_dir)
    if command.name is None:
        make_writable_dir(args.ckpt_dir, "--ckpt_dir")


def run_command(lesson, args, command):
    """Run `command` with the lesson's definitions; return the files to copy to --train_url."""
    shard = (0, 1)
    if command.runs:
        lesson.set_device(args.device_target, args.device_id)
        shard = lesson.init_data_parallel()
        if shard[1] > 1 and not command.distributed:
            raise UsageError("under msrun, run the 'train' command; the others run in one process")
    return command.handler(lesson, args, shard)


def run_lesson(lesson, args):
    """Run every cell of main.py in order, as Run All does in the notebook, with the settings of the
    command line; return this run's checkpoint files, exported model and figures."""
    from .checkpoint_files import run_files
    from .cloud_storage import fetch_dir
    from .stops import mark_complete
    settings = {"TUTORIAL_DEVICE_TARGET": args.device_target, "TUTORIAL_STEPS_PER_EPOCH": args.steps_per_epoch,
                "TUTORIAL_CKPT_DIR": args.ckpt_dir, "DEVICE_ID": args.device_id,
                "TUTORIAL_DATA_DIR": fetch_dir(args.data_url, "cache/data")}
    for name, value in settings.items():
        if value is not None:  # unset: the lesson's default, or the environment's
            os.environ[name] = str(value)
    # not "__main__", so that the script-only cell rests; registered, as MindSpore looks the cells' globals up
    module = sys.modules["__lesson__"] = type(sys)("__lesson__")
    module.__file__ = lesson.__file__
    exec(compile(Path(lesson.__file__).read_text(encoding="utf-8"), lesson.__file__, "exec"), module.__dict__)
    mark_complete()
    figures = [Path("images") / f"{name}.png" for name in LESSON_FIGURES]
    return [*run_files(module.CKPT_1), *run_files(module.CKPT_2), module.mindir, *figures]
