"""machinery/convert.py: PyTorch weights into MindSpore and back (docs/pytorch.md), its refusals, and the shipped
PyTorch-trained LeNet5 in pytorch/. Both frameworks are fed the same arrays (pytorch/mnist_arrays.py)."""
import hashlib
import json
import pickle
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from machinery.lesson import load_definitions

LESSON = load_definitions()  # main.py's LeNet5 and create_dataset; first, as it sets up MindSpore's environment
LESSON.set_device("CPU")  # before any network runs, as the lesson does (the `cpu` fixture sets it again)
import mindspore as ms  # noqa: E402
import torch  # noqa: E402
from mindspore import nn  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn as tnn  # noqa: E402

from machinery.convert import ConvertError, convert  # noqa: E402
from pytorch.mnist_arrays import load_mnist_arrays  # noqa: E402
from pytorch.train_lenet5 import LeNet5 as TorchLeNet5  # noqa: E402
from pytorch.train_lenet5 import train as train_torch  # noqa: E402
from conftest import ROOT, one_error_line, run_script  # noqa: E402

SHIPPED = ROOT / "pytorch"
AGREE, CLOSE = 0.999, 1e-4  # the argmax agreement and the largest logit difference each conversion must meet


LeNet5 = LESSON.LeNet5


@pytest.fixture(scope="module")
def images():
    return load_mnist_arrays(ROOT / "MNIST", "test", 2000)[0]


@pytest.fixture(scope="module")
def torch_net():
    """A PyTorch LeNet5 trained for 300 steps (a few seconds on one thread)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield train_torch(*load_mnist_arrays(ROOT / "MNIST", "train", 300 * 64))
    torch.set_num_threads(threads)  # train sets both for this process: give the other tests theirs back
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory, torch_net):
    """The PyTorch LeNet5 as a bare state_dict, a training checkpoint dict, and a .safetensors file."""
    folder = tmp_path_factory.mktemp("torch")
    state = torch_net.state_dict()
    torch.save(state, folder / "bare.pth")
    opt = torch.optim.SGD(torch_net.parameters(), lr=0.01, momentum=0.9)
    torch.save({"model_state_dict": state, "optimizer_state_dict": opt.state_dict(), "epoch": 1},
               folder / "checkpoint.pth")
    save_file(state, str(folder / "model.safetensors"))  # no metadata: the names alone say PyTorch
    return folder


def mindspore_logits(path, images):
    """LeNet5's logits with the checkpoint file `path` loaded as main.py's infer loads it, every parameter filled."""
    net = LeNet5()
    not_loaded, _ = ms.load_param_into_net(net, ms.load_checkpoint(str(path), format=Path(path).suffix[1:]))
    assert not not_loaded
    return np.concatenate([net(ms.Tensor(images[i:i + 2000])).asnumpy() for i in range(0, len(images), 2000)])


def torch_logits(net, images):
    with torch.no_grad():
        return net.eval()(torch.from_numpy(images)).numpy()


def agreement(ours, theirs, what):
    """Assert that two frameworks' logits agree: the same class on AGREE of the images, and close values."""
    agree = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"{what}: the same class on {agree:.2%} of {len(ours)} images, max |logit difference| {diff:.1e}")
    assert agree >= AGREE and diff < CLOSE


# From PyTorch


@pytest.mark.parametrize("dst", ["lenet5.ckpt", "lenet5.safetensors"])
@pytest.mark.parametrize("source", ["bare.pth", "checkpoint.pth", "model.safetensors"])
def test_pytorch_weights_predict_the_same_in_mindspore(torch_files, torch_net, images, tmp_path, source, dst):
    lines = []
    assert convert(torch_files / source, tmp_path / dst, network=LeNet5(), out=lines.append) == tmp_path / dst
    assert lines == [f"Converted 8 parameters from PyTorch ({source}) to MindSpore: {tmp_path / dst}"]
    agreement(mindspore_logits(tmp_path / dst, images), torch_logits(torch_net, images), f"{source} -> {dst}")


def test_renames_map_a_sequential_model(torch_net, images, tmp_path):
    """A torchvision-style model (features.0.weight, classifier.2.bias, ...) fits LeNet5 with --rename rules:
    regular expressions and plain prefixes."""
    class Sequential(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, bias=False), tnn.ReLU(), tnn.MaxPool2d(2),
                                           tnn.Conv2d(6, 16, 5, bias=False), tnn.ReLU(), tnn.MaxPool2d(2))
            self.classifier = tnn.Sequential(tnn.Linear(400, 120), tnn.Linear(120, 84), tnn.Linear(84, 10))

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))

    model = Sequential()
    model.load_state_dict(dict(zip(model.state_dict(), torch_net.state_dict().values())))
    torch.save(model.state_dict(), tmp_path / "seq.pth")
    with pytest.raises(ConvertError, match=r"features\.0\.weight, features\.3\.weight, classifier\.0\.weight and 5 "
                                           r"more in the source have no place in LeNet5; conv1\.weight, conv2\.weight"):
        convert(tmp_path / "seq.pth", tmp_path / "lenet5.ckpt", network=LeNet5())
    renames = [r"features\.0\.=conv1.", r"features\.(3)\.=conv2.", "classifier.0.=fc1.", "classifier.1.=fc2.",
               r"classifier\.2\.=fc3."]
    convert(tmp_path / "seq.pth", tmp_path / "lenet5.ckpt", renames, network=LeNet5(), out=print)
    agreement(mindspore_logits(tmp_path / "lenet5.ckpt", images), torch_logits(model, images), "renamed")


# To PyTorch


@pytest.fixture(scope="module")
def mindspore_checkpoints(tmp_path_factory):
    """A MindSpore LeNet5 trained for 20 steps with Momentum, saved with its optimizer state and run info as
    .ckpt and .safetensors, as train saves them; and the trained network."""
    folder = tmp_path_factory.mktemp("mindspore")
    x, y = load_mnist_arrays(ROOT / "MNIST", "train", 20 * 32)
    ms.set_seed(0)
    net = LeNet5()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.Momentum(net.trainable_params(), 0.01, 0.9))
    for i in range(0, len(y), 32):
        step(ms.Tensor(x[i:i + 32]), ms.Tensor(y[i:i + 32].astype(np.int32)))
    info = {"epoch_num": 1, "step_num": 20, "acc": 0.5, "steps_per_epoch": 20, "seed": 0}
    for fmt in ("ckpt", "safetensors"):
        ms.save_checkpoint(step, str(folder / f"lenet-1_20.{fmt}"), append_dict=info, crc_check=True, format=fmt)
    return folder, net


@pytest.mark.parametrize("dst", ["lenet5.pth", "lenet5.safetensors"])
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_mindspore_weights_predict_the_same_in_pytorch(mindspore_checkpoints, images, tmp_path, fmt, dst):
    folder, net = mindspore_checkpoints
    lines = []
    convert(folder / f"lenet-1_20.{fmt}", tmp_path / dst, network=LeNet5(), out=lines.append)
    assert lines == ["Left out 16 entries that are not weights: 11 of optimizer state (global_step, learning_rate, "
                     "moments.*, momentum) and 5 of run info (acc, epoch_num, seed, step_num and 1 more)",
                     f"Converted 8 parameters from MindSpore (lenet-1_20.{fmt}) to PyTorch: {tmp_path / dst}"]
    state = (load_file(str(tmp_path / dst)) if dst.endswith(".safetensors")
             else torch.load(tmp_path / dst, map_location="cpu", weights_only=True))
    model = TorchLeNet5()
    model.load_state_dict(state, strict=True)
    agreement(torch_logits(model, images), net(ms.Tensor(images)).asnumpy(), f"{fmt} -> {dst}")


# The name table


class TorchLayers(tnn.Module):
    """One layer of each kind NAME_RULES names."""

    def __init__(self):
        super().__init__()
        self.emb = tnn.Embedding(10, 8)
        self.ln = tnn.LayerNorm(8)
        self.fc = tnn.Linear(8, 6)
        self.bn1 = tnn.BatchNorm1d(6)
        self.conv = tnn.Conv2d(1, 4, 3)
        self.bn2 = tnn.BatchNorm2d(4)


class Layers(nn.Cell):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.ln = nn.LayerNorm((8,))
        self.fc = nn.Dense(8, 6)
        self.bn1 = nn.BatchNorm1d(6)
        self.conv = nn.Conv2d(1, 4, 3, has_bias=True)
        self.bn2 = nn.BatchNorm2d(4)


MINDSPORE_NAMES = {"emb.weight": "emb.embedding_table", "ln.weight": "ln.gamma", "ln.bias": "ln.beta",
                   "bn1.weight": "bn1.gamma", "bn1.bias": "bn1.beta", "bn1.running_mean": "bn1.moving_mean",
                   "bn1.running_var": "bn1.moving_variance", "bn2.weight": "bn2.gamma", "bn2.bias": "bn2.beta",
                   "bn2.running_mean": "bn2.moving_mean", "bn2.running_var": "bn2.moving_variance"}


@pytest.fixture
def torch_layers():
    torch.manual_seed(0)
    model = TorchLayers()
    with torch.no_grad():
        for tensor in model.state_dict().values():  # nothing left at its default (ones, zeros)
            tensor.copy_(torch.rand_like(tensor.float()) * 10 if tensor.is_floating_point() else tensor + 3)
    return model.state_dict()


@pytest.mark.parametrize("formats", [("pth", "ckpt", "pth"), ("safetensors", "safetensors", "safetensors")])
def test_the_name_table_goes_there_and_back(torch_layers, tmp_path, formats):
    src, middle, back = (tmp_path / f"{name}.{fmt}" for name, fmt in zip(("torch", "mindspore", "back"), formats))
    if formats[0] == "pth":
        torch.save(torch_layers, src)
    else:
        save_file(torch_layers, str(src))
    lines = []
    convert(src, middle, network=Layers(), out=lines.append)
    assert lines[0] == ("Left out 2 entries that MindSpore has no place for: 2 BatchNorm step counters "
                        "(*.num_batches_tracked)")
    params = ms.load_checkpoint(str(middle), format=formats[1])
    assert sorted(params) == sorted(Layers().parameters_dict())
    for name, tensor in torch_layers.items():
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(params[MINDSPORE_NAMES.get(name, name)].asnumpy(), tensor.numpy())

    convert(middle, back, network=Layers(), out=lines.append)
    assert lines[-1].endswith("back." + formats[2] + " (and num_batches_tracked = 0 for its 2 BatchNorm layers)")
    returned = load_file(str(back)) if formats[2] == "safetensors" else torch.load(back, weights_only=True)
    assert sorted(returned) == sorted(torch_layers)
    for name, tensor in torch_layers.items():
        expected = torch.tensor(0) if name.endswith("num_batches_tracked") else tensor
        assert returned[name].dtype == expected.dtype and torch.equal(returned[name], expected), name
    TorchLayers().load_state_dict(returned, strict=True)


def test_without_a_target_the_siblings_decide(torch_layers, tmp_path):
    """Without a network: BatchNorm (a running_mean) and LayerNorm (a 1-D weight) get gamma and beta; an
    Embedding cannot be told from a Linear layer, and needs the target or a --rename."""
    torch.save(torch_layers, tmp_path / "layers.pth")
    convert(tmp_path / "layers.pth", tmp_path / "guessed.ckpt")
    wanted = set(Layers().parameters_dict())
    assert set(ms.load_checkpoint(str(tmp_path / "guessed.ckpt"))) ^ wanted == {"emb.weight", "emb.embedding_table"}
    convert(tmp_path / "layers.pth", tmp_path / "renamed.ckpt", ["emb.weight=emb.embedding_table"])
    assert set(ms.load_checkpoint(str(tmp_path / "renamed.ckpt"))) == wanted


# Refusals: one line each, and nothing written


def refused(src, dst, match, **options):
    """Assert that converting `src` to `dst` is refused with one line matching `match`, and that neither dst
    nor a partial file appeared, nor an existing dst changed."""
    before = dst.read_bytes() if dst.exists() else None
    folder = next(folder for folder in dst.parents if folder.exists())
    files = set(folder.rglob("*"))
    with pytest.raises(ConvertError, match=match) as refusal:
        convert(src, dst, **options)
    assert "\n" not in str(refusal.value)
    assert set(folder.rglob("*")) == files
    assert (dst.read_bytes() if dst.exists() else None) == before
    return str(refusal.value)


@pytest.fixture
def state(torch_net):
    return {name: tensor.clone() for name, tensor in torch_net.state_dict().items()}


def test_conv_biases_have_no_place_in_lenet5(tmp_path):
    with_biases = tnn.ModuleDict({"conv1": tnn.Conv2d(1, 6, 5), "conv2": tnn.Conv2d(6, 16, 5),  # bias=True
                                  "fc1": tnn.Linear(400, 120), "fc2": tnn.Linear(120, 84), "fc3": tnn.Linear(84, 10)})
    torch.save(with_biases.state_dict(), tmp_path / "biased.pth")
    refused(tmp_path / "biased.pth", tmp_path / "out.ckpt", r"^\S+biased\.pth does not fit LeNet5: conv1\.bias, "
            r"conv2\.bias in the source have no place in LeNet5; convert weights of this network", network=LeNet5())


@pytest.mark.parametrize("change, match", [
    (lambda s: s.pop("fc3.bias"), r"does not fit LeNet5: fc3\.bias of LeNet5 is not in the source"),
    (lambda s: s.update({"fc3.weight": s["fc3.weight"][:5]}),
     r"does not fit LeNet5: fc3\.weight has shape \(5, 84\) in the source, fc3\.weight has \(10, 84\) in LeNet5"),
    (lambda s: s.update({"fc3.bias": s["fc3.bias"].int()}),
     r"fc3\.bias is int32, not floating point: only floating-point weights convert"),
    (lambda s: s.update({"fc3.bias": s["fc3.bias"].double()}), r"fc3\.bias is float64 in the source, fc3\.bias is "
                                                                 r"float32 in LeNet5; cast the model"),
], ids=["missing", "shape", "integer", "float64"])
def test_weights_that_do_not_fit_are_refused(state, tmp_path, change, match):
    change(state)
    torch.save(state, tmp_path / "changed.pth")
    refused(tmp_path / "changed.pth", tmp_path / "out.safetensors", match, network=LeNet5())


class Marker:
    """Unpickling it would create a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_not_run(tmp_path, how):
    marker = tmp_path / "ran"
    payload = {"conv1.weight": torch.zeros(6, 1, 5, 5), "hook": Marker(marker)}
    with open(tmp_path / "model.pth", "wb") as f:
        if how == "torch.save":
            torch.save(payload, f)
        else:
            pickle.dump(payload, f)
    pickle.loads(pickle.dumps(Marker(tmp_path / "probe")))
    assert (tmp_path / "probe").exists()  # the payload works: loading it unsafely would make the marker
    message = refused(tmp_path / "model.pth", tmp_path / "out.ckpt", r"model\.pth: not loaded: it ")
    assert ("holds a Python object (" in message) == (how == "torch.save")
    assert not marker.exists()


def test_without_torch(tmp_path):
    """With `import torch` failing: a .safetensors file converts both ways (the shipped one too), a .pth
    source or destination is refused with one line."""
    script = ("import sys; sys.modules['torch'] = None\n"
              "from machinery.convert import ConvertError, convert\n"
              "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
              "    try:\n        convert(src, dst)\n"
              "    except ConvertError as error:\n        print(f'refused: {error}')\n")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "model.pth")
    pairs = [SHIPPED / "lenet5.safetensors", tmp_path / "lenet5.ckpt", tmp_path / "lenet5.ckpt",
             tmp_path / "back.safetensors", tmp_path / "model.pth", tmp_path / "model.ckpt", tmp_path / "lenet5.ckpt",
             tmp_path / "back.pth"]
    run = subprocess.run([sys.executable, "-c", script, *map(str, pairs)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"Converted 8 parameters from PyTorch (lenet5.safetensors) to MindSpore: {tmp_path / 'lenet5.ckpt'}",
        f"Converted 8 parameters from MindSpore (lenet5.ckpt) to PyTorch: {tmp_path / 'back.safetensors'}",
        f"refused: {tmp_path / 'model.pth'}: reading a .pth/.pt file needs torch: install torch, or give a "
        f".safetensors file (safetensors.torch.save_file(model.state_dict(), ...))",
        f"refused: {tmp_path / 'back.pth'}: writing a .pth/.pt file needs torch: install torch, or write a "
        f".safetensors file, which PyTorch reads with safetensors.torch.load_file"]
    assert not (tmp_path / "model.ckpt").exists() and not (tmp_path / "back.pth").exists()
    assert load_file(str(tmp_path / "back.safetensors")).keys() == load_file(str(SHIPPED / "lenet5.safetensors")).keys()


def test_an_existing_destination_needs_force(torch_files, tmp_path):
    dst = tmp_path / "lenet5.ckpt"
    dst.write_bytes(b"keep me")
    refused(torch_files / "bare.pth", dst, r"lenet5\.ckpt exists; pass --force to overwrite it$")
    convert(torch_files / "bare.pth", dst, force=True)
    assert set(ms.load_checkpoint(str(dst))) == set(LeNet5().parameters_dict())


@pytest.mark.parametrize("src, dst, match", [
    ("bare.pth", "copy.pt", r"bare\.pth holds PyTorch weights \(a \.pth file\) and \S+copy\.pt is a PyTorch file too: "
                            r"nothing to convert; for MindSpore give a \.ckpt or \.safetensors DST"),
    ("model.safetensors", "copy.pth", r"model\.safetensors holds PyTorch weights \(no MindSpore-only names\)"),
    ("bare.pth", "model.onnx", r"model\.onnx: unknown kind of DST file; give a \.pth or \.pt \(PyTorch\), \.ckpt "
                               r"\(MindSpore\) or \.safetensors \(either\) file"),
    ("model.h5", "model.ckpt", r"model\.h5: no such file; give a weights file"),
    ("damaged.pth", "model.ckpt", r"damaged\.pth: damaged or not a PyTorch file \(torch.load failed\)"),
    ("damaged.safetensors", "model.ckpt", r"damaged\.safetensors: damaged or not a safetensors file"),
    ("bare.pth", "nowhere/model.ckpt", r"nowhere: no such folder for model\.ckpt; create it, or choose another DST"),
    ("optimizer.pth", "model.ckpt", r"optimizer\.pth: holds no state_dict \(a dict of tensors, or a checkpoint dict "
                                    r"holding one under 'state_dict', 'model_state_dict' or 'model'\)"),
], ids=["same framework", "same framework, by names", "unknown suffix", "missing", "damaged pth",
        "damaged safetensors", "no folder", "no state_dict"])
def test_files_that_cannot_convert(torch_files, torch_net, tmp_path, src, dst, match):
    for name in ("bare.pth", "model.safetensors"):
        (tmp_path / name).write_bytes((torch_files / name).read_bytes())
        (tmp_path / f"damaged{Path(name).suffix}").write_bytes((torch_files / name).read_bytes()[:-1000])
    torch.save({"optimizer": torch.optim.SGD(torch_net.parameters(), lr=0.1).state_dict(), "epoch": 3},
               tmp_path / "optimizer.pth")
    refused(tmp_path / src, tmp_path / dst, match)


def test_mindspore_files_that_cannot_convert(mindspore_checkpoints, tmp_path):
    folder, _ = mindspore_checkpoints
    refused(folder / "lenet-1_20.safetensors", tmp_path / "copy.ckpt", r"holds MindSpore weights \(its metadata marks "
            r"it \"ms\"\) and \S+ is a MindSpore file too: nothing to convert; for PyTorch give a \.pth, \.pt or")
    damaged = bytearray((folder / "lenet-1_20.ckpt").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # most likely a byte of fc1.weight, which only the CRC tells
    (tmp_path / "damaged.ckpt").write_bytes(damaged)
    refused(tmp_path / "damaged.ckpt", tmp_path / "lenet5.pth", r"damaged\.ckpt: damaged or not a ckpt file \(reading "
            r"it or its CRC check failed\); give another file$")
    ms.save_checkpoint([{"name": "learning_rate", "data": ms.Tensor(np.float32(0.01))}], str(tmp_path / "opt.ckpt"),
                       append_dict={"epoch_num": 1})
    refused(tmp_path / "opt.ckpt", tmp_path / "lenet5.pth", r"opt\.ckpt holds no weights, only learning_rate, "
            r"epoch_num; give a file with the model's weights$")


@pytest.mark.parametrize("rule, match", [
    ("features.0.", r"--rename features\.0\.: expected OLD=NEW"),
    ("fc(=x", r"--rename fc\(=x: fc\( is not a valid regular expression"),
    ("features.=x", r"--rename features\.=x matches no name in \S+bare\.pth \(it has conv1\.weight"),
    (r"fc\d=x", r"--rename makes fc1\.weight and fc2\.weight both x\.weight"),
])
def test_bad_renames(torch_files, tmp_path, rule, match):
    refused(torch_files / "bare.pth", tmp_path / "out.ckpt", match, renames=[rule])


# The shipped PyTorch-trained weights


def test_the_shipped_weights_predict_as_pytorch_recorded():
    """pytorch/lenet5.safetensors, loaded as it is by MindSpore, predicts on the same arrays what PyTorch
    recorded for the whole test set; and its logits are PyTorch's."""
    record = json.loads((SHIPPED / "lenet5_predictions.json").read_text())
    test_images, labels = load_mnist_arrays(ROOT / "MNIST", "test")
    logits = mindspore_logits(SHIPPED / "lenet5.safetensors", test_images)
    model = TorchLeNet5()
    model.load_state_dict(load_file(str(SHIPPED / "lenet5.safetensors")), strict=True)
    agreement(logits, torch_logits(model, test_images), "pytorch/lenet5.safetensors")
    preds = logits.argmax(1)
    same = float(np.mean(preds == np.array(record["predictions"])))
    accuracy = float(np.mean(preds == labels))
    print(f"MindSpore predicts PyTorch's class for {same:.2%} of {len(preds)} test images; accuracy {accuracy:.4f} "
          f"(PyTorch {record['accuracy']:.4f})")
    assert same >= AGREE and f"{accuracy:.3f}" == f"{record['accuracy']:.3f}"


def test_the_arrays_are_main_pys():
    """pytorch/mnist_arrays.py gives what main.py's create_dataset gives for the test set, in file order."""
    from mnist_data import prepare_mnist
    data_dir = prepare_mnist(ROOT / "MNIST")
    images, labels = next(LESSON.create_dataset(data_dir, training=False, batch_size=1000).create_tuple_iterator(
        output_numpy=True))
    ours, our_labels = load_mnist_arrays(ROOT / "MNIST", "test", 1000)
    np.testing.assert_array_equal(ours, images)
    np.testing.assert_array_equal(our_labels, labels)


@pytest.mark.slow
def test_the_command_converts_a_pth_that_infer_and_resume_then_take(torch_files, tmp_path):
    """`python main.py convert`, as the README shows it: then infer and resume take the file, resume with a
    fresh optimizer, and the way back gives PyTorch its weights again."""
    result = run_script(tmp_path, "convert", torch_files / "checkpoint.pth", "lenet5.ckpt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ("Converted 8 parameters from PyTorch (checkpoint.pth) to MindSpore: "
                                              "lenet5.ckpt")
    inferred = run_script(tmp_path, "infer", "--ckpt", "lenet5.ckpt", "--no_progress")
    assert inferred.returncode == 0 and "Test accuracy of lenet5.ckpt: 0." in inferred.stdout, inferred.stderr
    resumed = run_script(tmp_path, "resume", "--ckpt", "lenet5.ckpt", "--steps_per_epoch", "2", "--num_epochs", "1",
                      "--no_progress")
    assert resumed.returncode == 0, resumed.stderr
    assert ("Loaded lenet5.ckpt: it stores no epoch (plain weights), so training starts at epoch 0, with a fresh "
            "optimizer") in resumed.stdout
    back = run_script(tmp_path, "convert", "lenet5.ckpt", "back.safetensors")
    assert back.returncode == 0, back.stderr
    original = torch.load(torch_files / "checkpoint.pth", weights_only=True)["model_state_dict"]
    returned = load_file(str(tmp_path / "back.safetensors"))
    assert original.keys() == returned.keys() and all(torch.equal(original[k], returned[k]) for k in original)


def test_the_command_refuses_in_one_line_and_writes_nothing(torch_files, tmp_path):
    biased = TorchLeNet5()
    biased.conv1 = tnn.Conv2d(1, 6, 5)  # with a bias, which ours has not
    torch.save(biased.state_dict(), tmp_path / "biased.pth")
    result = run_script(tmp_path, "convert", "biased.pth", "out.ckpt")
    assert result.returncode == 1
    assert one_error_line(result).startswith("error: biased.pth does not fit LeNet5: conv1.bias in the source has "
                                             "no place in LeNet5")
    assert not (tmp_path / "out.ckpt").exists()
    (tmp_path / "out.ckpt").write_bytes(b"the user's")
    result = run_script(tmp_path, "convert", torch_files / "bare.pth", "out.ckpt")
    assert result.returncode == 1 and one_error_line(result) == "error: out.ckpt exists; pass --force to overwrite it"
    assert (tmp_path / "out.ckpt").read_bytes() == b"the user's"


@pytest.mark.slow
def test_the_shipped_files_rebuild_byte_for_byte(tmp_path):
    record = json.loads((SHIPPED / "lenet5_predictions.json").read_text())
    if record["torch"] != torch.__version__ or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the shipped files were made with torch {record['torch']} on x86_64; here torch "
                    f"{torch.__version__} on {platform.machine()}")
    run = subprocess.run([sys.executable, str(SHIPPED / "train_lenet5.py"), "--out_dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    for name in ("lenet5.safetensors", "lenet5_predictions.json"):
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        if digest != hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest():
            machine = json.loads((tmp_path / "lenet5_predictions.json").read_text())["machine"]
            if machine != record["machine"]:  # another CPU may sum in another order; on the same one, a failure
                pytest.skip(f"{name} differs, made here on {machine}, shipped from {record['machine']}")
            pytest.fail(f"{name} rebuilt on the same CPU ({machine}) and torch differs: sha256 {digest}")
