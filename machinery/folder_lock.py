"""Holding a checkpoint folder: one process at a time trains into it, whichever face started it."""
import os
import shlex
import sys

from .checkpoint_files import claim_folder, release_folders  # noqa: F401 (moves here)
from .outputs import make_writable_dir


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


