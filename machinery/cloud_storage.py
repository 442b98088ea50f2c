"""Copying data and results between local folders and ModelArts object storage (obs://, s3://)."""
import importlib.util
import os
import shutil
from pathlib import Path

REMOTE_SCHEMES = ("obs://", "s3://")


class StorageError(Exception):
    """A --data_url or --train_url that cannot be used."""


def is_remote(url):
    return str(url).startswith(REMOTE_SCHEMES)


def check_reachable(url, option):
    """Fail before training when `url` is remote and moxing (ModelArts only) is missing."""
    if is_remote(url) and importlib.util.find_spec("moxing") is None:
        raise StorageError(f"{option} {url} needs ModelArts' moxing package, which is not installed "
                           f"here; run on ModelArts, or pass a local directory")


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
        for file in files:
            copy = target / Path(file).name
            if copy.exists() and copy.samefile(file):  # --train_url is where the outputs already are
                continue
            # Checkpoints are read-only (0400): copy the data, not the mode, under a hidden name, then
            # rename, so that the copy of a later run can replace this one.
            partial = target / f".copying-{copy.name}"
            shutil.copyfile(file, partial)
            os.replace(partial, copy)
    except OSError as exc:
        raise StorageError(f"cannot copy results to --train_url {url}: {exc.strerror or exc}") from None
