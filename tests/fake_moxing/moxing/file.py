"""TEST STAND-IN for moxing.file: copy and copy_parallel over a local folder playing OBS/S3."""
import os
import shutil
from pathlib import Path

SCHEMES = ("obs://", "s3://")


def _local(url):
    """The local path of `url`: obs://bucket/key -> $FAKE_MOXING_ROOT/bucket/key; a local path as it is."""
    url = str(url)
    for scheme in SCHEMES:
        if url.startswith(scheme):
            return Path(os.environ["FAKE_MOXING_ROOT"]) / url[len(scheme):]
    return Path(url)


def _log(*words):
    with open(Path(os.environ["FAKE_MOXING_ROOT"]) / "calls.log", "a") as log:
        print(*words, file=log)


def copy(src_url, dst_url, client_id=None):
    """Copy one file, as mox.file.copy(src_url, dst_url) does; the folders of dst_url need not exist."""
    src, dst = _local(src_url), _local(dst_url)
    if not src.is_file():
        raise OSError(f"stand-in moxing: {src_url} is not a file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    _log("copy", src_url, dst_url)


def copy_parallel(src_url, dst_url, threads=16, is_processing=True):
    """Copy a folder's contents into dst_url, as mox.file.copy_parallel does (like shutil.copytree);
    `threads` and `is_processing`, documented by Huawei, change nothing here."""
    src, dst = _local(src_url), _local(dst_url)
    if not src.is_dir():
        raise OSError(f"stand-in moxing: {src_url} is not a folder")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    _log("copy_parallel", src_url, dst_url)
