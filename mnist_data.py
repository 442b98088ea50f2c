"""MNIST on disk: lay out the four IDX files the way MnistDataset reads them, and check them first."""
import gzip
import hashlib
import os
import struct
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

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class DataError(Exception):
    """The MNIST files are missing or not what MnistDataset expects."""


def prepare_mnist(data_dir=SHIPPED_DIR):
    """Make sure `data_dir` has train/ and test/ with valid IDX files; return it as a Path.

    A directory that already has that layout is used as it is. Otherwise the gzip files in it
    (as shipped in MNIST/, or as published) are decompressed into that layout, checking the MD5
    of each decompressed file.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        hint = "it is a file" if data_dir.exists() else "it does not exist"
        raise DataError(f"data directory {data_dir} cannot be used: {hint}; "
                        f"pass --data_url pointing at a folder with MNIST in it")
    for split, files in MNIST_FILES.items():
        paths = []
        for name, md5 in files.items():
            path = data_dir / split / name
            if not path.exists():
                _decompress(data_dir / f"{name}.gz", path, md5)
            paths.append(path)
        _check_split(*paths)
    return data_dir


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
    except (OSError, EOFError) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"cannot decompress {source}: {exc}; replace it with the original file") from None
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
