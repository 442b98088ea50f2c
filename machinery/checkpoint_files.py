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
RUN_INFO = ("epoch_num", "step_num", "steps_per_epoch", "seed", "best_acc", "acc", "loss", "workers")


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
    """Fail with one line if the stored parameters do not fit `net`: each must be there, with its shape
    and its dtype (load_param_into_net casts no dtype, and fails on another)."""
    for name, param in net.parameters_dict().items():
        if name not in params:
            raise CheckpointError(f"{path}: has no parameter {name}; it was not saved from LeNet5")
        if tuple(params[name].shape) != tuple(param.shape):
            raise CheckpointError(f"{path}: parameter {name} has shape {tuple(params[name].shape)}, "
                                  f"LeNet5 needs {tuple(param.shape)}")
        if params[name].dtype != param.dtype:
            raise CheckpointError(f"{path}: parameter {name} is {params[name].dtype}, LeNet5 needs "
                                  f"{param.dtype}; use a checkpoint saved from LeNet5")


def run_info(params):
    """The numbers stored beside the parameters (epoch, step, seed, metrics), as Python values."""
    return {key: params[key].asnumpy().item() for key in RUN_INFO if key in params}


def regular_checkpoints(ckpt_dir, prefix=None):
    """Checkpoint files named <prefix>-<epoch>_<step>, newest first (by epoch, then step)."""
    found = []
    for path in Path(ckpt_dir).glob("*-*_*.*"):
        match = REGULAR.fullmatch(path.name)
        if match and not path.name.startswith(".") and path.is_file() and (prefix is None or match["prefix"] == prefix):
            found.append((int(match["epoch"]), int(match["step"]), path.stat().st_mtime, path))
    return [path for *_, path in sorted(found, reverse=True)]


def all_checkpoints(ckpt_dir):
    """Every checkpoint file in `ckpt_dir`, newest written first; not those still being written, nor a link
    to nothing (its stat fails) or to a folder."""
    paths = [p for fmt in FORMATS for p in Path(ckpt_dir).glob(f"*.{fmt}") if not p.name.startswith(".")
             and p.is_file()]
    return sorted(paths, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def checkpoint_tree(ckpt_dir):
    """Every checkpoint file in `ckpt_dir` and in the folders below it (msrun's rank_<id>/, the
    tutorial's and train's folders), whichever command wrote it; not those still being written.

    A linked folder is searched like a real one (Path.rglob skips them); a link to a folder that holds
    it would make the search endless, and is refused in one line."""
    check_dir(ckpt_dir)
    found = []

    def search(folder, above):  # above: (device, inode) of each folder from ckpt_dir down to `folder`
        try:
            children = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:  # unreadable: skipped, as Path.rglob did
            return
        for entry in children:
            if entry.is_dir():  # follows a link
                info = os.stat(entry.path)  # not entry.stat(): on Windows its st_ino is 0
                if (info.st_dev, info.st_ino) in above:
                    raise CheckpointError(f"{shown(entry.path)} is a link to {shown(os.path.realpath(entry.path))}, "
                                          f"a folder that holds it, so searching --ckpt_dir {ckpt_dir} would never "
                                          f"end; remove the link, or point it at another folder")
                search(entry.path, above | {(info.st_dev, info.st_ino)})
            elif entry.is_file() and not entry.name.startswith(".") and Path(entry.name).suffix[1:] in FORMATS:
                found.append(Path(entry.path))

    root = os.stat(ckpt_dir)
    search(ckpt_dir, {(root.st_dev, root.st_ino)})
    return found


def check_dir(ckpt_dir):
    """Fail with one line if `ckpt_dir` is missing or not a folder."""
    path = Path(ckpt_dir)
    if not path.exists():
        raise CheckpointError(f"--ckpt_dir {ckpt_dir} does not exist; pass the folder that holds your checkpoints")
    if not path.is_dir():
        raise CheckpointError(f"--ckpt_dir {ckpt_dir} is a file, not a folder; pass the folder that holds it "
                              f"(--ckpt_dir {path.parent}), or pass the file as --ckpt")


class Entry:
    """One checkpoint file, as `list`, 'latest' and 'best' see it: its stored position and metrics,
    and whether it is intact (its CRC and format check pass)."""

    def __init__(self, path, root):
        self.path, self.name = path, Path(path).relative_to(root).as_posix()  # no relpath: it fails across drives
        try:
            params = read_checkpoint(path)
            self.info, self.intact, self.params = run_info(params), True, params
        except CheckpointError:
            self.info, self.intact, self.params = {}, False, None
        match = REGULAR.fullmatch(path.name)
        # without a stored position, the epoch in the name; a file of unknown position comes last
        self.epoch = self.info.get("epoch_num", int(match["epoch"]) if match else -1)
        self.step = self.info.get("step_num", -1)
        self.is_best = path.stem.endswith("-best")
        self.mtime = path.stat().st_mtime

    def position(self):
        """Sort key for 'latest': the furthest position; at the same position a regular file before
        a best file, then the newer file."""
        return self.epoch, self.step, not self.is_best, self.mtime, self.name

    def describe(self):
        if self.epoch < 0:
            return "no stored position"
        return f"epoch {self.epoch}" + (f", global step {self.step}" if self.step >= 0 else "")


def entries(ckpt_dir):
    found = []
    for path in checkpoint_tree(ckpt_dir):
        try:
            found.append(Entry(path, ckpt_dir))
        except FileNotFoundError:  # removed meanwhile, by the rotation of a run that is training
            pass
    return found


def resolve(ckpt, ckpt_dir, net=None, prefix="lenet"):
    """Turn --ckpt into a file path. 'latest' and 'best' look at every checkpoint in `ckpt_dir`
    and below it, intact ones that fit `net` only: 'latest' is the furthest position, 'best' the
    highest stored accuracy. The choice is printed. A path is checked as it is."""
    if ckpt not in ("latest", "best"):
        path = Path(ckpt)
        if path.is_dir():
            raise CheckpointError(f"--ckpt {ckpt} is a folder; pass a checkpoint file, or "
                                  f"--ckpt_dir {ckpt} with --ckpt latest or best")
        if net is not None:
            check_shapes(read_checkpoint(path), net, path)
        return path
    found = entries(ckpt_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {ckpt_dir} yet: run 'python main.py train' "
                              f"first, or pass --ckpt_dir")
    usable = [entry for entry in found if entry.intact and (net is None or fits(entry, net))]
    if not usable:
        files = f"{len(found)} checkpoint file" + ("s, none of them" if len(found) > 1 else ", not")
        raise CheckpointError(f"{ckpt_dir} holds {files} an intact LeNet5 checkpoint (see python main.py "
                              f"list --ckpt_dir {ckpt_dir}); pass another --ckpt_dir or --ckpt")
    if ckpt == "latest":
        chosen = max(usable, key=Entry.position)
        why = f"latest: the furthest position, {chosen.describe()}"
    else:
        scored = [entry for entry in usable if "acc" in entry.info]
        if not scored:
            raise CheckpointError(f"no checkpoint in {ckpt_dir} stores an accuracy: train with evaluation "
                                  f"on (the default) to keep one, or pass --ckpt latest")
        chosen = max(scored, key=lambda entry: (entry.info["acc"], entry.is_best, *entry.position()))
        why = f"best: the highest stored accuracy, {chosen.info['acc']:.4f}, {chosen.describe()}"
    count = f"{len(usable)} intact checkpoint" + ("s" if len(usable) > 1 else "")
    print(f"Using {chosen.path} ({why}; of {count} in {ckpt_dir} and below)")
    return chosen.path


def fits(entry, net):
    try:
        check_shapes(entry.params, net, entry.path)
        return True
    except CheckpointError:
        return False


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
    """A text table of every checkpoint in `ckpt_dir` and below it, by folder and position: file,
    epoch, step, metrics, intact."""
    rows = [("file", "epoch", "global step", "acc", "loss", "best acc", "intact")]
    found = entries(ckpt_dir)
    for entry in sorted(found, key=lambda e: (str(Path(e.name).parent), e.epoch, e.is_best, e.step, e.name)):
        rows.append((entry.name, *(_cell(entry.info.get(key)) for key in
                                   ("epoch_num", "step_num", "acc", "loss", "best_acc")),
                     "yes" if entry.intact else "NO: damaged"))
    if len(rows) == 1:
        return f"no checkpoints in {ckpt_dir}"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _cell(value):
    if value is None or value == -1:  # -1: no best accuracy yet
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def newest_checkpoint(ckpt_dir, since=0.0):
    """The newest complete checkpoint in `ckpt_dir` written at `since` (a time.time()) or later, its best
    one aside; None if there is none. Files still being written (.saving-*, MindSpore's *.tmp) never count."""
    found = [p for p in all_checkpoints(ckpt_dir) if "-best." not in p.name and p.stat().st_mtime >= since] \
        if Path(ckpt_dir).is_dir() else []
    return found[0] if found else None


def stored_epoch(path):
    """The epochs complete in the checkpoint `path`, as resume_train counts them: 'train' stores its
    position (step_num, steps_per_epoch), the lesson's ModelCheckpoint the epoch; plain weights none."""
    info = run_info(read_checkpoint(path))
    if "steps_per_epoch" in info and "step_num" in info:
        return int(info["step_num"]) // int(info["steps_per_epoch"])
    return int(info.get("epoch_num", 0))


def all_finite(network):
    """Whether every parameter of `network` (weights and optimizer state) is finite."""
    import numpy as np
    return all(np.isfinite(param.asnumpy()).all() for param in network.get_parameters())
