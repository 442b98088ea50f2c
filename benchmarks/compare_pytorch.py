"""Our port against an equivalent PyTorch LeNet5 on the same MNIST files, measured side by side.

    pip install -r benchmarks/requirements.txt
    python benchmarks/compare_pytorch.py [--repeats 3] [--epochs 3] [--steps_per_epoch M]

Each framework runs in processes of its own, taking turns, with the tutorial's settings: batch
32, resize to 32x32, normalisation, shuffling, momentum SGD with lr 0.01. Each process trains
`--epochs` epochs (the first, which includes compilation, is not timed), times 200 training
steps on one fixed batch (the step alone, without the data pipeline), evaluates the test set
once in batches of 1000 (as `train` does), and saves and loads 20 times. The table shows the
medians over `--repeats` processes of each framework, and the ratio ours/PyTorch.

It also times one training epoch as a whole process, from start to exit, as a user meets it:
`python main.py train --num_epochs 1` against a PyTorch script that loads the same files, trains
one epoch, evaluates on the test set and saves a checkpoint, again taking turns.
"""
import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS = [  # key, label, unit
    ("epoch_s", "training epoch", "s"),
    ("steps_per_s", "training steps per second", "1/s"),
    ("step_ms", "training step on one fixed batch", "ms"),
    ("eval_s", "evaluation over the test set", "s"),
    ("save_ms", "save one checkpoint", "ms"),
    ("load_ms", "load one checkpoint", "ms"),
    ("startup_s", "process start to first step", "s"),
    ("peak_rss_mb", "peak resident memory", "MB"),
    ("process_s", "one-epoch train, start to exit", "s"),
]


def median_ms(action, repeats=20):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def mindspore_worker(args, started):
    sys.path.insert(0, str(ROOT))
    from machinery.lesson import load_definitions
    main = load_definitions()  # sets ONEDNN_MAX_CPU_ISA before MindSpore loads, as the product does
    from mnist_data import SHIPPED_DIR
    from mindspore.train import Callback, Model

    class FirstStep(Callback):
        def on_train_step_end(self, run_context):
            if not first_step:
                first_step.append(time.time())

    first_step = []
    main.set_device("CPU")
    data_dir = main.prepare_mnist(SHIPPED_DIR)
    net = main.LeNet5()
    loss = main.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, main.nn.Momentum(net.trainable_params(), 0.01, 0.9), metrics={"acc"})
    epochs, steps = [], 0
    for epoch in range(args.epochs):
        data = main.create_dataset(data_dir, num_samples=args.steps_per_epoch and args.steps_per_epoch * 32)
        steps = data.get_dataset_size()
        start = time.perf_counter()
        model.train(1, data, callbacks=[FirstStep()] if epoch == 0 else [], dataset_sink_mode=False)
        epochs.append(time.perf_counter() - start)
    images, labels = next(main.create_dataset(data_dir).create_tuple_iterator(num_epochs=1))
    step_ms = median_ms(lambda: model.train_network(images, labels).asnumpy(), repeats=200)
    start = time.perf_counter()
    acc = model.eval(main.create_dataset(data_dir, training=False, batch_size=1000))["acc"]  # as `train` evaluates
    eval_s = time.perf_counter() - start
    path = str(Path(args.scratch) / "ms.ckpt")
    save_ms = median_ms(lambda: main.ms.save_checkpoint(model.train_network, path))
    load_ms = median_ms(lambda: main.ms.load_param_into_net(model.train_network, main.ms.load_checkpoint(path)))
    return epochs, steps, step_ms, eval_s, acc, save_ms, load_ms, first_step[0] - started


def pytorch_worker(args, started):
    import numpy as np
    import torch
    from torch import nn

    def read_idx(path, offset):
        return np.frombuffer(Path(path).read_bytes()[offset:], np.uint8)

    sys.path.insert(0, str(ROOT))
    from mnist_data import SHIPPED_DIR, prepare_mnist
    data_dir = prepare_mnist(SHIPPED_DIR)

    def load(split, prefix):
        images = read_idx(data_dir / split / f"{prefix}-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28)
        labels = read_idx(data_dir / split / f"{prefix}-labels-idx1-ubyte", 8).astype(np.int64)
        return torch.utils.data.TensorDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels))

    def transform(images):  # what create_dataset does: resize to 32x32, rescale and shift
        images = nn.functional.interpolate(images.float(), size=(32, 32), mode="bilinear")
        return (images / 255 - 0.1307) / 0.3081

    train_set, test_set = load("train", "train"), load("test", "t10k")
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    epochs, first_step, steps = [], None, 0
    for _ in range(1 if args.worker == "pytorch-process" else args.epochs):
        loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, drop_last=True)
        start, steps = time.perf_counter(), 0
        for images, labels in loader:
            optimizer.zero_grad()
            loss_fn(net(transform(images)), labels).backward()
            optimizer.step()
            steps += 1
            first_step = first_step or time.time()
            if steps == args.steps_per_epoch:
                break
        epochs.append(time.perf_counter() - start)
    step_ms = None
    if args.worker == "pytorch":  # not in the whole-process run, which `train` does not do either
        images, labels = next(iter(torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)))
        images = transform(images)

        def fixed_step():
            optimizer.zero_grad()
            loss_fn(net(images), labels).backward()
            optimizer.step()

        step_ms = median_ms(fixed_step, repeats=200)
    start, correct, seen = time.perf_counter(), 0, 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(test_set, batch_size=1000):
            correct += (net(transform(images)).argmax(1) == labels).sum().item()
            seen += len(labels)
    eval_s = time.perf_counter() - start
    path = Path(args.scratch) / "torch.pt"
    if args.worker == "pytorch-process":  # what `train` does at the end of its epoch
        torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, path)
        print(f"epoch 1/1: accuracy {correct / seen:.4f}, saved {path}")
        sys.exit()

    def load():
        state = torch.load(path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    save_ms = median_ms(lambda: torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, path))
    load_ms = median_ms(load)
    return epochs, steps, step_ms, eval_s, correct / seen, save_ms, load_ms, first_step - started


def run_worker(args):
    worker = mindspore_worker if args.worker == "mindspore" else pytorch_worker
    epochs, steps, step_ms, eval_s, acc, save_ms, load_ms, startup_s = worker(args, args.started)
    timed = epochs[1:] or epochs  # the first epoch includes graph compilation
    epoch_s = statistics.median(timed)
    print(json.dumps({
        "epoch_s": epoch_s, "steps_per_s": steps / epoch_s, "step_ms": step_ms, "eval_s": eval_s,
        "save_ms": save_ms, "load_ms": load_ms, "startup_s": startup_s, "accuracy": acc,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(framework, args):
    command = [sys.executable, __file__, "--worker", framework, "--epochs", str(args.epochs),
               "--scratch", args.scratch, "--started", repr(time.time())]
    if args.steps_per_epoch:
        command += ["--steps_per_epoch", str(args.steps_per_epoch)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"error: the {framework} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_process(framework, args, index):
    """Seconds from start to exit of one training epoch: `main.py train`, or the PyTorch equivalent."""
    if framework == "mindspore":
        command = [sys.executable, str(ROOT / "main.py"), "train", "--num_epochs", "1", "--no_progress",
                   "--data_url", str(ROOT / "MNIST"), "--ckpt_dir", f"process-{index}"]
    else:
        command = [sys.executable, __file__, "--worker", "pytorch-process", "--scratch", args.scratch]
    if args.steps_per_epoch:
        command += ["--steps_per_epoch", str(args.steps_per_epoch)]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=args.scratch, capture_output=True, text=True, check=False)  # its figure too
    if result.returncode != 0:
        sys.exit(f"error: the whole-process {framework} run failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def medians(runs):
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(ours, theirs, args):
    print(f"Machine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
          f"cores; Python {platform.python_version()}")
    print(f"Command: python benchmarks/compare_pytorch.py --repeats {args.repeats} --epochs {args.epochs}"
          + (f" --steps_per_epoch {args.steps_per_epoch}" if args.steps_per_epoch else ""))
    print()
    print(f"| {'what':37} | {'MindSpore (ours)':>16} | {'PyTorch':>10} | {'ours/PyTorch':>12} |")
    print(f"| {'-' * 37} | {'-' * 16} | {'-' * 10} | {'-' * 12} |")
    for key, label, unit in METRICS:
        ratio = ours[key] / theirs[key]
        print(f"| {label + ', ' + unit:37} | {ours[key]:16.2f} | {theirs[key]:10.2f} | {ratio:12.2f} |")
    print(f"| {'test accuracy after the run':37} | {ours['accuracy']:16.4f} | {theirs['accuracy']:10.4f} | |")


def plot(ours, theirs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [(key, label) for key, label, _ in METRICS if key != "steps_per_s"]  # the inverse of epoch_s
    labels = [label for _, label in shown]
    ratios = [ours[key] / theirs[key] for key, _ in shown]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(labels[::-1], ratios[::-1], color=["tab:red" if r > 1 else "tab:green" for r in ratios[::-1]])
    ax.axvline(1, color="black", linewidth=1)
    ax.set_xlabel("MindSpore port / PyTorch (lower is better; 1 = as fast or as small)")
    ax.set_title("LeNet5 on MNIST, batch 32, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nSaved {path}")


def main_():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="processes per framework; the table shows medians (default: 3)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per process; the first is not timed (default: 3)")
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="cap each epoch at M steps, for a quick check (default: all 1875)")
    parser.add_argument("--plot", default=str(ROOT / "images" / "benchmark.png"),
                        help="where to save the plot (default: images/benchmark.png)")
    parser.add_argument("--worker", choices=("mindspore", "pytorch", "pytorch-process"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "pytorch-process":
        return pytorch_worker(args, time.time())
    if args.worker:
        return run_worker(args)
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = scratch
        runs = [(measure("mindspore", args), measure("pytorch", args)) for _ in range(args.repeats)]
        processes = [(whole_process("mindspore", args, i), whole_process("pytorch", args, i))
                     for i in range(args.repeats)]
    ours, theirs = medians([run[0] for run in runs]), medians([run[1] for run in runs])
    ours["process_s"] = statistics.median(run[0] for run in processes)
    theirs["process_s"] = statistics.median(run[1] for run in processes)
    report(ours, theirs, args)
    plot(ours, theirs, args.plot)


if __name__ == "__main__":
    main_()
