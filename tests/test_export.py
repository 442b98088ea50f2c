"""Export for deployment, through the real script and the lesson's export_model: 'export' writes the file it
names, in either format, and copies it to --train_url; a name it cannot write gives one line; the MindIR,
loaded with ms.load into a GraphCell, and the ONNX file, in ONNX Runtime, predict what the checkpoint does."""
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from conftest import one_error_line, run_script


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_mnist):
    cwd = tmp_path_factory.mktemp("export")
    result = run_script(cwd, "train", "--data_url", str(small_mnist), "--num_epochs", "1", "--no_eval")
    assert result.returncode == 0, result.stderr
    return cwd / "ckpt" / "train" / "lenet-1_20.ckpt"  # train's default folder


def first_test_batch(cpu, small_mnist):
    batch = next(cpu.create_dataset(small_mnist, training=False).create_dict_iterator(output_numpy=True))
    return batch["image"]


@pytest.mark.parametrize("file_format, file_name, written", [
    ("MINDIR", None, "lenet5.mindir"),
    ("ONNX", None, "lenet5.onnx"),
    ("MINDIR", "m.mindir", "m.mindir"),
    ("ONNX", "m.onnx", "m.onnx"),
    ("MINDIR", "my model", "my model.mindir"),
    ("ONNX", "a folder/with space/net", "a folder/with space/net.onnx"),
])
def test_export_writes_the_file_it_names(checkpoint, file_format, file_name, written):
    cwd = checkpoint.parents[2]
    name = ["--file_name", file_name] if file_name else []  # without: lenet5, and the format's suffix
    result = run_script(cwd, "export", "--ckpt", "latest", "--file_format", file_format, *name,
                        "--train_url", "published")
    assert result.returncode == 0, result.stderr
    assert f"Exported ckpt/train/lenet-1_20.ckpt to {written}, input shape (32, 1, 32, 32)" in result.stdout
    assert (cwd / written).stat().st_size > 200_000  # the 61,684 float32 weights are inside
    assert (cwd / "published" / Path(written).name).read_bytes() == (cwd / written).read_bytes()
    assert "will be deleted" not in result.stderr  # MindSpore's word on ms.export(file_format='ONNX')
    ours = [line for line in result.stderr.splitlines() if "Warning:" in line and "site-packages" not in line]
    assert not ours, ours  # no warning from our code (MindSpore warns of its own getName() call)


@pytest.mark.parametrize("file_name, message", [
    ("out/", "error: --file_name out/ is a folder; give a file name, such as out/lenet5"),
    ("taken", "error: taken.mindir already exists; pass another --file_name, or move the file away"),
    ("a_file/model", "error: cannot write a_file/model.mindir: Not a directory; pass a --file_name in a "
                     "folder you can write to"),
])
def test_an_export_name_that_cannot_be_written_gives_one_line(checkpoint, tmp_path, file_name, message):
    cwd = tmp_path
    (cwd / "taken.mindir").write_bytes(b"the user's file")
    (cwd / "a_file").write_bytes(b"not a folder")
    result = run_script(cwd, "export", "--ckpt_dir", str(checkpoint.parent), "--file_name", file_name)
    assert result.returncode == 1
    assert one_error_line(result) == message
    assert (cwd / "taken.mindir").read_bytes() == b"the user's file"
    assert sorted(p.name for p in cwd.iterdir()) == ["a_file", "taken.mindir"]


def test_mindir_predicts_what_the_checkpoint_predicts(cpu, checkpoint, small_mnist, tmp_path):
    mindir = cpu.export_model(checkpoint, "MINDIR", str(tmp_path / "lenet5"))
    images = ms.Tensor(first_test_batch(cpu, small_mnist))
    deployed = cpu.nn.GraphCell(ms.load(str(mindir)))
    np.testing.assert_allclose(deployed(images).asnumpy(), cpu.load_weights(checkpoint)(images).asnumpy(),
                               atol=1e-6)


def test_onnx_runs_in_onnxruntime_with_the_same_predictions(cpu, checkpoint, small_mnist, tmp_path):
    import onnxruntime
    onnx_file = cpu.export_model(checkpoint, "ONNX", str(tmp_path / "lenet5"))
    images = first_test_batch(cpu, small_mnist)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {session.get_inputs()[0].name: images})
    expected = cpu.load_weights(checkpoint)(ms.Tensor(images)).asnumpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert (ours.argmax(1) == expected.argmax(1)).all()


def test_a_full_temporary_folder_is_named_not_the_users_folders(checkpoint, tmp_path, mount_tmpfs):
    """MindSpore writes into TMPDIR first; a full one gets a line about TMPDIR, not about --ckpt_dir."""
    tmpdir = mount_tmpfs("size=64k")
    (tmpdir / "filler").write_bytes(b"\0" * 60_000)
    result = run_script(tmp_path, "export", "--ckpt_dir", str(checkpoint.parent), timeout=600,
                        env={"TMPDIR": str(tmpdir)})
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: cannot write the MINDIR file in the temporary folder {tmpdir}: ") and \
        line.endswith("; free some space there, or set TMPDIR to a folder with room"), line
    assert "--ckpt_dir" not in line and not (tmp_path / "lenet5.mindir").exists()
