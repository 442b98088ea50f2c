"""Checkpoint files on disk: finding them, reading them with integrity checks, and listing them."""
import errno
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

import mindspore as ms

FORMATS = ("ckpt", "safetensors")
# <prefix>-<epoch>_<step in epoch>.<format>, as ModelCheckpoint names them; <prefix>-best.<format>
REGULAR = re.compile(r"(?P<prefix>.+)-(?P<epoch>\d+)_(?P<step>\d+)\.(?P<format>ckpt|safetensors)")
RUN_INFO = ("epoch_num", "step_num", "steps_per_epoch", "seed", "best_acc", "acc", "loss")


class CheckpointError(Exception):
    """A checkpoint file that cannot be used or written: missing, damaged, not for this network."""


@contextmanager
def mindspore_log_silenced(level=logging.CRITICAL):
    """Silence MindSpore's log up to `level`, where it would only repeat, vaguely, an error we report."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def read_checkpoint(path):
    """Load `path` with its CRC checked; return its parameter dictionary."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    fmt = path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise CheckpointError(f"{path}: not a checkpoint (expected a .ckpt or .safetensors file)")
    try:
        with mindspore_log_silenced():
            return ms.load_checkpoint(str(path), crc_check=True, format=fmt)
    except (ValueError, RuntimeError, OSError, TypeError):
        raise CheckpointError(f"{path}: damaged or not a checkpoint (its format or CRC check failed); "
                              f"use another checkpoint file") from None


def shown(path):
    """`path` relative to the current folder, or absolute where it cannot be (Windows: another drive)."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return os.path.abspath(path)


def disk_full(error):
    """Whether `error` reports a full disk: by an OSError's errno, or by safetensors' message."""
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error)


def write_checkpoint(network, path, info, fmt="ckpt"):
    """Save `network` and the numbers `info` to `path` with a CRC, so that the file appears under
    its name only once complete and on disk. A failed save leaves no partial file behind."""
    path = Path(path)
    partial = path.with_name(".saving-" + path.name)
    try:
        with mindspore_log_silenced():
            ms.save_checkpoint(network, str(partial), append_dict=info, crc_check=True, format=fmt)
        publish_durably(partial, path)
    except Exception as error:  # OSError, or safetensors' own error type for the same failures
        for leftover in (partial, partial.with_suffix(".tmp")):  # ours, and MindSpore's temporary file
            leftover.unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error)
        fix = "free some space or choose" if disk_full(error) else "check or choose"
        raise CheckpointError(f"cannot save {path}: {reason}; {fix} another --ckpt_dir "
                              f"(the checkpoints already there are kept)") from None


def check_shapes(params, net, path):
    """Fail with one line if the stored parameters do not fit `net`."""
    for name, param in net.parameters_dict().items():
        if name not in params:
            raise CheckpointError(f"{path}: has no parameter {name}; it was not saved from LeNet5")
        if tuple(params[name].shape) != tuple(param.shape):
            raise CheckpointError(f"{path}: parameter {name} has shape {tuple(params[name].shape)}, "
                                  f"LeNet5 needs {tuple(param.shape)}")


def run_info(params):
    """The numbers stored beside the parameters (epoch, step, seed, metrics), as Python values."""
    return {key: params[key].asnumpy().item() for key in RUN_INFO if key in params}


def regular_checkpoints(ckpt_dir, prefix=None):
    """Checkpoint files named <prefix>-<epoch>_<step>, newest first (by epoch, then step)."""
    found = []
    for path in Path(ckpt_dir).glob("*-*_*.*"):
        match = REGULAR.fullmatch(path.name)
        if match and not path.name.startswith(".") and (prefix is None or match["prefix"] == prefix):
            found.append((int(match["epoch"]), int(match["step"]), path.stat().st_mtime, path))
    return [path for *_, path in sorted(found, reverse=True)]


def all_checkpoints(ckpt_dir):
    """Every checkpoint file in `ckpt_dir`, newest written first; not those still being written."""
    paths = [p for fmt in FORMATS for p in Path(ckpt_dir).glob(f"*.{fmt}") if not p.name.startswith(".")]
    return sorted(paths, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def resolve(ckpt, ckpt_dir, net=None, prefix="lenet"):
    """Turn --ckpt (a path, 'latest' or 'best') into a file path; with `net`, check that the file
    is an intact checkpoint that fits it."""
    if ckpt == "best":
        found = [Path(ckpt_dir) / f"{prefix}-best.{fmt}" for fmt in FORMATS]
        found = [path for path in found if path.exists()]
        if not found:
            raise CheckpointError(f"no {prefix}-best checkpoint in {ckpt_dir}: train with evaluation "
                                  f"on (the default) to keep one")
        path = found[0]
    elif ckpt == "latest":
        latest = [p for p in all_checkpoints(ckpt_dir) if "-best." not in p.name]
        if not latest:
            raise CheckpointError(f"no checkpoint in {ckpt_dir} yet: run 'python main.py train' "
                                  f"first, or pass --ckpt_dir")
        path = latest[0]
    else:
        path = Path(ckpt)
    if net is not None:
        check_shapes(read_checkpoint(path), net, path)
    return path


def run_files(ckpt_file):
    """The files of the run that wrote `ckpt_file`: those that share its prefix."""
    ckpt_file = Path(ckpt_file)
    return sorted(ckpt_file.parent.glob(f"{ckpt_file.name.rsplit('-', 1)[0]}-*"))


def publish_durably(partial, path):
    """Give the finished file `partial` the name `path`, its data and its new name both on disk
    first, so that a crash at any moment leaves either the old state or the complete file.

    Where the OS cannot open a folder (Windows: no os.O_DIRECTORY), the new name is not synced
    separately: os.replace is MoveFileEx with MOVEFILE_REPLACE_EXISTING there, and NTFS journals
    the rename itself, so a crash still leaves the old file or the complete new one."""
    _fsync(partial)
    os.replace(partial, path)
    if hasattr(os, "O_DIRECTORY"):
        _fsync(Path(path).parent)


def _fsync(path):
    if Path(path).is_dir():
        flags = os.O_RDONLY | os.O_DIRECTORY
    else:  # Windows flushes (FlushFileBuffers) only a handle open for writing
        flags = os.O_RDONLY if hasattr(os, "O_DIRECTORY") else os.O_RDWR | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def table(ckpt_dir):
    """A text table of the checkpoints in `ckpt_dir`: file, epoch, step, metrics, intact."""
    rows = [("file", "epoch", "global step", "acc", "loss", "best acc", "intact")]
    for path in sorted(all_checkpoints(ckpt_dir), key=lambda p: p.name):
        try:
            info, intact = run_info(read_checkpoint(path)), "yes"
        except CheckpointError:
            info, intact = {}, "NO: damaged"
        rows.append((path.name, *(_cell(info.get(key)) for key in
                                   ("epoch_num", "step_num", "acc", "loss", "best_acc")), intact))
    if len(rows) == 1:
        return f"no checkpoints in {ckpt_dir}"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _cell(value):
    if value is None or value == -1:  # -1: no best accuracy yet
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
