# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Saving and Loading a Checkpoint
#
# A checkpoint is a snapshot of everything a training run has learned so far: the network's
# weights and the optimizer's state. This tutorial trains LeNet5 on MNIST with MindSpore 2.10
# and uses checkpoints for the three jobs they exist for:
#
# - **Inference after training**: load the weights into a fresh network and predict.
# - **Retraining after an abnormal exit**: a long run that dies (a crash, a pre-empted job)
#   continues from its last checkpoint instead of starting again.
# - **Fine-tuning**: start a new run, here with a smaller learning rate, from weights someone
#   already trained.
#
# The steps: set up the device, build the dataset and the model, train for 2 epochs while
# saving a checkpoint each epoch, resume from the last checkpoint for 2 more epochs, and
# predict with the result.

# %% [markdown]
# ## Setup
#
# Pick the device here: `"Ascend"`, `"GPU"`, `"CPU"`, or `None` for the best one available
# (in that order). The script takes `--device_target` instead.

# %% active="ipynb"
# DEVICE_TARGET = None
# DATA_DIR = "MNIST"
# CKPT_DIR = "ckpt"

# %% [markdown]
# Two environment variables must be set before MindSpore is imported. `GLOG_v=2` keeps
# MindSpore's log to warnings and errors. On x86 CPUs, `ONEDNN_MAX_CPU_ISA=AVX2` stops oneDNN
# from sending every convolution to its slow reference kernel: an epoch takes about 12 s
# instead of about 100 s on a 2-core machine (the README has the details). A value you set
# yourself is kept.

# %%
import argparse
import logging
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("GLOG_v", "2")
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import nn
from mindspore.dataset import transforms, vision
from mindspore.train import CheckpointConfig, LossMonitor, Model, ModelCheckpoint

from cloud_storage import StorageError, check_reachable, fetch_dir, publish
from mnist_data import SHIPPED_DIR, DataError, prepare_mnist
from plotting import plot_predictions, show_if_interactive

BACKENDS = ("Ascend", "GPU", "CPU")


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def set_device(device_target=None):
    """Run on `device_target`, or on the best backend available; return the backend's name."""
    logging.disable(logging.WARNING)  # each probe of a missing backend logs a warning
    try:
        available = [b for b in BACKENDS if getattr(ms.device_context, b.lower()).is_available()]
    finally:
        logging.disable(logging.NOTSET)
    if device_target is None:
        device_target = available[0]
    elif device_target not in available:
        raise UsageError(f"device_target {device_target} is not available here; "
                         f"available: {', '.join(available)}")
    ms.set_device(device_target)
    ms.set_context(mode=ms.GRAPH_MODE)
    print(f"Device: {device_target} (available: {', '.join(available)})")
    return device_target


# %% active="ipynb"
# device_target = set_device(DEVICE_TARGET)

# %% [markdown]
# ## Data
#
# The repository ships the four MNIST files, gzip-compressed, in `MNIST/`. `prepare_mnist`
# decompresses them on first use into the layout `MnistDataset` reads (`train/` and `test/`),
# checks each file's MD5, and refuses missing or damaged files before any training starts.
#
# `create_dataset` is the tutorial's pipeline: resize the 28x28 images to 32x32, scale them to
# zero mean and unit variance (MNIST's mean is 0.1307 and its standard deviation 0.3081),
# reorder to channels-first, cast the labels to int32, shuffle, and batch.

# %%
def create_dataset(data_dir, training=True, batch_size=32, resize=(32, 32),
                   rescale=1 / (255 * 0.3081), shift=-0.1307 / 0.3081, buffer_size=64):
    """The MNIST training or test set, transformed and batched for LeNet5."""
    dataset = ds.MnistDataset(os.path.join(data_dir, "train" if training else "test"))
    dataset = dataset.map(input_columns=["image"], operations=[
        vision.Resize(resize), vision.Rescale(rescale, shift), vision.HWC2CHW()])
    dataset = dataset.map(input_columns=["label"], operations=transforms.TypeCast(ms.int32))
    return dataset.shuffle(buffer_size=buffer_size).batch(batch_size, drop_remainder=True)


# %% active="ipynb"
# data_dir = prepare_mnist(DATA_DIR)
# print("Steps per epoch:", create_dataset(data_dir).get_dataset_size())

# %% [markdown]
# ## Model
#
# LeNet5 as the tutorial defines it: two 5x5 convolutions with ReLU and 2x2 max-pooling, then
# three fully connected layers. Like the tutorial, it has no activation between the fully
# connected layers. MindSpore's `Conv2d` has no bias by default, which gives 61,684 trainable
# parameters.

# %%
class LeNet5(nn.Cell):
    """LeNet5 for 1x32x32 inputs and 10 classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(400, 120)
        self.fc2 = nn.Dense(120, 84)
        self.fc3 = nn.Dense(84, 10)

    def construct(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(self.flatten(x))))


# %% [markdown]
# ## Train and save checkpoints
#
# `ModelCheckpoint` saves a checkpoint every `save_checkpoint_steps` steps (here, once per
# epoch) and keeps the newest `keep_checkpoint_max` of them. Each file holds the network's
# weights and the optimizer's state (its momentum buffers, learning rate and step count).
# `append_info` adds the epoch and step numbers, which resuming reads back. A file is named
# `<prefix>-<epoch>_<step in epoch>.ckpt`; `<prefix>-graph.meta` holds the compiled graph.
#
# `train` and `resume_train` below share `run_training`: the only differences are where the
# weights come from and the learning rate.

# %%
def run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, initial_epoch=0,
                 steps_per_epoch=None):
    """Train `net` for `num_epochs` more epochs, saving a checkpoint each epoch; evaluate.

    `steps_per_epoch` caps each epoch, for quick runs. Returns the last checkpoint written.
    """
    train_set = create_dataset(data_dir)
    if steps_per_epoch:
        train_set = train_set.take(steps_per_epoch)
    steps_per_epoch = train_set.get_dataset_size()
    # The callback counts the steps of this run only; start its count where the checkpoint left off.
    config = CheckpointConfig(save_checkpoint_steps=steps_per_epoch, keep_checkpoint_max=5,
                              append_info=["epoch_num", {"step_num": initial_epoch * steps_per_epoch}])
    checkpoint = ModelCheckpoint(prefix="lenet", directory=str(ckpt_dir), config=config)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, optimizer, metrics={"acc", "loss"})
    sink = ms.get_current_device().device_target == "Ascend"
    model.train(initial_epoch + num_epochs, train_set, dataset_sink_mode=sink,
                callbacks=[checkpoint, LossMonitor(steps_per_epoch)], initial_epoch=initial_epoch)
    metrics = model.eval(create_dataset(data_dir, training=False), dataset_sink_mode=sink)
    print("Metrics:", {name: round(float(value), 4) for name, value in sorted(metrics.items())})
    last = Path(checkpoint.latest_ckpt_file_name)
    print("Checkpoint files of this run:", *[f.name for f in run_files(last)])
    return last


def run_files(ckpt_file):
    """All files written by the run that wrote `ckpt_file`: those that share its prefix."""
    prefix = ckpt_file.name.rsplit("-", 1)[0]
    return sorted(ckpt_file.parent.glob(f"{prefix}-*"))


def train(data_dir, ckpt_dir, num_epochs=2, lr=0.01, steps_per_epoch=None):
    """Train a new LeNet5; return the last checkpoint written."""
    net = LeNet5()
    optimizer = nn.Momentum(net.trainable_params(), lr, 0.9)
    return run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, steps_per_epoch=steps_per_epoch)


# %% active="ipynb"
# last_checkpoint = train(data_dir, CKPT_DIR)

# %% [markdown]
# What to look for: `LossMonitor` prints the loss once per epoch, and it should fall below
# about 0.1. The test accuracy (`acc`) should be about 0.97 after 2 epochs. The listing shows
# one checkpoint per epoch, `lenet-1_1875.ckpt` and `lenet-2_1875.ckpt`.

# %% [markdown]
# ## Resume training from a checkpoint
#
# `load_checkpoint` reads a file into a dictionary of parameters, and `load_param_into_net`
# copies the matching entries into a network or an optimizer and returns the names it could
# not fill. Loading into both restores the exact training state: the weights, and the
# optimizer's momentum, so the first resumed step is not a cold start. The epoch number stored
# with `append_info` becomes `initial_epoch`, so the epochs go on from 3. Loading the optimizer
# also restores its learning rate of 0.01; this run fine-tunes with a smaller one, so it sets
# that after loading.
#
# The new `ModelCheckpoint` writes into the same folder. MindSpore never overwrites another
# run's files: it finds `lenet-*.ckpt` already there and renames this run's prefix to
# `lenet_1`. That is why the resumed run's files are called `lenet_1-3_1875.ckpt` and so on,
# and why the code follows the path `train` returned rather than a hard-coded file name.

# %%
def load_training_state(net, optimizer, ckpt_file):
    """Load weights and optimizer state from `ckpt_file`; return the epoch it was saved at."""
    params = ms.load_checkpoint(str(ckpt_file))
    epoch = int(params["epoch_num"])
    net_missing, _ = ms.load_param_into_net(net, params)
    optimizer_missing, _ = ms.load_param_into_net(optimizer, params)
    print(f"Loaded {os.path.relpath(ckpt_file)} (epoch {epoch})")
    print("Network parameters not loaded:", net_missing)
    print("Optimizer parameters not loaded:", optimizer_missing)
    return epoch


def resume_train(data_dir, ckpt_dir, ckpt_file, num_epochs=2, lr=0.001, steps_per_epoch=None):
    """Continue training from `ckpt_file` with learning rate `lr`; return the last checkpoint."""
    net = LeNet5()
    optimizer = nn.Momentum(net.trainable_params(), lr, 0.9)
    epoch = load_training_state(net, optimizer, ckpt_file)
    optimizer.learning_rate.set_data(ms.Tensor(lr, ms.float32))
    return run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, epoch, steps_per_epoch)


# %% active="ipynb"
# resumed_checkpoint = resume_train(data_dir, CKPT_DIR, last_checkpoint)

# %% [markdown]
# What to look for: both lists of parameters not loaded are empty, the epochs are numbered 3
# and 4, the loss starts where the first run stopped, and the accuracy is about 0.975.

# %% [markdown]
# ## Inference
#
# For inference only the weights matter: load the checkpoint into a fresh LeNet5 and predict
# the first batch of the test set. Blue titles are right, red ones wrong.

# %%
def infer(data_dir, ckpt_file):
    """Predict the first test batch with the weights in `ckpt_file`; return the figure."""
    net = LeNet5()
    ms.load_param_into_net(net, ms.load_checkpoint(str(ckpt_file)))
    batch = next(create_dataset(data_dir, training=False).create_dict_iterator(output_numpy=True))
    predictions = Model(net).predict(ms.Tensor(batch["image"])).asnumpy().argmax(axis=1)
    return plot_predictions(batch["image"], batch["label"], predictions)


# %% active="ipynb"
# figure = infer(data_dir, resumed_checkpoint)

# %% [markdown]
# ## Running the script
#
# `python main.py --data_url MNIST --ckpt_dir ckpt` runs all of the above. `--train_url`
# copies the checkpoints and the figure to a folder, or to object storage on ModelArts.

# %% active="py"
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train LeNet5 on MNIST, save checkpoints, resume from one, and predict.")
    parser.add_argument("--data_url", default=str(SHIPPED_DIR),
                        help="MNIST folder: train/ and test/ with the IDX files, or the four .gz "
                             "files; obs:// or s3:// on ModelArts (default: MNIST/ next to main.py)")
    parser.add_argument("--train_url", default=None,
                        help="folder, or obs:// or s3:// URL, that receives the checkpoints and "
                             "the prediction figure at the end (default: none)")
    parser.add_argument("--device_target", choices=BACKENDS, default=None,
                        help="backend to run on (default: the best available, in the order "
                             "Ascend, GPU, CPU)")
    parser.add_argument("--ckpt_dir", default="ckpt",
                        help="folder for the checkpoint files (default: ckpt)")
    parser.add_argument("--steps_per_epoch", type=int, default=None, metavar="M",
                        help="train only the first M batches of each epoch, for a quick run "
                             "(default: all 1875)")
    args, unknown = parser.parse_known_args(argv)  # ModelArts adds arguments of its own
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    return args


def make_writable_dir(path, option):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {option} {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path} is not writable; pass a folder you can write to")


def main(args):
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UsageError(f"--steps_per_epoch must be at least 1, got {args.steps_per_epoch}")
    check_reachable(args.data_url, "--data_url")
    if args.train_url:
        check_reachable(args.train_url, "--train_url")
    set_device(args.device_target)
    data_dir = prepare_mnist(fetch_dir(args.data_url, "cache/data"))
    make_writable_dir(args.ckpt_dir, "--ckpt_dir")
    trained = train(data_dir, args.ckpt_dir, steps_per_epoch=args.steps_per_epoch)
    resumed = resume_train(data_dir, args.ckpt_dir, trained, steps_per_epoch=args.steps_per_epoch)
    figure = infer(data_dir, resumed)
    figure_file = Path("images/prediction.png")
    figure_file.parent.mkdir(exist_ok=True)
    figure.savefig(figure_file)
    print("Saved", figure_file)
    if args.train_url:
        publish([*run_files(trained), *run_files(resumed), figure_file], args.train_url)
        print("Copied the checkpoints and the figure to", args.train_url)
    show_if_interactive()


if __name__ == "__main__":
    try:
        main(parse_args())
    except (DataError, StorageError, UsageError) as error:
        sys.exit(f"error: {error}")
