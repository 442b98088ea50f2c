"""Holding a checkpoint folder: one process at a time trains into it, the script's commands and the
lesson's training alike, in a terminal or in a notebook."""
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from .checkpoint_files import CheckpointError
from .outputs import make_writable_dir

LOCK_NAME = ".train.lock"
_held_locks = {}  # real path of a lock file -> its open, locked file; the system lets go when the process ends


class FolderInUse(CheckpointError):
    """Another process trains into the folder."""

    def _render_traceback_(self):  # in Jupyter, the line alone
        return [str(self)]


def _holder():
    """How another process names this one when it finds the folder taken."""
    if Path(sys.argv[0]).name == "main.py":
        return "python " + shlex.join(sys.argv)
    return "a Jupyter kernel or another Python program"


def claim_folder(ckpt_dir):
    """Take the lock that lets one process at a time train into `ckpt_dir`, or fail with one line
    naming the process that holds it; return whether this call took it (False: this process held it
    already). `fcntl.flock` locks die with their holder, so a process killed by SIGKILL leaves no stale
    lock; a clean exit also removes the lock file."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one run at a time is up to the user there (docs/platforms.md)
        return False
    path = Path(ckpt_dir) / LOCK_NAME
    if os.path.realpath(path) in _held_locks:
        return False
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its name yet"
            handle.close()
            raise FolderInUse(f"{ckpt_dir} is in use by another run ({holder}); wait for it to end, "
                              f"or choose another --ckpt_dir") from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}: {_holder()}\n")
    handle.flush()
    _held_locks[os.path.realpath(path)] = handle
    return True


def release_folder(ckpt_dir):
    """Remove the lock file of `ckpt_dir`, while still holding it (no other process can be), then let go."""
    path = os.path.realpath(Path(ckpt_dir) / LOCK_NAME)
    handle = _held_locks.pop(path, None)
    if handle is not None:
        Path(path).unlink(missing_ok=True)
        handle.close()


def release_folders():
    """Let go of every folder this process holds."""
    for path in list(_held_locks):
        release_folder(Path(path).parent)


@contextmanager
def hold_folder(ckpt_dir):
    """Train into `ckpt_dir` alone for the length of the block: refuse, in one line, a folder that
    another process trains into. A notebook cell run again takes the folder again."""
    os.makedirs(ckpt_dir, exist_ok=True)
    took = claim_folder(ckpt_dir)
    try:
        yield
    finally:
        if took:
            release_folder(ckpt_dir)


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
        claim_folder(folder)
