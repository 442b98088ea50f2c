"""Stops: SIGINT, SIGTERM and SIGHUP turned into one line that says what is on disk and the command
that continues, and the rebuilding of that command."""
import os
import shlex
import signal
import sys
import threading
import time

from .checkpoint_files import newest_checkpoint, shown, stored_epoch
from .commands import command_of
from .errors import say
from .options import command_index, in_msrun

# SIGHUP: a closed terminal or SSH session, which would kill the process at once, with nothing saved.
# SIGBREAK (Ctrl-Break) exists on Windows only; there SIGTERM is never delivered by another process.
STOP_SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK") if hasattr(signal, name)]

STARTED = time.time()  # a checkpoint older than this process is another run's
LESSON_EPOCHS = 4  # the lesson trains 2 epochs, then resume_train 2 more

_late_signals = []  # stop signals that arrived once training was complete
_pending_signals = []  # stop signals that arrived while a finalizer ran, where raising would be lost


def catch_stop_signals():
    """From here on, a stop signal raises Interrupted (train_resumable has its own handlers while it trains)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def report_late_signals(copied):
    """One line if a stop signal arrived once training was complete."""
    if _late_signals or _pending_signals:
        say("A stop signal arrived after training was complete, so it stopped nothing: the outputs are "
            "finished" + (" and copied" if copied else ""))


def trained(result):
    """Mark training as complete (mark_complete), and return `result`."""
    mark_complete()
    return result


def mark_complete():
    """From here on a stop signal stops nothing: the command finishes its figures and copies, as a
    signal after the last step of 'train' does, and ends with exit code 0; a line says that the signal
    came. (A signal while the training function's objects were freed, on its way out, counts as one
    after training too.)"""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _late_signals.append(signum))
    _late_signals.extend(_pending_signals)
    _pending_signals.clear()


class Interrupted(Exception):
    """A stop signal outside the training loop of 'train', which stops that loop by itself."""

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


def continue_command(args, argv, ckpt_file=None, num_epochs=None):
    """The exact command that continues from what is on disk: 'train --auto_resume' for a 'train'
    run, the tutorial's 'resume --ckpt <file> --num_epochs <the epochs left>' for its own steps, and
    else the command again."""
    if args.command == "train":
        rest = _without(argv, "--auto_resume", takes_value=False)
        rest.insert(command_index(rest, "train") + 1, "--auto_resume")
    elif args.command in (None, "resume") and ckpt_file:
        rest = _without(_without(argv, "--ckpt"), "--num_epochs")
        if args.command is None:
            rest = ["resume", *rest]
        at = command_index(rest, "resume") + 1
        rest[at:at] = ["--ckpt", str(ckpt_file)]
        rest += ["--num_epochs", str(num_epochs)]
    else:
        rest = argv
    return shlex.join(["python", sys.argv[0], *rest])


def stop_message(args, argv, signum):
    """One line for a stop by `signum`: what this run saved, and the command that continues it to
    where it would have ended."""
    name = signal.Signals(signum).name
    if not command_of(args).trains:
        return f"Stopped by {name}; nothing was written. To run it again: {continue_command(args, argv)}"
    if args.command == "train":  # its continuation takes the newest checkpoint in its folder, whoever wrote it
        last = newest_checkpoint(_train_folder(args.ckpt_dir))
        kept = f"; the newest checkpoint is {shown(last)}" if last else " before training started; no checkpoint " \
                                                                      "was saved yet"
        return f"Stopped by {name}{kept}. To continue: {continue_command(args, argv)}"
    last = newest_checkpoint(args.ckpt_dir, since=STARTED)
    if last is None:
        return (f"Stopped by {name}; no checkpoint was saved by this run. To start again: "
                f"{continue_command(args, argv)}")
    target = LESSON_EPOCHS if args.command is None else stored_epoch(args.ckpt) + args.num_epochs
    left = target - stored_epoch(last)
    if left < 1:
        return (f"Stopped by {name} after the last epoch: training is complete, in {shown(last)}. To see its "
                f"predictions: python {sys.argv[0]} infer --ckpt {shown(last)}")
    return (f"Stopped by {name}; the last complete checkpoint is {shown(last)}. To continue from it: "
            f"{continue_command(args, argv, shown(last), left)}")


def _train_folder(ckpt_dir):
    """Where 'train' keeps its checkpoints: `ckpt_dir`, or rank 0's folder under msrun."""
    return os.path.join(ckpt_dir, "rank_0") if in_msrun() else ckpt_dir
