"""Export for deployment: MindIR through ms.load + GraphCell, and ONNX through ONNX Runtime."""
import mindspore as ms
import numpy as np
import pytest

from conftest import run_script


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


@pytest.mark.parametrize("file_format", ["MINDIR", "ONNX"])
def test_export_command_writes_the_file(checkpoint, file_format):
    cwd = checkpoint.parents[2]
    result = run_script(cwd, "export", "--ckpt", "latest", "--file_format", file_format)
    assert result.returncode == 0, result.stderr
    path = cwd / f"lenet5.{file_format.lower()}"
    assert (f"Exported ckpt/train/lenet-1_20.ckpt to lenet5.{file_format.lower()}, input shape (32, 1, 32, 32)"
            in result.stdout)
    assert path.stat().st_size > 200_000  # the 61,684 float32 weights are inside


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
