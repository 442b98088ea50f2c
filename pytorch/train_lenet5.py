"""Train the PyTorch twin of main.py's LeNet5 on MNIST and write the weights the project ships as an example of
PyTorch-trained weights (pytorch/README.md): lenet5.safetensors, with PyTorch's names, and
lenet5_predictions.json, PyTorch's own test accuracy and predicted class of each test image, in file order.

Deterministic: the same bytes on every run on the same machine and torch (seeded initialisation, NumPy's RNG
for the data order, one thread, deterministic kernels pinned to AVX2, no time stamps in the files); the JSON
names the torch and the CPU that made them. No MindSpore here.

    python pytorch/train_lenet5.py [--out_dir pytorch] [--mnist_dir MNIST] [--epochs 1] [--seed 0]
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # before torch loads; imported (by the tests), it leaves the environment alone
    # The same CPU code on every x86 machine with AVX2, whatever the environment says: with oneDNN's AVX-512
    # convolutions the weights came out different (and the tests set ONEDNN_MAX_CPU_ISA=AVX2 for MindSpore).
    os.environ.update(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", MKL_CBWR="AVX2")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mnist_arrays import load_mnist_arrays  # noqa: E402  (beside this file, wherever it is run from)


class LeNet5(nn.Module):
    """main.py's LeNet5 in PyTorch: the same parameter names and layouts, so no conv biases (MindSpore's
    Conv2d has none by default) and no activation between the dense layers."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, bias=False)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(self.flatten(x))))


def train(images, labels, epochs=1, seed=0, batch_size=64, lr=0.01, momentum=0.9):
    """A LeNet5 trained with SGD and momentum (main.py's settings) on the arrays, in a seeded order."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    net = LeNet5()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    net.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(labels)))
        for start in range(0, len(order) - batch_size + 1, batch_size):  # whole batches, as main.py's training
            batch = order[start:start + batch_size]
            opt.zero_grad()
            loss_fn(net(images[batch]), labels[batch]).backward()
            opt.step()
    return net.eval()


def predict(net, images, batch_size=1000):
    """The predicted class of each image."""
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(images[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(images), batch_size)])


def machine():
    """The CPU's model name: the files are the same bytes on every run on it."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=str(HERE), help="where to write the two files (default: pytorch/)")
    parser.add_argument("--mnist_dir", default=str(HERE.parent / "MNIST"), help="the MNIST .gz files")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    net = train(*load_mnist_arrays(args.mnist_dir, "train"), epochs=args.epochs, seed=args.seed)
    test_images, test_labels = load_mnist_arrays(args.mnist_dir, "test")
    preds = predict(net, test_images)
    accuracy = float(np.mean(preds == test_labels))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # "format": "pt" as Hugging Face writes it: it tells the converter the names are PyTorch's
    save_file(net.state_dict(), str(out / "lenet5.safetensors"), metadata={"format": "pt"})
    record = {"torch": torch.__version__, "machine": machine(), "epochs": args.epochs, "seed": args.seed,
              "test_images": len(preds), "accuracy": accuracy, "predictions": preds.tolist()}
    (out / "lenet5_predictions.json").write_text(json.dumps(record) + "\n")
    print(f"Test accuracy {accuracy:.4f} ({np.count_nonzero(preds != test_labels)} of {len(preds)} wrong) "
          f"after {args.epochs} epoch(s) in {time.perf_counter() - start:.0f} s; wrote {out}/lenet5.safetensors "
          f"and {out}/lenet5_predictions.json")


if __name__ == "__main__":
    main()
