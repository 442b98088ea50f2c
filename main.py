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
# (in that order). The script takes `--device_target` instead. `STEPS_PER_EPOCH = None` trains
# on every batch; the environment variable `TUTORIAL_STEPS_PER_EPOCH` caps it, for quick test runs.

# %% active="ipynb"
# import os
#
# DEVICE_TARGET = None
# DATA_DIR = "MNIST"
# CKPT_DIR = "ckpt"
# STEPS_PER_EPOCH = int(os.environ.get("TUTORIAL_STEPS_PER_EPOCH", 0)) or None

# %% [markdown]
# Two environment variables must be set before MindSpore is imported. `GLOG_v=2` keeps
# MindSpore's log to warnings and errors. On CPUs with AVX-512, `ONEDNN_MAX_CPU_ISA=AVX2` stops
# oneDNN from sending every convolution to its slow reference kernel: an epoch takes about
# 20 s instead of about 200 s on a 2-core machine (the README has the details). A value you set
# yourself is kept.

# %%
import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GLOG_v", "2")
cpuinfo = Path("/proc/cpuinfo")
if cpuinfo.exists() and " avx512f" in cpuinfo.read_text():  # only there does oneDNN pick its slow path
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import nn
from mindspore.communication import get_group_size, get_rank, init
from mindspore.dataset import transforms, vision
from mindspore.train import Callback, CheckpointConfig, LossMonitor, Model, ModelCheckpoint

from checkpoint_files import (CheckpointError, all_checkpoints, check_shapes, disk_full,
                              mindspore_log_silenced, read_checkpoint, regular_checkpoints, resolve,
                              run_info, table, write_checkpoint)
from cloud_storage import StorageError, check_reachable, fetch_dir, publish
from mnist_data import SHIPPED_DIR, DataError, prepare_mnist
from monitoring import ProgressBar, TrainingHistory, progress_enabled
from plotting import (plot_confusion_matrix, plot_misclassified, plot_predictions, plot_training_curves,
                      show_if_interactive)

BACKENDS = ("Ascend", "GPU", "CPU")


class UsageError(Exception):
    """A setting that cannot work here, such as a device that is not available."""


def set_device(device_target=None):
    """Run on `device_target`, or on the best backend available; return the backend's name."""
    with mindspore_log_silenced(logging.WARNING):  # each probe of a missing backend logs a warning
        available = [b for b in BACKENDS if getattr(ms.device_context, b.lower()).is_available()]
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
# checks each file's MD5, and refuses missing or damaged files before any training starts. If
# the files are not there, it downloads them from the public mirrors, checking the published MD5s.
#
# `create_dataset` is the tutorial's pipeline: resize the 28x28 images to 32x32, scale them to
# zero mean and unit variance (MNIST's mean is 0.1307 and its standard deviation 0.3081),
# reorder to channels-first, cast the labels to int32, shuffle, and batch.

# %%
def create_dataset(data_dir, training=True, batch_size=32, resize=(32, 32),
                   rescale=1 / (255 * 0.3081), shift=-0.1307 / 0.3081, buffer_size=64,
                   num_shards=None, shard_id=None):
    """The MNIST training or test set, transformed and batched for LeNet5.

    With `num_shards`, only the part `shard_id` of it, for one of several data-parallel workers.
    """
    dataset = ds.MnistDataset(os.path.join(data_dir, "train" if training else "test"),
                              num_shards=num_shards, shard_id=shard_id)
    dataset = dataset.map(input_columns=["image"], operations=[
        vision.Resize(resize), vision.Rescale(rescale, shift), vision.HWC2CHW()])
    dataset = dataset.map(input_columns=["label"], operations=transforms.TypeCast(ms.int32))
    return dataset.shuffle(buffer_size=buffer_size).batch(batch_size, drop_remainder=training)


# %% active="ipynb"
# data_dir = prepare_mnist(DATA_DIR, progress=progress_enabled())
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
# `append_info` adds the epoch and step numbers, which resuming reads back, and `crc_check`
# stores a checksum, so that a damaged file is refused when loaded. A file is named
# `<prefix>-<epoch>_<step in epoch>.ckpt`; `<prefix>-graph.meta` holds the compiled graph.
#
# `Model.fit` trains and, after each epoch, evaluates on the test set. `LossMonitor` prints the
# loss and those test metrics once per epoch; `ProgressBar` shows each epoch as it runs, in a
# terminal or in Jupyter; `TrainingHistory` records the loss of every step and the test metrics
# of every epoch, for the training curves. (Those two live in `monitoring.py`.)
#
# `train` and `resume_train` below share `run_training`: the only differences are where the
# weights come from and the learning rate.

# %%
def run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, initial_epoch=0,
                 steps_per_epoch=None, history=None):
    """Train `net` for `num_epochs` more epochs, saving a checkpoint and evaluating each epoch.

    `steps_per_epoch` caps each epoch, for quick runs; `history`, a `TrainingHistory`, collects
    the curves. Returns the last checkpoint written.
    """
    train_set = create_dataset(data_dir)
    if steps_per_epoch:
        train_set = train_set.take(steps_per_epoch)
    steps_per_epoch = train_set.get_dataset_size()
    # The callback counts the steps of this run only; start its count where the checkpoint left off.
    config = CheckpointConfig(save_checkpoint_steps=steps_per_epoch, keep_checkpoint_max=5, crc_check=True,
                              append_info=["epoch_num", {"step_num": initial_epoch * steps_per_epoch}])
    checkpoint = ModelCheckpoint(prefix="lenet", directory=str(ckpt_dir), config=config)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, optimizer, metrics={"acc", "loss"})
    sink = ms.get_current_device().device_target == "Ascend"
    history = TrainingHistory() if history is None else history
    model.fit(initial_epoch + num_epochs, train_set, create_dataset(data_dir, training=False),
              callbacks=[ProgressBar(), checkpoint, LossMonitor(steps_per_epoch), history],
              dataset_sink_mode=sink, valid_dataset_sink_mode=sink, initial_epoch=initial_epoch)
    metrics = history.last_metrics()
    print("Metrics:", {name: round(metrics[name], 4) for name in ("acc", "loss")})
    last = Path(checkpoint.latest_ckpt_file_name)
    print("Checkpoint files of this run:", *[f.name for f in run_files(last)])
    return last


def run_files(ckpt_file):
    """All files written by the run that wrote `ckpt_file`: those that share its prefix."""
    prefix = ckpt_file.name.rsplit("-", 1)[0]
    return sorted(ckpt_file.parent.glob(f"{prefix}-*"))


def train(data_dir, ckpt_dir, num_epochs=2, lr=0.01, steps_per_epoch=None, history=None):
    """Train a new LeNet5; return the last checkpoint written."""
    net = LeNet5()
    optimizer = nn.Momentum(net.trainable_params(), lr, 0.9)
    return run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, 0, steps_per_epoch, history)


# %% active="ipynb"
# history = TrainingHistory()
# last_checkpoint = train(data_dir, CKPT_DIR, steps_per_epoch=STEPS_PER_EPOCH, history=history)

# %% [markdown]
# What to look for: `LossMonitor` prints the loss once per epoch, and it should fall below
# about 0.1. The test accuracy (`acc`) should be about 0.97 after 2 epochs. The listing shows
# one checkpoint per epoch, `lenet-1_1875.ckpt` and `lenet-2_1875.ckpt`.

# %% [markdown]
# ## Resume training from a checkpoint
#
# `load_checkpoint` reads a file into a dictionary of parameters, and `load_param_into_net`
# copies the matching entries into a network or an optimizer and returns the names it could
# not fill. Loading into both restores the training state: the weights, and the optimizer's
# momentum, so the first resumed step is not a cold start. (`read_checkpoint` calls
# `load_checkpoint` with the CRC checked, and `check_shapes` makes sure the file fits LeNet5;
# either stops with one line naming the file and the problem.) The epoch number stored
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
    params = read_checkpoint(ckpt_file)
    check_shapes(params, net, ckpt_file)
    epoch = int(params["epoch_num"])
    net_missing, _ = ms.load_param_into_net(net, params)
    optimizer_missing, _ = ms.load_param_into_net(optimizer, params)
    print(f"Loaded {os.path.relpath(ckpt_file)} (epoch {epoch})")
    print("Network parameters not loaded:", net_missing)
    print("Optimizer parameters not loaded:", optimizer_missing)
    return epoch


def resume_train(data_dir, ckpt_dir, ckpt_file, num_epochs=2, lr=0.001, steps_per_epoch=None,
                 history=None):
    """Continue training from `ckpt_file` with learning rate `lr`; return the last checkpoint."""
    net = LeNet5()
    optimizer = nn.Momentum(net.trainable_params(), lr, 0.9)
    epoch = load_training_state(net, optimizer, ckpt_file)
    optimizer.learning_rate.set_data(ms.Tensor(lr, ms.float32))
    return run_training(net, optimizer, data_dir, ckpt_dir, num_epochs, epoch, steps_per_epoch, history)


# %% active="ipynb"
# resumed_checkpoint = resume_train(data_dir, CKPT_DIR, last_checkpoint, steps_per_epoch=STEPS_PER_EPOCH,
#                                   history=history)

# %% [markdown]
# What to look for: both lists of parameters not loaded are empty, the epochs are numbered 3
# and 4, the loss starts where the first run stopped, and the accuracy is about 0.975.
#
# The training curves show both runs, recorded by `TrainingHistory` as they trained. The
# resumed run picks up the loss where the first one stopped, and its smaller learning rate
# gives it a little more accuracy:

# %% active="ipynb"
# curves = plot_training_curves(history.runs)

# %% [markdown]
# ## Inference
#
# For inference only the weights matter: load the checkpoint into a fresh LeNet5 and predict
# the whole test set. The tutorial's figure shows the first four images, blue titles right and
# red ones wrong. The confusion matrix counts, for each true digit (row), what the model said
# (column): the diagonal is right, and the rest shows which digits it confuses. Last, the
# images it gets wrong, many of which a person would find hard too.

# %%
def load_weights(ckpt_file):
    """A fresh LeNet5 with the weights stored in `ckpt_file`."""
    net = LeNet5()
    params = read_checkpoint(ckpt_file)
    check_shapes(params, net, ckpt_file)
    ms.load_param_into_net(net, params)
    return net


def predict_test_set(net, data_dir):
    """Images, labels and predicted labels of the whole test set, as NumPy arrays."""
    model, images, labels, predictions = Model(net), [], [], []
    for batch in create_dataset(data_dir, training=False).create_dict_iterator(output_numpy=True):
        images.append(batch["image"])
        labels.append(batch["label"])
        predictions.append(model.predict(ms.Tensor(batch["image"])).asnumpy().argmax(axis=1))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(predictions)


def infer(data_dir, ckpt_file):
    """Predict the test set with the weights in `ckpt_file`; return the figures by name."""
    images, labels, predictions = predict_test_set(load_weights(ckpt_file), data_dir)
    print(f"Test accuracy of {os.path.relpath(ckpt_file)}: {np.mean(predictions == labels):.4f} "
          f"({np.count_nonzero(predictions != labels)} of {len(labels)} wrong)")
    return {"prediction": plot_predictions(images, labels, predictions),
            "confusion_matrix": plot_confusion_matrix(labels, predictions),
            "misclassified": plot_misclassified(images, labels, predictions)}


# %% active="ipynb"
# figures = infer(data_dir, resumed_checkpoint)

# %% [markdown]
# ## Checkpoints you can trust
#
# The tutorial's resume is right for fine-tuning, where a new run starts from trained weights.
# Retraining after an abnormal exit asks for more: the continued run should end exactly where
# an uninterrupted run would have, bit for bit. For that a checkpoint must hold:
#
# - the weights and the whole optimizer state: momentum buffers, learning rate, step count;
# - the position: the epoch *and* the step within it, since a crash rarely waits for an epoch
#   to end;
# - the data order. MindSpore's dataset shuffles with a seed, but a pipeline built anew
#   replays its first epoch's order. Here each epoch's order is derived from the seed and
#   the epoch number, and a continued epoch skips the batches it has already trained on.
#
# The files must also be trustworthy. MindSpore writes each checkpoint under a temporary name
# and renames it when complete; `crc_check` stores a checksum; `fsync` makes the file durable
# before it counts. A process killed at any moment, even mid-write, leaves no file that looks
# valid, and a damaged file is refused when loaded.

# %%
def epoch_dataset(data_dir, seed, epoch, steps_per_epoch=None, skip=0, shard=(0, 1)):
    """The training batches of `epoch` in an order fixed by `seed` and `epoch`, from batch `skip` on.

    `shard` is (rank, number of workers): each data-parallel worker gets its own part.
    """
    ds.config.set_seed(seed * 100_000 + epoch)
    rank, workers = shard
    dataset = create_dataset(data_dir, **({"num_shards": workers, "shard_id": rank} if workers > 1 else {}))
    if steps_per_epoch:
        dataset = dataset.take(steps_per_epoch)
    return dataset.skip(skip) if skip else dataset


@dataclass
class TrainConfig:
    """What defines a training run; a continued run must use the same values."""
    num_epochs: int = 2
    lr: float = 0.01
    seed: int = 0
    steps_per_epoch: int = None  # None: the whole training set
    save_steps: int = None  # None: save once per epoch only
    evaluate: bool = True  # evaluate after each epoch and keep the best checkpoint
    ckpt_format: str = "ckpt"  # or "safetensors"
    keep_checkpoint_max: int = 5


# %% [markdown]
# `CheckpointSaver` writes the files. Each checkpoint stores, beside the parameters, the epoch,
# the global step, the seed, the epoch size and the best accuracy so far. After every epoch the
# model is evaluated on the test set; when it beats the best so far, it is also saved as
# `lenet-best.ckpt`, with its accuracy and epoch inside. Rotation keeps the newest
# `keep_checkpoint_max` regular files and never touches the best one.

# %%
class CheckpointSaver(Callback):
    """Writes checkpoints: every `save_steps` steps by itself, and whenever `save` is called."""

    def __init__(self, train_network, ckpt_dir, config, steps_per_epoch, prefix="lenet"):
        super().__init__()
        self.network, self.ckpt_dir, self.config = train_network, Path(ckpt_dir), config
        self.steps_per_epoch, self.prefix = steps_per_epoch, prefix
        self.step, self.best_acc = 0, -1.0
        self.saved_step, self.last_saved = 0, None

    def on_train_step_end(self, run_context):
        self.step += 1
        save_steps, at_epoch_end = self.config.save_steps, self.step % self.steps_per_epoch == 0
        if save_steps and self.step % save_steps == 0 and not at_epoch_end:
            self.save()

    def position(self):
        """(epoch, step in epoch), both from 1, of the last step done."""
        epoch, step = divmod(self.step - 1, self.steps_per_epoch)
        return epoch + 1, step + 1

    def save(self, **metrics):
        epoch, step = self.position()
        path = self.ckpt_dir / f"{self.prefix}-{epoch}_{step}.{self.config.ckpt_format}"
        self._write(path, metrics)
        self.saved_step, self.last_saved = self.step, path
        for old in regular_checkpoints(self.ckpt_dir, self.prefix)[self.config.keep_checkpoint_max:]:
            old.unlink()
        return path

    def save_if_best(self, acc, loss):
        acc = float(np.float32(acc))  # as stored, so that a continued run compares the same numbers
        if acc > self.best_acc:
            self.best_acc = acc
            best = self.ckpt_dir / f"{self.prefix}-best.{self.config.ckpt_format}"
            self._write(best, {"acc": acc, "loss": loss})

    def _write(self, path, metrics):
        info = {"epoch_num": self.position()[0], "step_num": self.step, "seed": self.config.seed,
                "steps_per_epoch": self.steps_per_epoch, "best_acc": self.best_acc, **metrics}
        write_checkpoint(self.network, path, info, self.config.ckpt_format)

    def restore(self, auto_resume, source_dir=None):
        """Continue from the newest intact checkpoint in `source_dir` (default: our folder) if
        `auto_resume`; say what happened."""
        source_dir = Path(source_dir or self.ckpt_dir)
        existing = regular_checkpoints(source_dir, self.prefix)
        if existing and not auto_resume:
            raise UsageError(f"{source_dir} already has checkpoints (newest: {existing[0].name}); pass "
                             f"--auto_resume to continue from them, or choose another --ckpt_dir")
        for path in existing:
            try:
                params = read_checkpoint(path)
            except CheckpointError as error:
                if source_dir == self.ckpt_dir:
                    path.rename(path.with_name(path.name + ".damaged"))  # out of the way of new saves, but kept
                    error = f"{error} (kept as {path.name}.damaged)"
                print(f"Skipping {error}")
                continue
            check_shapes(params, self.network, path)
            self._check_compatible(path, params)
            ms.load_param_into_net(self.network, params)
            info = run_info(params)
            self.step = self.saved_step = info["step_num"]
            self.last_saved = path
            self.best_acc = info["best_acc"]
            epoch, step = self.position()
            best = f", best acc {self.best_acc:.4f}" if self.best_acc >= 0 else ""
            print(f"Continuing from {os.path.relpath(path)}: epoch {epoch}, step {step}{best}")
            return
        print("Starting a new run" + (": no intact checkpoint to continue from" if existing else ""))

    def _check_compatible(self, path, params):
        info = run_info(params)
        if "seed" not in info:
            raise UsageError(f"{path} has no run position (it was not saved by 'train'); "
                             f"choose another --ckpt_dir")
        stored = {"--seed": info["seed"], "--steps_per_epoch": info["steps_per_epoch"],
                  "--lr": float(params["learning_rate"].asnumpy())}
        asked = {"--seed": self.config.seed, "--steps_per_epoch": self.steps_per_epoch,
                 "--lr": float(np.float32(self.config.lr))}
        for option, value in stored.items():
            if asked[option] != value:
                raise UsageError(f"{path} was trained with {option} {value:g}, not {asked[option]:g}; "
                                 f"pass the same value to continue it exactly")


# %% [markdown]
# `train_resumable` runs one `Model.train` call per epoch, on that epoch's batches. It stops
# cleanly on Ctrl-C (SIGINT) or SIGTERM, the signal a scheduler or `kill` sends: the signal
# handler only raises a flag, the current step finishes, the state is saved, and the run ends
# with `TrainingInterrupted`. (While a step runs, MindSpore's runtime catches SIGINT and passes
# it on as SIGTERM, so Ctrl-C usually reports SIGTERM.) `stop_after_step` simulates an
# interruption.

# %%
class StopOnSignal(Callback):
    """Turns SIGINT and SIGTERM into a stop after the current step, or after step `stop_after_step`."""

    def __init__(self, current_step, stop_after_step=None):
        super().__init__()
        self.current_step, self.stop_after_step = current_step, stop_after_step
        self.received, self.previous = [], {}

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, _: self.received.append(signum))

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def should_stop(self, step):
        return bool(self.received) or step == self.stop_after_step

    def on_train_step_end(self, run_context):
        if self.should_stop(self.current_step()):
            run_context.request_stop()


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving its state."""

    def __init__(self, signum, path):
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at {path.name.rsplit('.', 1)[0]}; "
                         f"saved {os.path.relpath(path)}")


def train_resumable(data_dir, ckpt_dir, config, auto_resume=False, stop_after_step=None, shard=(0, 1)):
    """Train to `config.num_epochs`, continuing exactly from `ckpt_dir` if `auto_resume`.

    `shard` is (rank, number of workers) under msrun; see "Scaling out". Returns the last
    checkpoint saved.
    """
    rank, workers = shard
    steps_per_epoch = epoch_dataset(data_dir, config.seed, 0, config.steps_per_epoch, shard=shard).get_dataset_size()
    ms.set_seed(config.seed)
    net = LeNet5()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(net.trainable_params(), config.lr, 0.9), metrics={"acc", "loss"})
    if workers > 1:  # every worker saves its own copy; all continue from rank 0's, so they agree
        ckpt_dir, source_dir = Path(ckpt_dir) / f"rank_{rank}", Path(ckpt_dir) / "rank_0"
    else:
        source_dir = ckpt_dir
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    saver = CheckpointSaver(model.train_network, ckpt_dir, config, steps_per_epoch)
    saver.restore(auto_resume, source_dir)
    if saver.step >= config.num_epochs * steps_per_epoch:
        print(f"Already trained for {config.num_epochs} epochs; nothing to do")
        return saver.last_saved
    stopper, progress = StopOnSignal(lambda: saver.step, stop_after_step), ProgressBar(config.num_epochs)
    stopper.install()
    try:
        start = time.perf_counter()
        while saver.step < config.num_epochs * steps_per_epoch and not stopper.should_stop(saver.step):
            epoch, done = divmod(saver.step, steps_per_epoch)
            data = epoch_dataset(data_dir, config.seed, epoch, config.steps_per_epoch, done, shard)
            model.train(epoch + 1, data, callbacks=[progress, saver, stopper], initial_epoch=epoch,
                        dataset_sink_mode=False)
            if saver.step % steps_per_epoch:
                break  # stopped mid-epoch
            metrics = {}
            if config.evaluate and rank == 0:  # the test set is the same for every worker
                metrics = {name: float(value) for name, value in
                           model.eval(create_dataset(data_dir, training=False), callbacks=progress).items()}
                saver.save_if_best(metrics["acc"], metrics["loss"])
            saver.save(**metrics)
            print(f"epoch {epoch + 1}/{config.num_epochs}: {time.perf_counter() - start:.1f} s, "
                  + "".join(f"{name} {value:.4f}, " for name, value in sorted(metrics.items()))
                  + f"saved {saver.last_saved.name}")
        if saver.saved_step != saver.step:
            saver.save()
    finally:
        stopper.uninstall()
    if stopper.received:
        raise TrainingInterrupted(stopper.received[0], saver.last_saved)
    if saver.step < config.num_epochs * steps_per_epoch:
        print(f"Stopped after step {saver.step} as asked; saved {os.path.relpath(saver.last_saved)}")
    return saver.last_saved


# %% [markdown]
# Here is the whole story on a short run of 2 epochs of 300 steps. One run goes through
# without a break. A second is interrupted after step 450, in the middle of its second epoch,
# and then continued with `auto_resume`. The two end with identical parameters.

# %% active="ipynb"
# demo = TrainConfig(num_epochs=2, steps_per_epoch=300, save_steps=100, seed=1)
# demo_dir = Path(CKPT_DIR) / time.strftime("exact-%Y%m%d-%H%M%S")
# reference = train_resumable(data_dir, demo_dir / "uninterrupted", demo)

# %% active="ipynb"
# train_resumable(data_dir, demo_dir / "interrupted", demo, stop_after_step=450)
# continued = train_resumable(data_dir, demo_dir / "interrupted", demo, auto_resume=True)

# %% active="ipynb"
# a, b = read_checkpoint(reference), read_checkpoint(continued)
# print("Same parameters, bit for bit:", a.keys() == b.keys()
#       and all(np.array_equal(a[name].asnumpy(), b[name].asnumpy()) for name in a))
# print(table(demo_dir / "interrupted"))

# %% [markdown]
# The table lists each checkpoint with its position, the metrics stored in it, and whether its
# CRC still matches. `lenet-best.ckpt` is the parameters with the highest test accuracy; infer
# with it like any other checkpoint:

# %% active="ipynb"
# best_figures = infer(data_dir, demo_dir / "interrupted" / "lenet-best.ckpt")

# %% [markdown]
# ## Scaling out: data-parallel training with msrun
#
# On several devices, MindSpore trains data-parallel: every worker holds the whole model,
# trains on its own part of each epoch, and the gradients are averaged across workers
# (AllReduce) before every update, so all workers keep identical parameters. MindSpore's
# launcher `msrun` starts the workers and tells each, through environment variables, how to
# reach the others:
#
# ```sh
# msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1 --master_port=8118 \
#       main.py train --auto_resume
# ```
#
# Under `msrun`, `train` joins the workers with `init()` and turns on `DATA_PARALLEL` with
# `gradients_mean=True`; `MnistDataset` gives each worker its shard (`num_shards`,
# `shard_id`). Each worker still takes batches of 32, so the global batch is 32 x workers, and
# an epoch has 1/workers as many steps. Averaged gradients over a batch that many times larger
# are smoother, not larger: keep the learning rate for a few workers, and for many, scale it
# up with the number of workers (the "linear scaling rule") with a warm-up.
#
# Every worker saves its own checkpoints in `ckpt_dir/rank_<id>/`; they are identical, so each
# is a complete model. To continue, every worker loads the newest intact checkpoint of
# `rank_0/`, so they all start at the same step. Any one of them loads in a single process.

# %%
def init_data_parallel():
    """Under msrun, join the other workers and average gradients across them.

    Returns (rank, number of workers); (0, 1) in a single process.
    """
    if "MS_WORKER_NUM" not in os.environ:  # set by msrun
        return 0, 1
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return get_rank(), get_group_size()


# %% [markdown]
# ## Export for deployment
#
# A checkpoint needs the Python code of the network to be useful. For deployment, `ms.export`
# writes the network and its weights as one file: MindIR, which MindSpore and MindSpore Lite
# load without the Python class, or ONNX, for other runtimes such as ONNX Runtime. The input
# shape is fixed when exporting: here a batch of 32 images of 1x32x32, normalised as in
# `create_dataset`.

# %%
EXPORT_INPUT_SHAPE = (32, 1, 32, 32)


def export_model(ckpt_file, file_format="MINDIR", file_name="lenet5"):
    """Write LeNet5 with the weights in `ckpt_file` as a MINDIR or ONNX file; return its path."""
    example = ms.Tensor(np.zeros(EXPORT_INPUT_SHAPE, np.float32))
    ms.export(load_weights(ckpt_file), example, file_name=file_name, file_format=file_format)
    path = Path(f"{file_name}.{file_format.lower()}")
    print(f"Exported {os.path.relpath(ckpt_file)} to {path}, input shape {EXPORT_INPUT_SHAPE}")
    return path


# %% [markdown]
# The exported MindIR loads with `ms.load` into a `GraphCell`, which runs it like any network.
# Its predictions on the first test batch are those of the checkpoint:

# %% active="ipynb"
# mindir = export_model(resumed_checkpoint)
# deployed = nn.GraphCell(ms.load(str(mindir)))
# images = ms.Tensor(next(create_dataset(data_dir, training=False).create_dict_iterator(output_numpy=True))["image"])
# from_mindir, from_ckpt = deployed(images).asnumpy(), load_weights(resumed_checkpoint)(images).asnumpy()
# print("Same predictions:", (from_mindir.argmax(1) == from_ckpt.argmax(1)).all(),
#       "; largest difference in the logits:", np.abs(from_mindir - from_ckpt).max())

# %% [markdown]
# ## Running the script
#
# `python main.py` runs the tutorial's steps above, in order. The commands `train`, `resume`,
# `infer`, `list` and `export` run one step each; `python main.py COMMAND --help` describes its
# options.
#
# ```sh
# python main.py train --num_epochs 4 --save_steps 500 --auto_resume   # continue after any crash
# python main.py infer --ckpt best
# python main.py list
# python main.py export --ckpt best --file_format ONNX
# ```
#
# `--train_url` copies the outputs to a folder, or to object storage on ModelArts.

# %% active="py"
def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports a bad option in one line, like every other error, rather than with the usage text."""

    def error(self, message):
        self.exit(2, f"error: {message}; see python {self.prog} --help\n")


def parse_args(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data_url", default=str(SHIPPED_DIR),
                        help="MNIST folder: train/ and test/ with the IDX files, or the four .gz "
                             "files; obs:// or s3:// on ModelArts (default: MNIST/ next to main.py)")
    common.add_argument("--train_url", default=None,
                        help="folder, or obs:// or s3:// URL, that receives the outputs at the end "
                             "(default: none)")
    common.add_argument("--device_target", choices=BACKENDS, default=None,
                        help="backend to run on (default: the best available, in the order "
                             "Ascend, GPU, CPU)")
    common.add_argument("--ckpt_dir", default="ckpt", help="folder for the checkpoint files (default: ckpt)")
    common.add_argument("--no_progress", action="store_true",
                        help="no progress bars (default: bars on a terminal, none when output goes to a "
                             "file or a pipe)")
    steps = argparse.ArgumentParser(add_help=False)
    steps.add_argument("--steps_per_epoch", type=positive_int, default=None, metavar="M",
                       help="train only the first M batches of each epoch, for a quick run "
                            "(default: all 1875)")
    ckpt = argparse.ArgumentParser(add_help=False)
    ckpt.add_argument("--ckpt", default="latest",
                      help="checkpoint file, 'latest' (the newest in --ckpt_dir) or 'best' "
                           "(default: latest)")

    parser = OneLineErrorParser(
        parents=[common, steps],
        description="The MindSpore checkpoint tutorial on LeNet5 and MNIST. Without a command, "
                    "run it all: train, resume from a checkpoint, and predict.")
    commands = parser.add_subparsers(dest="command", title="commands")
    train_cmd = commands.add_parser("train", parents=[common, steps], help="train, with exact resuming",
                                    description="Train LeNet5, saving checkpoints that allow an exact "
                                                "continuation after any interruption.")
    train_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to train to (default: 2)")
    train_cmd.add_argument("--lr", type=positive_float, default=0.01, help="learning rate (default: 0.01)")
    train_cmd.add_argument("--seed", type=int, default=0, help="seed for weights and data order (default: 0)")
    train_cmd.add_argument("--save_steps", type=positive_int, default=None, metavar="K",
                           help="also save every K steps (default: once per epoch)")
    train_cmd.add_argument("--auto_resume", action="store_true",
                           help="continue from the newest intact checkpoint in --ckpt_dir, if any")
    train_cmd.add_argument("--no_eval", dest="evaluate", action="store_false",
                           help="skip the test-set evaluation after each epoch, and so the best checkpoint")
    train_cmd.add_argument("--ckpt_format", choices=("ckpt", "safetensors"), default="ckpt",
                           help="checkpoint file format (default: ckpt)")
    resume_cmd = commands.add_parser("resume", parents=[common, steps, ckpt],
                                     help="the tutorial's resume step: fine-tune from a checkpoint",
                                     description="Continue training from a checkpoint with a new "
                                                 "learning rate, as the tutorial's resume_train does.")
    resume_cmd.add_argument("--num_epochs", type=positive_int, default=2, help="epochs to add (default: 2)")
    resume_cmd.add_argument("--lr", type=positive_float, default=0.001, help="learning rate (default: 0.001)")
    commands.add_parser("infer", parents=[common, ckpt], help="predict the first test batch",
                        description="Predict the first test batch and save images/prediction.png.")
    commands.add_parser("list", parents=[common], help="list the checkpoints in --ckpt_dir",
                        description="List the checkpoints in --ckpt_dir: position, stored metrics, "
                                    "and whether each file is intact.")
    export_cmd = commands.add_parser("export", parents=[common, ckpt], help="export for deployment",
                                     description="Write LeNet5 with a checkpoint's weights as one "
                                                 "MindIR or ONNX file, for inference on batches of "
                                                 "32 images of 1x32x32.")
    export_cmd.add_argument("--file_format", choices=("MINDIR", "ONNX"), default="MINDIR",
                            help="file format (default: MINDIR)")
    export_cmd.add_argument("--file_name", default="lenet5",
                            help="path of the file to write, without its extension (default: lenet5)")
    args, unknown = parser.parse_known_args(argv)  # ModelArts adds arguments of its own
    if unknown:
        print("Ignoring unknown arguments:", *unknown)
    return args


def make_writable_dir(path, option):
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # write access, as the checkpoints will need it
            pass
    except OSError as error:
        raise UsageError(f"cannot write to {option} {path}: {error.strerror}; "
                         f"pass a folder you can write to") from None


def save_figures(figures):
    """Save each figure as images/<name>.png; return the paths."""
    paths = []
    for name, figure in figures.items():
        path = Path("images") / f"{name}.png"
        try:
            path.parent.mkdir(exist_ok=True)
            figure.savefig(path)
        except OSError as error:
            raise UsageError(f"cannot save {path}: {error.strerror}; run from a folder you can write to") from None
        print("Saved", path)
        paths.append(path)
    return paths


def main(args):
    """Run the command in `args`; return the files to copy to --train_url."""
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch, which ProgressBar follows
    check_reachable(args.data_url, "--data_url")
    if args.train_url:
        check_reachable(args.train_url, "--train_url")
    if args.command == "list":
        print(table(args.ckpt_dir))
        return []
    set_device(args.device_target)
    shard = init_data_parallel()
    if shard[1] > 1 and args.command != "train":
        raise UsageError("under msrun, run the 'train' command; the others run in one process")
    if args.command == "export":
        return [export_model(resolve(args.ckpt, args.ckpt_dir), args.file_format, args.file_name)]
    data_dir = prepare_mnist(fetch_dir(args.data_url, "cache/data"), progress=progress_enabled())
    if args.command == "infer":
        return save_figures(infer(data_dir, resolve(args.ckpt, args.ckpt_dir)))
    make_writable_dir(args.ckpt_dir, "--ckpt_dir")
    if args.command == "train":
        config = TrainConfig(num_epochs=args.num_epochs, lr=args.lr, seed=args.seed,
                             steps_per_epoch=args.steps_per_epoch, save_steps=args.save_steps,
                             evaluate=args.evaluate, ckpt_format=args.ckpt_format)
        last = train_resumable(data_dir, args.ckpt_dir, config, args.auto_resume, shard=shard)
        return all_checkpoints(last.parent) if shard[0] == 0 else []  # ranks hold the same model
    if args.command == "resume":
        resumed = resume_train(data_dir, args.ckpt_dir, resolve(args.ckpt, args.ckpt_dir), args.num_epochs,
                               args.lr, args.steps_per_epoch)
        return run_files(resumed)
    history = TrainingHistory()
    trained = train(data_dir, args.ckpt_dir, steps_per_epoch=args.steps_per_epoch, history=history)
    resumed = resume_train(data_dir, args.ckpt_dir, trained, steps_per_epoch=args.steps_per_epoch,
                           history=history)
    figures = {"training_curves": plot_training_curves(history.runs), **infer(data_dir, resumed)}
    return [*run_files(trained), *run_files(resumed), *save_figures(figures)]


if __name__ == "__main__":
    args = parse_args()
    try:
        outputs = main(args)
        if args.train_url:
            publish(outputs, args.train_url)
            print("Copied the outputs to", args.train_url)
    except (CheckpointError, DataError, StorageError, UsageError) as error:
        sys.exit(f"error: {error}")
    except TrainingInterrupted as error:
        print(f"Training {error}. To continue: python main.py train --auto_resume "
              f"--ckpt_dir {args.ckpt_dir} (with the same options)", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit("Interrupted before training started; nothing was saved.")
    except OSError as error:  # such as a full disk under the tutorial's ModelCheckpoint
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or choose another --ckpt_dir" if disk_full(error) else "check the folders you passed"
        sys.exit(f"error: {error.strerror or error}{where}, with --ckpt_dir {args.ckpt_dir}; {fix} "
                 f"(the files already saved are kept)")
    show_if_interactive()
