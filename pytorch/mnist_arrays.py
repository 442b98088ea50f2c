"""MNIST as the float32 arrays LeNet5 reads, from the shipped IDX .gz files, with NumPy alone (no torch, no
MindSpore), so that PyTorch and MindSpore can be fed the very same numbers.

The numbers are those of main.py's create_dataset: MindSpore's vision.Resize((32, 32)) then vision.Rescale
(mean 0.1307, std 0.3081), bit for bit (checked on all 70,000 images, tests/test_convert.py checks 1,000).
So weights trained on these arrays suit `python main.py infer`, and a prediction made on them is one
that MindSpore's own pipeline would feed.
"""
import gzip
import struct
from pathlib import Path

import numpy as np

MEAN, STD = 0.1307, 0.3081
PREFIXES = {"train": "train", "test": "t10k"}
SIZE = 32  # LeNet5's input: 28x28 MNIST resized to 32x32


def read_idx(path, magic, count=None):
    """The array in the gzipped IDX file `path` (images N x 28 x 28 or labels N, uint8): its first `count`."""
    with gzip.open(path, "rb") as f:
        header = f.read(4 * (magic - 2048 + 1))  # magic 2049: labels (1 dimension), 2051: images (3)
        if len(header) < 8 or struct.unpack(">I", header[:4])[0] != magic:
            raise ValueError(f"{path}: not an MNIST IDX file (magic number {magic} expected)")
        dims = struct.unpack(f">{magic - 2048}I", header[4:])
        n = dims[0] if count is None else min(count, dims[0])
        size = n * int(np.prod(dims[1:], dtype=np.int64))
        data = f.read(size)
    if len(data) < size:
        raise ValueError(f"{path}: truncated: fewer than the {n} items it announces")
    return np.frombuffer(data, np.uint8).reshape(n, *dims[1:])


def _linear_weights(n_in, n_out, clamp):
    """OpenCV's INTER_LINEAR source indexes and 11-bit fixed-point weights (as MindSpore's Resize uses them):
    pixel centres aligned; along x the weights are clamped at the edges, along y only the rows are."""
    pos = ((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int32)
    frac = pos - first
    if clamp:
        frac[(first < 0) | (first >= n_in - 1)] = 0
    w1 = np.rint(frac * 2048).astype(np.int32)
    w0 = np.rint((1 - frac) * 2048).astype(np.int32)
    return np.clip(first, 0, n_in - 1), np.clip(first + 1, 0, n_in - 1), w0, w1


def resize(images, size=SIZE):
    """uint8 images N x H x W resized to N x size x size as MindSpore's vision.Resize (OpenCV bilinear) does:
    a horizontal pass in integers, then a vertical one rounded as OpenCV's SIMD kernel rounds it."""
    x0, x1, wx0, wx1 = _linear_weights(images.shape[2], size, clamp=True)
    y0, y1, wy0, wy1 = _linear_weights(images.shape[1], size, clamp=False)
    pixels = images.astype(np.int32)
    rows = pixels[:, :, x0] * wx0 + pixels[:, :, x1] * wx1
    mixed = ((rows[:, y0, :] >> 4) * wy0[:, None] >> 16) + ((rows[:, y1, :] >> 4) * wy1[:, None] >> 16)
    return np.clip((mixed + 2) >> 2, 0, 255).astype(np.uint8)


def normalise(images):
    """uint8 to float32 with mean 0 and std 1 over MNIST: x / (255 std) - mean / std, the product and sum
    rounded once to float32, as MindSpore's Rescale computes it."""
    scale, shift = np.float32(1 / (255 * STD)), np.float32(-MEAN / STD)
    return (images.astype(np.float64) * np.float64(scale) + np.float64(shift)).astype(np.float32)


def load_mnist_arrays(mnist_dir, split, count=None):
    """The `split` ("train" or "test") of MNIST in `mnist_dir` (the .gz files), in file order, its first `count`
    images: float32 images N x 1 x 32 x 32 and int64 labels N."""
    if split not in PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    prefix = Path(mnist_dir) / PREFIXES[split]
    images = read_idx(f"{prefix}-images-idx3-ubyte.gz", 2051, count)
    labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz", 2049, count)
    return normalise(resize(images))[:, None], labels.astype(np.int64)
