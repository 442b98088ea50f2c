"""What one checkpoint save costs, against one training step, measured in the same run.

    python benchmarks/checkpoint_cost.py [--repeats 50]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from machinery.lesson import load_definitions  # noqa: E402

main = load_definitions()  # sets the oneDNN cap before MindSpore loads
from mindspore.train import Model  # noqa: E402
from mnist_data import SHIPPED_DIR  # noqa: E402
from profile_step import timed_steps  # noqa: E402
from machinery.resumable import CheckpointSaver, TrainConfig  # noqa: E402


def median_ms(times):
    return statistics.median(times) * 1000


def main_(repeats):
    main.set_device("CPU")
    data_dir = main.prepare_mnist(SHIPPED_DIR)
    net = main.LeNet5()
    loss = main.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, main.nn.Momentum(net.trainable_params(), 0.01, 0.9))
    step = timed_steps(model, main.create_dataset(data_dir, num_samples=(repeats + 20) * 32))
    rows = [("training step", median_ms(step))]
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("ckpt", "safetensors"):
            config = TrainConfig(ckpt_format=fmt, keep_checkpoint_max=repeats + 1)
            saver = CheckpointSaver(model.train_network, folder, config, steps_per_epoch=1875)
            times = []
            for i in range(repeats):
                saver.step = i + 1
                start = time.perf_counter()
                saver.save()
                times.append(time.perf_counter() - start)
            rows.append((f"save, {fmt} (CRC, fsync, rename)", median_ms(times)))
    print(f"{'what':40} {'median ms':>10} {'x step':>8}")
    for name, ms_ in rows:
        print(f"{name:40} {ms_:10.2f} {ms_ / rows[0][1]:8.2f}")
    per_epoch = rows[1][1] / (1875 * rows[0][1]) * 100
    print(f"One ckpt save per epoch of 1875 steps adds {per_epoch:.3f}% to the epoch.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="saves and steps to time (default: 50)")
    main_(parser.parse_args().repeats)
