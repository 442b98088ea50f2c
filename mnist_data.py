"""MNIST on disk: lay out the four IDX files the way MnistDataset reads them, and check them first.

Also the two checks the tutorial's first cell makes of its environment: a MindSpore it supports
(check_mindspore), and NumPy printing metrics as plain numbers (print_plain_numbers)."""
import errno
import gzip
import hashlib
import os
import re
import secrets
import struct
import sys
import time
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


class _Unwritable(Exception):
    """A folder that unpacking cannot write to: prepare_mnist then tries the cache."""

    def __init__(self, folder, reason):
        super().__init__(folder, reason)
        self.folder, self.reason = folder, reason


# A partial file nobody has written to for this long was left by a run that was killed
STALE_PARTIAL_S = 600


def cache_dir():
    """Where prepare_mnist unpacks the .gz files of a folder it cannot write to:
    $XDG_CACHE_HOME/mindspore-checkpoint-tutorial/MNIST, by default under ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mindspore-checkpoint-tutorial" / "MNIST"


def prepare_mnist(data_dir=SHIPPED_DIR, progress=False, md5s=MNIST_FILES):
    """Make sure MnistDataset can read MNIST from `data_dir`; return the folder to read it from, a Path
    (MnistDataset(*mnist_split(folder, training)) reads it).

    Layouts read, in this order:
    - train/ and test/ with the IDX files in them: used as they are; any missing file is unpacked
      from its .gz in `data_dir`.
    - the four .gz files (as shipped in MNIST/, or as published): unpacked into train/ and test/.
    - the four IDX files side by side (torchvision's layout, many downloads'): used as they are,
      nothing is moved or unpacked into the folder.
    An empty folder gets the copy shipped in MNIST/, or else a download (see `download_mnist`); one that
    holds anything else is refused, saying what it holds and the layouts read.

    Every IDX file is checked (header, size, labels); one whose .gz is in `data_dir` is also checked by the
    MD5 of its content (`md5s`, {split: {IDX file name: MD5}}), and one that fails is unpacked again
    from the .gz, with a line saying so. Hashing all four takes about 0.1 s, so it happens on each call.
    Two processes may unpack at once: each writes a file of its own, which takes its final name only
    once complete and verified. If `data_dir` cannot be written (a read-only clone or dataset mount),
    the files are unpacked into cache_dir() instead, with a line saying so, and that folder is returned.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        hint = "it is a file" if data_dir.exists() else "it does not exist"
        raise DataError(f"data directory {data_dir} cannot be used: {hint}; "
                        f"pass --data_url pointing at a folder with MNIST in it")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"data directory {data_dir} cannot be used: it is not readable (permission denied); "
                        f"make it readable, or pass --data_url pointing at a copy you can read")
    names = [name for files in md5s.values() for name in files]
    has_gz = any((data_dir / f"{name}.gz").exists() for name in names)
    side_by_side = {name for name in names if (data_dir / name).exists()}
    nested = _is_nested(data_dir, md5s)
    # the .gz files come first: MnistDataset would read them as IDX files in a folder beside the IDX files
    flat = bool(side_by_side) and not has_gz and not nested
    gz_dir = data_dir
    if flat and side_by_side == set(md5s.get(data_dir.name, ())):
        raise DataError(f"data directory {data_dir} cannot be used: it is the {data_dir.name}/ folder of an MNIST "
                        f"layout; pass --data_url {data_dir.parent}")
    shipped = data_dir.resolve() != SHIPPED_DIR and all((SHIPPED_DIR / f"{name}.gz").is_file() for name in names)
    if not (flat or has_gz or nested):
        _check_empty(data_dir, md5s)  # the shipped copy or a download goes into an empty folder only
        if shipped:
            print(f"No MNIST files in {data_dir}: unpacking the copy shipped in {SHIPPED_DIR}")
            gz_dir = SHIPPED_DIR
        else:
            download_mnist(data_dir, progress=progress)
    elif nested and not has_gz and shipped and _part_of_the_shipped_copy(data_dir, md5s):
        gz_dir = SHIPPED_DIR  # another run is unpacking it here (or was killed doing so): complete it
    try:
        _complete(data_dir, flat, gz_dir, md5s)
        return data_dir
    except _Unwritable as unwritable:
        cache = cache_dir()
        try:
            _complete(cache, False, gz_dir, md5s)
        except _Unwritable as error:
            raise DataError(f"cannot unpack the MNIST files of {gz_dir}: neither {unwritable.folder} "
                            f"({unwritable.reason}) nor {error.folder} ({error.reason}) can be written; make one "
                            f"of them writable (the files take 55 MB unpacked), or set XDG_CACHE_HOME to a "
                            f"folder you can write to") from None
        print(f"{unwritable.folder} cannot be written ({unwritable.reason}): "
              f"the MNIST files unpacked from {gz_dir} are in {cache}")
        return cache


def mnist_split(data_dir, training=True):
    """(folder, usage) for MnistDataset to read the training or test set from the folder that prepare_mnist
    returned, in either layout: MnistDataset(*mnist_split(data_dir, training), ...). MnistDataset reads
    every file of a folder whose name has <train or t10k>-images and idx3-ubyte in it (labels alike)."""
    split = "train" if training else "test"
    return str(Path(data_dir) / split if _is_nested(data_dir) else data_dir), split


def _is_nested(data_dir, md5s=MNIST_FILES):
    return any((Path(data_dir) / split / name).exists() for split, files in md5s.items() for name in files)


def _part_of_the_shipped_copy(data_dir, md5s):
    """Whether `data_dir` holds some of the files of train/ and test/, not all, each one intact: so far as another
    run has unpacked the shipped copy into this once empty folder. Files of other content are the user's, and a
    missing one is never taken from the shipped copy beside them."""
    present = [(data_dir / split / name, md5) for split, files in md5s.items() for name, md5 in files.items()
               if (data_dir / split / name).exists()]
    complete = len(present) == sum(len(files) for files in md5s.values())
    return not complete and all(path.is_file() and _md5(path) == md5 for path, md5 in present)


def _complete(root, flat, gz_dir, md5s):
    """Unpack into `root` (into train/ and test/ unless `flat`) what is missing or fails its MD5, then
    check every file. What this call unpacked anew is removed again if anything fails."""
    created = []
    try:
        for split, files in md5s.items():
            folder = root if flat else root / split
            if not flat:
                _remove_stale_partials(folder)
            paths = []
            for name, md5 in files.items():
                path, gz = folder / name, gz_dir / f"{name}.gz"
                if not path.exists():
                    if not folder.exists():
                        created.append(folder)
                    _decompress(gz, path, md5)
                    created.append(path)
                elif gz.is_file() and path.is_file() and _md5(path) != md5:
                    _decompress(gz, path, md5)
                    print(f"{path} did not match its checksum; unpacked it again from {gz.name}")
                paths.append(path)
            _check_split(*paths)
            _check_nothing_else_is_read(folder, files)
    except BaseException:
        for path in reversed(created):
            try:
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
            except OSError:  # a folder that another process unpacks into too
                pass
        raise


def _remove_stale_partials(folder):
    """Remove the partial files of runs killed while unpacking: MnistDataset would read one named after
    its IDX file (as earlier versions named them) as MNIST, and any takes room."""
    try:
        for partial in folder.glob("*.partial"):
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()
    except OSError:  # not there yet, gone meanwhile, or not ours to remove: unpacking reports what matters
        pass


def _check_nothing_else_is_read(folder, files):
    """MnistDataset reads every file whose name has, say, train-images and idx3-ubyte in it: another one
    (a copy, a backup, a .gz beside the IDX files) would be read as MNIST too, and fail in the pipeline."""
    for other in sorted(p.name for p in folder.iterdir() if p.name not in files):
        for name in files:
            head, _, tail = name.partition("-idx")
            if head in other and f"idx{tail}" in other:
                raise DataError(f"{folder} holds {other} beside {name}, and MnistDataset would read it as MNIST "
                                f"too; move it out of {folder}")


def _md5(path):
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()


def _check_empty(data_dir, md5s):
    """Fail with one line, showing the layouts read, if `data_dir` holds anything: files that are not
    MNIST in a layout we read are the user's, never to be replaced by the shipped digits."""
    content = sorted(p.name for p in data_dir.iterdir() if not p.name.startswith(".") and not (
        p.name in md5s and p.is_dir() and all(c.name.startswith(".") for c in p.iterdir())))  # being unpacked into
    if content:
        layout = ", ".join(f"{split}/{name}" for split, files in md5s.items() for name in files)
        raise DataError(f"data directory {data_dir} cannot be used: it holds {', '.join(content[:3])}"
                        f"{', ...' if len(content) > 3 else ''}, but no MNIST file where it is read: {layout}, "
                        f"the same four side by side, or their four .gz files; put MNIST there, or pass an "
                        f"empty folder to get a copy")


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
    """Unpack `source` into `target` through a partial file of this call's own, so that two processes
    unpacking at once never write into one file; the partial takes the name only once verified."""
    if not source.exists():
        raise DataError(f"missing {target}: put the MNIST file there, or its gzip file at {source}")
    folder = target.parent
    # no IDX name in it: MnistDataset would read a file named after one as MNIST
    partial = folder / f".unpacking-{os.getpid()}-{secrets.token_hex(4)}.partial"
    digest = hashlib.md5()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(partial, "xb") as dst:
            for chunk in _gunzip(source):
                digest.update(chunk)
                dst.write(chunk)
    except OSError as exc:  # writing; a damaged source raises DataError in _gunzip
        partial.unlink(missing_ok=True)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _Unwritable(folder, exc.strerror) from None
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # EDQUOT: a full quota
            raise DataError(f"cannot unpack {source.name} into {folder}: the disk is full ({exc.strerror}); "
                            f"free some space there (MNIST takes 55 MB unpacked), or pass a --data_url "
                            f"on another disk") from None
        raise DataError(f"cannot unpack {source.name} into {folder}: {exc.strerror or exc}") from None
    except BaseException:  # a damaged source, or an interruption: no partial file left behind
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != md5:
        partial.unlink()
        raise DataError(f"{source} decompresses to MD5 {digest.hexdigest()}, expected {md5}; "
                        f"replace it with the original file")
    try:
        os.replace(partial, target)  # atomic: a file of this name is always complete
    except OSError:  # Windows: another process has just put the same file there, and has it open
        partial.unlink(missing_ok=True)
        if not target.is_file():
            raise


def _gunzip(source):
    """The content of the gzip file `source`, in chunks; one line blaming it if it cannot be decompressed."""
    try:
        with gzip.open(source, "rb") as src:
            yield from iter(lambda: src.read(1 << 20), b"")
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; zlib.error: damaged data
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "truncated"
        raise DataError(f"cannot decompress {source}: {reason}; replace it with the original file") from None


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


MNIST_STEPS_PER_EPOCH = 1875  # 60,000 training images in batches of 32


class SettingError(ValueError):
    """A setting out of range: in Jupyter, the message alone (as UnsupportedMindSpore)."""

    def _render_traceback_(self):
        return [str(self)]


def check_steps_per_epoch(text, maximum=MNIST_STEPS_PER_EPOCH, name="TUTORIAL_STEPS_PER_EPOCH"):
    """The quick-run length that `text` asks for (None when it is empty: whole epochs); a SettingError in one
    line when it is not a whole number from 1 to `maximum`, the batches of 32 in an epoch of MNIST."""
    if text is None or not str(text).strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= maximum:
        raise SettingError(f"{name} must be a whole number from 1 to {maximum} (an epoch of MNIST has {maximum} "
                           f"batches of 32), got {text}; leave it unset for whole epochs")
    return value


_cells_written = []  # the kernel whose cells are written already (the imports cell may run again)


def let_mindspore_read_cells():
    """In a Jupyter kernel, write each cell's code to the file name that ipykernel gives it, and remove
    those files when the kernel exits; elsewhere do nothing. MindSpore reads a network's source file
    when it compiles it, and a cell's file does not exist: it would print `[WARNING] ... may not
    exists` and `[ERROR] ... Get realpath failed`."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None or not hasattr(shell, "kernel") or shell in _cells_written:
        return
    import atexit
    import shutil

    from ipykernel.compiler import get_file_name, get_tmp_directory

    def write(source):
        Path(get_file_name(source)).write_text(source)

    os.makedirs(get_tmp_directory(), exist_ok=True)
    atexit.register(shutil.rmtree, get_tmp_directory(), ignore_errors=True)
    for cell in shell.history_manager.input_hist_raw:  # the cells run so far
        write(cell)
    shell.events.register("pre_run_cell", lambda info: write(info.raw_cell))
    _cells_written.append(shell)
