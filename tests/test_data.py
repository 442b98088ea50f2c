"""Data preparation and create_dataset, on tiny IDX files written by the tests."""
import gzip
import hashlib
import shutil

import numpy as np
import pytest

from conftest import ROOT, write_idx
from mnist_data import MNIST_FILES, DataError, check_idx, prepare_mnist


def test_dataset_shapes_dtypes_and_normalisation(cpu, tiny_mnist):
    images = np.zeros((96, 28, 28), np.uint8)
    images[:, :14] = 255  # top half white, bottom half black
    write_idx(tiny_mnist / "train", "train", images, np.arange(96) % 10)
    batch = next(cpu.create_dataset(tiny_mnist).create_dict_iterator(output_numpy=True))
    assert batch["image"].shape == (32, 1, 32, 32) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
    np.testing.assert_allclose(batch["image"][0, 0, 0, 0], (1 - 0.1307) / 0.3081, rtol=1e-5)
    np.testing.assert_allclose(batch["image"][0, 0, -1, 0], -0.1307 / 0.3081, rtol=1e-5)
    assert set(batch["label"]) <= set(range(10))


def test_steps_per_epoch_drops_the_remainder(cpu, tiny_mnist):
    assert cpu.create_dataset(tiny_mnist).get_dataset_size() == 3  # 96 / 32
    assert cpu.create_dataset(tiny_mnist, training=False).get_dataset_size() == 2  # 64 / 32
    assert cpu.create_dataset(tiny_mnist, batch_size=40).get_dataset_size() == 2  # 96 // 40


def test_a_layout_that_exists_is_used_as_it_is(tiny_mnist):
    assert prepare_mnist(tiny_mnist) == tiny_mnist
    assert sorted(p.name for p in tiny_mnist.iterdir()) == ["test", "train"]


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated or damaged"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + p.read_bytes()[4:]), "is not an MNIST image file"),
    (lambda p: p.unlink(), "missing"),
])
def test_a_bad_file_is_named_before_training(tiny_mnist, damage, message):
    bad = tiny_mnist / "train" / "train-images-idx3-ubyte"
    damage(bad)
    with pytest.raises(DataError, match=message) as error:
        prepare_mnist(tiny_mnist)
    assert str(bad) in str(error.value)


def test_images_and_labels_must_agree(tiny_mnist):
    write_idx(tiny_mnist / "test", "t10k", np.zeros((64, 28, 28)), np.full(64, 12))
    with pytest.raises(DataError, match="label 12, expected digits 0-9"):
        prepare_mnist(tiny_mnist)
    labels = tiny_mnist / "test" / "t10k-labels-idx1-ubyte"
    write_idx(tiny_mnist / "test", "t10k", np.zeros((64, 28, 28)), np.zeros(64))
    labels.write_bytes(labels.read_bytes()[:8 + 50].replace(b"\x00\x00\x00\x40", b"\x00\x00\x00\x32", 1))
    with pytest.raises(DataError, match="64 images but .* has 50 labels"):
        prepare_mnist(tiny_mnist)


def test_check_idx_counts_items(tiny_mnist):
    assert check_idx(tiny_mnist / "train" / "train-images-idx3-ubyte") == 96
    assert check_idx(tiny_mnist / "test" / "t10k-labels-idx1-ubyte") == 64


def test_shipped_files_decompress_into_the_tutorial_layout(tmp_path):
    for gz in (ROOT / "MNIST").glob("*.gz"):
        shutil.copy(gz, tmp_path)
    assert prepare_mnist(tmp_path) == tmp_path
    for split, files in MNIST_FILES.items():
        for name, md5 in files.items():
            assert hashlib.md5((tmp_path / split / name).read_bytes()).hexdigest() == md5
    assert not list(tmp_path.rglob("*.partial"))


def test_a_wrong_or_broken_gz_file_is_rejected_and_leaves_nothing_behind(tmp_path):
    for gz in (ROOT / "MNIST").glob("*labels*.gz"):
        shutil.copy(gz, tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0" * 1000)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz decompresses to MD5 .* expected 6bbc9ace"):
        prepare_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot decompress .*train-images-idx3-ubyte.gz"):
        prepare_mnist(tmp_path)
    assert not (tmp_path / "train" / "train-images-idx3-ubyte").exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_a_data_dir_that_is_missing_or_a_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_mnist(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="it is a file"):
        prepare_mnist(tmp_path / "file")
