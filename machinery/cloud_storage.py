"""Copying data and results between local folders and ModelArts object storage (obs://, s3://)."""
import importlib.util
import os
import shutil
from pathlib import Path

REMOTE_SCHEMES = ("obs://", "s3://")
# In a local --train_url folder, the names of the files copied there: the only files a copy may replace
COPIES_NAME = ".train_url_copies"
CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors")


class StorageError(Exception):
    """A --data_url or --train_url that cannot be used."""


def is_remote(url):
    return str(url).startswith(REMOTE_SCHEMES)


def check_reachable(url, option):
    """Fail before training when `url` is remote and moxing (ModelArts only) is missing."""
    if is_remote(url) and importlib.util.find_spec("moxing") is None:
        raise StorageError(f"{option} {url} needs ModelArts' moxing package, which is not installed "
                           f"here; run on ModelArts, or pass a local directory")


def earlier_copies(folder):
    """The names of the files that copies to --train_url put into `folder`."""
    try:
        return set((Path(folder) / COPIES_NAME).read_text(encoding="utf-8").splitlines())
    except OSError:
        return set()


def check_train_url(url, own_dir):
    """Before any work, fail with one line if the local folder `url` holds checkpoints that a run saved
    there itself (not copies), which an output of the same name would replace. `own_dir` (the command's
    --ckpt_dir) is exempt: its outputs are already there, and are not copied."""
    target = Path(url)
    if is_remote(url) or not target.is_dir() or (Path(own_dir).is_dir() and target.samefile(own_dir)):
        return
    copies = earlier_copies(target)
    foreign = sorted(p.name for p in target.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()
                     and not p.name.startswith(".") and p.name not in copies)
    if foreign:
        raise StorageError(f"--train_url {url} holds checkpoints that a run saved there ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}), not copies, and outputs of the same names "
                           f"would replace them; pass a --train_url of its own, or this run's --ckpt_dir")


def fetch_dir(url, cache_dir):
    """Return a local folder with the contents of `url`, copying it into `cache_dir` if remote."""
    if not is_remote(url):
        return Path(url)
    import moxing as mox
    mox.file.copy_parallel(url, str(cache_dir))  # positional, as in Huawei's examples (see docs/modelarts.md)
    return Path(cache_dir)


def publish(files, url):
    """Copy `files` into the folder `url`, local or remote, keeping their names."""
    if is_remote(url):
        import moxing as mox
        for file in files:
            mox.file.copy(str(file), f"{url.rstrip('/')}/{Path(file).name}")
        return
    target = Path(url)
    try:
        target.mkdir(parents=True, exist_ok=True)
        copies = earlier_copies(target)
        pending = [Path(file) for file in files if not ((target / Path(file).name).exists()
                                                        and (target / Path(file).name).samefile(file))]
        taken = [file.name for file in pending if (target / file.name).exists() and file.name not in copies]
        if taken:  # a file that no copy put there: another run's own, or the user's
            raise StorageError(f"cannot copy {taken[0]} to --train_url {url}: a file of that name is there, "
                               f"and no earlier copy put it there; move it away, or pass another --train_url "
                               f"(the outputs here are kept)")
        with open(target / COPIES_NAME, "a", encoding="utf-8") as record:  # before the copies: never one unlisted
            record.writelines(f"{file.name}\n" for file in pending if file.name not in copies)
        for file in pending:
            # Checkpoints are read-only (0400): copy the data, not the mode, under a hidden name, then
            # rename, so that the copy of a later run can replace this one.
            partial = target / f".copying-{file.name}"
            shutil.copyfile(file, partial)
            os.replace(partial, target / file.name)
    except OSError as exc:
        raise StorageError(f"cannot copy results to --train_url {url}: {exc.strerror or exc}; pass a --train_url "
                           f"you can write to (the outputs here are kept)") from None
