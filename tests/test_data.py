"""Data preparation and create_dataset, on tiny IDX files written by the tests, and damaged MNIST files:
each named in one line, through prepare_mnist and through the real script, before training, with nothing left
half unpacked. The layouts --data_url accepts: test_data_layout.py."""
import gzip
import shutil

import numpy as np
import pytest

from conftest import ROOT, assert_verified, one_error_line, run_script, shipped_gz, write_idx
from mnist_data import DataError, check_idx, prepare_mnist


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
    assert prepare_mnist(shipped_gz(tmp_path)) == tmp_path
    assert_verified(tmp_path)
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


def _flip(at):
    def flip(path):
        data = bytearray(path.read_bytes())
        start = at if at >= 0 else len(data) // 2
        for i in range(start, start + 8):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    return flip


def _regzip_other_content(path):
    with gzip.open(path, "wb") as f:
        f.write(b"\0\0\x08\x01" + b"\0" * 500)  # a label header, but not MNIST's labels


def _into_folder(path):
    path.unlink()
    path.mkdir()


GZ_DAMAGES = {  # how a .gz file can arrive damaged, and what the one line says
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "cannot decompress"),
    "bits flipped": (_flip(-1), "cannot decompress .*: CRC check failed"),
    "deflate stream damaged": (_flip(20), "cannot decompress .*: Error -3 while decompressing data"),  # zlib.error
    "not gzip": (lambda p: p.write_bytes(b"PK\x03\x04 a zip file, not gzip"), "cannot decompress"),
    "other content": (_regzip_other_content, "decompresses to MD5 .*, expected"),
    "empty": (lambda p: p.write_bytes(b""), "decompresses to MD5 .*, expected"),
    "a folder": (_into_folder, "cannot decompress"),
    "missing": (lambda p: p.unlink(), "missing .*: put the MNIST file there, or its gzip file at"),
}
LAST_GZ = "t10k-labels-idx1-ubyte.gz"  # unpacked last: the three before it must be removed again


@pytest.mark.parametrize("damage", GZ_DAMAGES)
def test_a_damaged_gz_file_is_named_and_nothing_is_left_half_unpacked(tmp_path, damage):
    shipped_gz(tmp_path)
    bad = tmp_path / LAST_GZ
    before = sorted(p.name for p in tmp_path.iterdir() if p != bad)
    action, message = GZ_DAMAGES[damage]
    action(bad)
    with pytest.raises(DataError, match=message) as error:
        prepare_mnist(tmp_path)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir() if p != bad) == before  # no train/, test/, *.partial


@pytest.mark.parametrize("damage", [d for d in GZ_DAMAGES if d not in ("missing", "a folder")])  # those download
def test_a_damaged_shipped_copy_is_named_and_nothing_is_left_half_unpacked(tmp_path, monkeypatch, damage):
    shipped = shipped_gz(tmp_path / "MNIST")
    monkeypatch.setattr("mnist_data.SHIPPED_DIR", shipped)
    action, message = GZ_DAMAGES[damage]
    action(shipped / LAST_GZ)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(DataError, match=message) as error:
        prepare_mnist(data_dir)
    assert str(shipped / LAST_GZ) in str(error.value)
    assert not list(data_dir.iterdir()) and sorted(p.name for p in shipped.iterdir()) == sorted(
        p.name for p in (ROOT / "MNIST").glob("*.gz"))


IDX_DAMAGES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-1]), "truncated or damaged"),
    "extra bytes": (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "truncated or damaged"),
    "not IDX": (lambda p: p.write_bytes(b"PK\x03\x04" + p.read_bytes()[4:]), "is not an MNIST label file"),
    "empty": (lambda p: p.write_bytes(b""), "is not an MNIST label file"),
    "a folder": (_into_folder, "cannot read"),
    "missing": (lambda p: p.unlink(), "missing .*: put the MNIST file there, or its gzip file at"),
    "not digits": (lambda p: p.write_bytes(p.read_bytes()[:8] + b"\x0c" * (len(p.read_bytes()) - 8)),
                   "has label 12, expected digits 0-9"),
}


@pytest.mark.parametrize("damage", IDX_DAMAGES)
def test_a_damaged_idx_file_is_named(tiny_mnist, damage):
    bad = tiny_mnist / "test" / "t10k-labels-idx1-ubyte"
    action, message = IDX_DAMAGES[damage]
    action(bad)
    with pytest.raises(DataError, match=message) as error:
        prepare_mnist(tiny_mnist)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in tiny_mnist.rglob("*")) == sorted(
        ["train", "test", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
        + ([] if damage == "missing" else ["t10k-labels-idx1-ubyte"]))


# ---- through the script: one line, before training ----

def test_damaged_data_stops_before_training(users_folder):
    data = users_folder / "data"
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        (data / split).mkdir(parents=True)
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            (data / split / f"{prefix}-{kind}").write_bytes(b"")
    result = run_script(users_folder, "--data_url", "data")
    assert result.returncode == 1
    assert one_error_line(result).startswith("error: data/train/train-images-idx3-ubyte is not an MNIST image file")
    assert "epoch:" not in result.stdout


@pytest.mark.slow
def test_damaged_gz_files_stop_before_training_and_leave_nothing_unpacked(users_folder):
    """The four .gz files in --data_url: the last one unpacked is damaged; the three before it go again."""
    data = shipped_gz(users_folder / "data")
    bad = data / "t10k-labels-idx1-ubyte.gz"
    damaged = bytearray(bad.read_bytes())
    damaged[20:28] = bytes(b ^ 0xFF for b in damaged[20:28])  # inside the compressed data
    bad.write_bytes(bytes(damaged))
    result = run_script(users_folder, "--data_url", "data")
    assert result.returncode == 1
    assert one_error_line(result) == ("error: cannot decompress data/t10k-labels-idx1-ubyte.gz: Error -3 while "
                                      "decompressing data: invalid bit length repeat; replace it with the original "
                                      "file")
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in (ROOT / "MNIST").glob("*.gz"))


@pytest.mark.slow
def test_a_damaged_shipped_copy_stops_the_tutorial_and_leaves_nothing_unpacked(project):
    """The default --data_url: MNIST/ as shipped, in a scratch copy of the project."""
    bad = project / "MNIST" / "t10k-labels-idx1-ubyte.gz"
    truncated = bad.read_bytes()[:3000]
    bad.unlink()  # a symlink to the real file, which must stay intact
    bad.write_bytes(truncated)
    result = run_script(project, main=project / "main.py", timeout=600)
    assert result.returncode == 1
    assert one_error_line(result) == (f"error: cannot decompress {bad}: Compressed file ended before the "
                                      f"end-of-stream marker was reached; replace it with the original file")
    assert sorted(p.name for p in (project / "MNIST").iterdir()) == sorted(
        p.name for p in (ROOT / "MNIST").glob("*.gz"))
