"""MNIST on disk: lay out the four IDX files the way MnistDataset reads them, and check them first.

Also the two checks the tutorial's first cell makes of its environment: a MindSpore it supports
(check_mindspore), and NumPy printing metrics as plain numbers (print_plain_numbers)."""
import gzip
import hashlib
import os
import re
import struct
import sys
import zlib
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "MNIST"

# split -> {IDX file name: MD5 of its uncompressed content}
MNIST_FILES = {
    "train": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    },
    "test": {
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}

# MD5s of the .gz archives as published (the shipped ones were recompressed, so theirs differ)
PUBLISHED_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Public copies of the published archives, tried in this order; MNIST_MIRRORS replaces them
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


# The releases this tutorial is tested on (see PLATFORMS in the README); Python 3.9 has wheels up to 2.9.0.
OLDEST_MINDSPORE, NEWEST_MINDSPORE, NEWEST_ON_PYTHON_39 = "2.7.0", "2.10.0", "2.9.0"


class UnsupportedMindSpore(Exception):
    """No MindSpore, or one older than the tutorial supports: in Jupyter, the message alone stops
    the notebook (IPython shows what _render_traceback_ returns in place of a traceback)."""

    def _render_traceback_(self):
        return [str(self)]


def _release(version):
    """(major, minor, patch) of a version string such as 2.7.1.post1 or 2.6.0rc1."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def check_mindspore():
    """Stop with one line if MindSpore is missing or older than the tutorial supports; the line
    names the version found, the versions supported, and the pip command that installs one."""
    try:
        import mindspore
        found = f"MindSpore {mindspore.__version__}"
    except ImportError as error:
        mindspore, found = None, "no MindSpore" + ("" if error.name == "mindspore" else f" that imports ({error})")
    if mindspore is not None and _release(mindspore.__version__) >= _release(OLDEST_MINDSPORE):
        return
    install = NEWEST_ON_PYTHON_39 if sys.version_info < (3, 10) else NEWEST_MINDSPORE
    message = (f"Found {found}; this tutorial supports MindSpore {OLDEST_MINDSPORE} to {NEWEST_MINDSPORE} on "
               f"Python 3.9 to 3.12 (3.9 up to {NEWEST_ON_PYTHON_39}). "
               f"Install one with: pip install mindspore=={install}")
    if getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)() is not None:
        raise UnsupportedMindSpore(message)
    sys.exit(message)  # a script: the line on stderr and exit status 1


def print_plain_numbers():
    """Make NumPy print a metric as 0.98, not np.float64(0.98). NumPy 2.0 began to print scalars
    with their type; legacy="1.25" turns it off. NumPy 1.x (which MindSpore 2.7 to 2.9 require)
    prints them plainly already, and its set_printoptions stores an unknown legacy value even as
    it warns, which then breaks every printed array (and matplotlib's Agg backend)."""
    import numpy as np
    if _release(np.__version__) >= (2, 0, 0):
        np.set_printoptions(legacy="1.25")


class DataError(Exception):
    """The MNIST files are missing or not what MnistDataset expects."""


def prepare_mnist(data_dir=SHIPPED_DIR, progress=False, md5s=MNIST_FILES):
    """Make sure `data_dir` has train/ and test/ with valid IDX files; return it as a Path.

    A directory that already has that layout is used as it is. Otherwise the gzip files in it
    (as shipped in MNIST/, or as published) are decompressed into that layout, checking each
    decompressed file against `md5s` ({split: {IDX file name: MD5}}). An empty directory gets the
    copy shipped in MNIST/, or else a download (see `download_mnist`); one that holds anything else
    is refused, saying what it holds and the layout read.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        hint = "it is a file" if data_dir.exists() else "it does not exist"
        raise DataError(f"data directory {data_dir} cannot be used: {hint}; "
                        f"pass --data_url pointing at a folder with MNIST in it")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"data directory {data_dir} cannot be used: it is not readable (permission denied); "
                        f"make it readable, or pass --data_url pointing at a copy you can read")
    gz_dir = data_dir
    if not any((data_dir / split / name).exists() or (data_dir / f"{name}.gz").exists()
               for split, files in md5s.items() for name in files):
        _check_empty(data_dir, md5s)  # the shipped copy or a download goes into an empty folder only
        shipped = [SHIPPED_DIR / f"{name}.gz" for files in md5s.values() for name in files]
        if data_dir.resolve() != SHIPPED_DIR and all(gz.is_file() for gz in shipped):
            print(f"No MNIST files in {data_dir}: unpacking the copy shipped in {SHIPPED_DIR}")
            gz_dir = SHIPPED_DIR
        else:
            download_mnist(data_dir, progress=progress)
    created = []  # what this call unpacked: removed again if anything fails, so nothing is half-unpacked
    try:
        for split, files in md5s.items():
            paths = []
            for name, md5 in files.items():
                path = data_dir / split / name
                if not path.exists():
                    if not path.parent.exists():
                        created.append(path.parent)
                    _decompress(gz_dir / f"{name}.gz", path, md5)
                    created.append(path)
                paths.append(path)
            _check_split(*paths)
    except BaseException:
        for path in reversed(created):
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        raise
    return data_dir


def _check_empty(data_dir, md5s):
    """Fail with one line, showing the layouts read, if `data_dir` holds anything: files that are not
    MNIST in a layout we read are the user's, never to be replaced by the shipped digits."""
    content = sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("."))
    if not content:
        return
    layout = ", ".join(f"{split}/{name}" for split, files in md5s.items() for name in files)
    side_by_side = [name for files in md5s.values() for name in files if (data_dir / name).exists()]
    if side_by_side and data_dir.name in md5s and set(side_by_side) == set(md5s[data_dir.name]):
        found = f"it is the {data_dir.name}/ folder of an MNIST layout; pass --data_url {data_dir.parent}"
    elif side_by_side:
        found = f"it holds {', '.join(side_by_side)} side by side; move them into this layout: {layout}"
    else:
        found = (f"it holds {', '.join(content[:3])}{', ...' if len(content) > 3 else ''}, but no MNIST file "
                 f"where it is read: {layout}, or the four .gz files; put MNIST there, or pass an empty folder "
                 f"to get a copy")
    raise DataError(f"data directory {data_dir} cannot be used: {found}")


def download_mnist(data_dir, mirrors=None, gz_md5s=PUBLISHED_GZ_MD5, progress=False):
    """Download the files named in `gz_md5s` into `data_dir`, checking their MD5s.

    Each file is tried from each of `mirrors` (base URLs; default: $MNIST_MIRRORS, else MIRRORS)
    in turn. A failure or interruption removes the files this call downloaded again.
    """
    data_dir = Path(data_dir).resolve()
    mirrors = mirrors or os.environ.get("MNIST_MIRRORS", "").split() or MIRRORS
    for mirror in mirrors:  # other schemes fail with OSErrors that read like a local disk problem
        if not mirror.startswith(("http://", "https://")):
            raise DataError(f"mirror {mirror} is not an http:// or https:// URL; check MNIST_MIRRORS")
    absent = [data_dir / name for name in gz_md5s if not (data_dir / name).exists()]
    try:
        for name, md5 in gz_md5s.items():
            reason = _download(name, md5, data_dir, mirrors, progress)
            if reason:
                raise DataError(f"cannot download {name} from any mirror (last: {reason}); without network, "
                                f"copy the four MNIST .gz files ({', '.join(gz_md5s)}) into {data_dir}, "
                                f"or set MNIST_MIRRORS")
    except BaseException:
        # some files but not all would stop the next run at "missing ..." instead of downloading
        for path in absent:
            path.unlink(missing_ok=True)
        raise


def _download(name, md5, data_dir, mirrors, progress):
    """Fetch `name` from the first mirror that serves it intact; else return the last failure."""
    import pooch  # imported here: only a download needs pooch and requests
    import requests
    pooch.get_logger().setLevel("WARNING")  # we print our own line per file
    for i, mirror in enumerate(mirrors, 1):
        print(f"Downloading {name} from {mirror}")
        try:
            # pooch writes to a temporary file and renames it only once the MD5 matches
            pooch.retrieve(f"{mirror.rstrip('/')}/{name}", known_hash=f"md5:{md5}", fname=name,
                           path=data_dir, progressbar=progress)
            return None
        except (requests.RequestException, ValueError) as exc:  # ValueError: wrong MD5
            reason = _download_failure(exc)
            if i < len(mirrors):
                print(f"  {mirror} failed ({reason}); trying the next mirror")
        except OSError as exc:  # data_dir not writable or full: no mirror can help
            cause = exc.__cause__ or exc  # pooch re-raises a PermissionError with a long message
            raise DataError(f"cannot write {data_dir / name}: {cause.strerror or cause}") from None
    return reason


def _download_failure(exc):
    """A few words on why a download failed: requests' own messages are long and nested."""
    if isinstance(exc, ValueError):
        return "MD5 mismatch: damaged or different file" if "hash" in str(exc) else str(exc)
    if getattr(exc, "response", None) is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    text = str(exc)
    if "IncompleteRead" in text:
        return "connection closed before the end of the file"
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).lower()
    return "timed out" if "timed out" in text.lower() else type(exc).__name__


def _decompress(source, target, md5):
    if not source.exists():
        raise DataError(f"missing {target}: put the MNIST file there, or its gzip file at {source}")
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    try:
        with gzip.open(source, "rb") as src, open(partial, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                dst.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: damaged compressed data
        partial.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "truncated"
        raise DataError(f"cannot decompress {source}: {reason}; replace it with the original file") from None
    except BaseException:  # an interruption: no partial file left behind
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != md5:
        partial.unlink()
        raise DataError(f"{source} decompresses to MD5 {digest.hexdigest()}, expected {md5}; "
                        f"replace it with the original file")
    os.replace(partial, target)  # atomic: an interrupted run never leaves a half-written IDX file


def check_idx(path):
    """Check an IDX file's header against its size; return its item count."""
    path = Path(path)
    is_images = "images" in path.name
    header_size = 16 if is_images else 8
    try:
        with open(path, "rb") as f:
            header = f.read(header_size)
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    expected_magic = IMAGES_MAGIC if is_images else LABELS_MAGIC
    if len(header) < header_size or struct.unpack(">I", header[:4])[0] != expected_magic:
        raise DataError(f"{path} is not an MNIST {'image' if is_images else 'label'} file "
                        f"(expected an IDX header with magic number {expected_magic})")
    items = struct.unpack(">I", header[4:8])[0]
    if is_images:
        rows, cols = struct.unpack(">II", header[8:16])
        if (rows, cols) != (28, 28):
            raise DataError(f"{path} holds {rows}x{cols} images, expected 28x28")
    expected_size = header_size + items * (784 if is_images else 1)
    if size != expected_size:
        raise DataError(f"{path} is {size} bytes, expected {expected_size} for {items} items "
                        f"(truncated or damaged): replace it with the original file")
    return items


def _check_split(images, labels):
    """Images and labels must be valid IDX files that agree in number; labels must be digits."""
    n_images, n_labels = check_idx(images), check_idx(labels)
    if n_images != n_labels:
        raise DataError(f"{images} has {n_images} images but {labels} has {n_labels} labels; "
                        f"they must match")
    values = labels.read_bytes()[8:]
    if values and max(values) > 9:
        raise DataError(f"{labels} has label {max(values)}, expected digits 0-9")
