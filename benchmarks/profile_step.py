"""Where a training step of the port goes: data pipeline, oneDNN kernels, and everything else.

    python benchmarks/profile_step.py [--steps 200]

Runs in three processes: one times the data pipeline alone, one times training steps, and one
trains the same steps with ONEDNN_VERBOSE=1, which reports each oneDNN primitive and its time.
"""
import argparse
import collections
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "PROFILE-TIMED-PART"


def worker(part, steps):
    sys.path.insert(0, str(ROOT))
    import main
    from mindspore.train import Model
    from mnist_data import SHIPPED_DIR
    main.set_device("CPU")
    data_dir = main.prepare_mnist(SHIPPED_DIR)
    if part == "data":
        start = time.perf_counter()
        for _ in main.create_dataset(data_dir).take(steps).create_tuple_iterator(num_epochs=1):
            pass
        print(f"data_ms {(time.perf_counter() - start) * 1000 / steps}")
        return

    net = main.LeNet5()
    loss = main.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, main.nn.Momentum(net.trainable_params(), 0.01, 0.9))
    times = timed_steps(model, main.create_dataset(data_dir).take(steps + 20),
                        on_warm=lambda: print(MARK, flush=True))
    sys.stdout.flush()
    print(f"step_ms {statistics.median(times) * 1000}")


def timed_steps(model, dataset, warmup=20, on_warm=None):
    """Train `model` for one epoch of `dataset`; return the durations of the steps after `warmup`
    (the first ones include compilation). `on_warm` is called once the warm-up is over."""
    from mindspore.train import Callback

    class StepEnds(Callback):
        def on_train_step_end(self, run_context):
            ends.append(time.perf_counter())
            if len(ends) == warmup and on_warm:
                on_warm()

    ends = []
    model.train(1, dataset, callbacks=[StepEnds()], dataset_sink_mode=False)
    return [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]


def run(part, steps, verbose=False):
    env = {**os.environ, **({"ONEDNN_VERBOSE": "1"} if verbose else {})}
    result = subprocess.run([sys.executable, __file__, "--part", part, "--steps", str(steps)],
                            capture_output=True, text=True, env=env, check=True)
    return result.stdout


def kernels_per_step(output, steps):
    """Milliseconds per training step in each oneDNN primitive (kind, implementation, direction)."""
    totals = collections.Counter()
    timed = output.split(MARK, 1)[1].split("step_ms", 1)[0]
    for line in timed.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            i = fields.index("exec")
            try:
                totals[(fields[i + 2], fields[i + 3], fields[i + 4])] += float(fields[-1])
            except (ValueError, IndexError):
                continue
    return {key: total / steps for key, total in totals.items()}


def number(output, key):
    return float(next(line.split()[1] for line in output.splitlines() if line.startswith(key + " ")))


def main_():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: 200)")
    parser.add_argument("--part", choices=("data", "train"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        return worker(args.part, args.steps)
    data_ms = number(run("data", 1875), "data_ms")
    step_ms = number(run("train", args.steps), "step_ms")
    kernels = kernels_per_step(run("train", args.steps, verbose=True), args.steps)
    kernel_ms = sum(kernels.values())
    print(f"Training step (median of {args.steps}): {step_ms:.2f} ms\n")
    print(f"| {'part of a step':58} | {'ms':>6} |")
    print(f"| {'-' * 58} | {'-' * 6} |")
    for (kind, impl, direction), ms_ in sorted(kernels.items(), key=lambda item: -item[1]):
        if ms_ >= 0.05:
            print(f"| {f'oneDNN {kind} {direction} ({impl})':58} | {ms_:6.2f} |")
    print(f"| {'oneDNN, all primitives':58} | {kernel_ms:6.2f} |")
    print(f"| {'data pipeline, per batch, measured alone (overlaps)':58} | {data_ms:6.2f} |")
    print(f"| {'everything else: other kernels, framework, Python':58} | {step_ms - kernel_ms:6.2f} |")


if __name__ == "__main__":
    main_()
