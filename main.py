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
# ## Introduction
#
# A checkpoint is a file with a model's parameters, saved while it trains. This tutorial
# trains LeNet5 on MNIST with MindSpore 2.10, saves checkpoints, and loads them again, for the
# four scenarios checkpoints serve:
#
# - **Inference after training**
#   - Save the parameters after training and predict with them: *Loading a checkpoint for inference*.
#   - Keep the most accurate parameters seen in training: `SaveBest` in *Saving the model*.
# - **Retraining**
#   - After an abnormal exit, go on from the last checkpoint rather than from the start:
#     *Resuming training from a checkpoint*, and, exact to the step, *Surviving a crash*.
#   - Fine-tuning: a model trained on a large dataset becomes the start of a new model for a
#     similar, smaller task, which trains quickly: *Fine-tuning for a smaller task*.
#
# ## Objectives
#
# - Save a model during training with `ModelCheckpoint`.
# - Load a saved checkpoint and continue training from it.
# - Use MindSpore's callbacks.
#
# ## Environment
#
# MindSpore 2.10.0 on Python 3.10 to 3.12, or 2.7.0 to 2.9.0, on 3.9 too (see the README), with
# Jupyter and Matplotlib: `pip install -r requirements.txt`. MindSpore runs on CPUs, NVIDIA GPUs and Huawei
# Ascend (<https://www.mindspore.cn/install/en>); the code picks the best one available.
#
# ## Preparation
#
# MNIST has 60,000 training and 10,000 test images of handwritten digits in 10 classes
# (<http://yann.lecun.com/exdb/mnist/>). The repository ships the four MNIST files in `MNIST/`,
# recompressed with `gzip -9 -n`, their content the original's (see `MNIST/README.md`).
# `mnist_data.py` and `machinery/` are what the tutorial imports (copy them along with the notebook):
# its `prepare_mnist` unpacks the files into this layout and checks them.
#
# ```text
# checkpoint
# ├── MNIST
# │   ├── test
# │   │   ├── t10k-images-idx3-ubyte
# │   │   └── t10k-labels-idx1-ubyte
# │   └── train
# │       ├── train-images-idx3-ubyte
# │       └── train-labels-idx1-ubyte
# ├── main.ipynb   (or main.py)
# └── mnist_data.py
# ```
#
# ## Procedure (Notebook)
#
# ### Import modules
#
# `GLOG_v=2` limits MindSpore's log to warnings and errors. On CPUs with AVX-512, oneDNN runs
# LeNet5's convolutions in a slow reference kernel; capping it at AVX2 makes an epoch about ten
# times faster (see `docs/speed.md`). Both must be set before MindSpore starts.

# %% active="py"
if __name__ == "__main__":  # the script runs a command (train, resume, ...), or every cell below in order
    from machinery.script import start
    start()

# %%
import logging
import os
from pathlib import Path

os.environ.setdefault("GLOG_v", "2")
if Path("/proc/cpuinfo").exists() and " avx512f" in Path("/proc/cpuinfo").read_text():
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

from mnist_data import SettingError, check_mindspore, check_steps_per_epoch, let_mindspore_read_cells, \
    mnist_split, prepare_mnist, print_plain_numbers

check_mindspore()  # no MindSpore, or one older than 2.7: one line saying what to install, not a traceback
import matplotlib.pyplot as plt
import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.dataset import MnistDataset, transforms, vision
from mindspore.train import Accuracy, Callback, CheckpointConfig, Loss, LossMonitor, Model, ModelCheckpoint

from machinery.folder_lock import hold_folder
print_plain_numbers()  # print metrics as 0.98, not np.float64(0.98)
let_mindspore_read_cells()  # in Jupyter, MindSpore reads a cell's code from a file (docs/notebook.md); else nothing


# %%
def available_devices():
    """The devices MindSpore can use here, best first."""
    logging.disable(logging.WARNING)  # probing a device that is not installed logs a warning
    available = [d for d in ("Ascend", "GPU", "CPU") if getattr(ms.device_context, d.lower()).is_available()]
    logging.disable(logging.NOTSET)
    return available


# %%
def set_device(device_target=None, device_id=None):
    """Run on `device_target` (card `device_id`), or on the best device available; return its name."""
    available = available_devices()
    device_target = device_target or available[0]
    if device_target not in available:
        raise SettingError(f"device_target {device_target} is not available here; available: {', '.join(available)}")
    try:
        ms.set_device(device_target, None if device_target == "CPU" else device_id)  # a CPU has no card number
    except RuntimeError:  # MindSpore keeps the device it started on
        ms.set_device(*ms.get_current_device())  # the failed call has already changed the context's device_target
        raise SettingError(f"MindSpore already runs on {ms.get_current_device().device_target}; restart the "
                           f"kernel to switch to {device_target}") from None
    ms.set_context(mode=ms.GRAPH_MODE)
    print(f"Device: {device_target} (available: {', '.join(available)})")
    return device_target


# %% [markdown]
# The settings of this run. `DEVICE_TARGET` is `"Ascend"`, `"GPU"`, `"CPU"`, or `None` for the
# best one available; running the cell again with the same choice changes nothing, another
# device needs a restart of the kernel. `STEPS_PER_EPOCH` shortens each epoch for a quick run;
# unset, every epoch trains on all 1,875 batches, and the accuracies the text states are those
# of such a full run. The environment variables set them (`TUTORIAL_STEPS_PER_EPOCH=50 jupyter
# lab`), and so do the script's options (`python main.py --steps_per_epoch 50`).

# %%
DEVICE_TARGET = os.environ.get("TUTORIAL_DEVICE_TARGET") or None
DEVICE_ID = int(os.environ.get("DEVICE_ID", 0))  # which card, as in the original
STEPS_PER_EPOCH = check_steps_per_epoch(os.environ.get("TUTORIAL_STEPS_PER_EPOCH"))  # None: whole epochs
DATA_DIR, CKPT_DIR = os.environ.get("TUTORIAL_DATA_DIR", "MNIST"), os.environ.get("TUTORIAL_CKPT_DIR", "ckpt")
device_target = set_device(DEVICE_TARGET, DEVICE_ID)

# %% [markdown]
# ### Data processing
#
# `create_dataset` resizes the 28x28 images to the 32x32 LeNet5 expects, scales them to zero
# mean and unit variance (MNIST's mean is 0.1307 and its standard deviation 0.3081), puts the
# channel first, casts the labels to int32, shuffles the training set, and makes batches of 32.
# The test set keeps its file order and its last, shorter batch, so that every test image counts.

# %%
def create_dataset(data_dir, training=True, batch_size=32, resize=(32, 32), rescale=1 / (255 * 0.3081),
                   shift=-0.1307 / 0.3081, buffer_size=64, num_samples=None, num_shards=None, shard_id=None,
                   sampler=None):
    """The MNIST training or test set (`num_samples` images of it, a shard with num_shards), batched for LeNet5."""
    dataset = MnistDataset(*mnist_split(data_dir, training), num_samples=num_samples, num_shards=num_shards,
                           shard_id=shard_id, sampler=sampler, shuffle=None if training else False)
    dataset = dataset.map(input_columns=["image"], operations=[
        vision.Resize(resize), vision.Rescale(rescale, shift), vision.HWC2CHW()])
    dataset = dataset.map(input_columns=["label"], operations=transforms.TypeCast(ms.int32))
    dataset = dataset.shuffle(buffer_size=buffer_size) if training else dataset
    return dataset.batch(batch_size, drop_remainder=training)


# %%
data_dir = prepare_mnist(DATA_DIR)
print("Steps per epoch:", STEPS_PER_EPOCH or create_dataset(data_dir).get_dataset_size())

# %% [markdown]
# ### Network definition
#
# LeNet5: two 5x5 convolutions, each followed by ReLU and 2x2 max-pooling, then three fully
# connected layers. As in the original tutorial there is no activation between the fully
# connected layers. MindSpore's `Conv2d` has no bias by default, which leaves 61,684 trainable
# parameters. `pad_mode="pad", padding=0` computes the same pooling as the default, bit for bit,
# through CPU kernels that make a training step about a fifth faster.
#
# ![LeNet5: two convolutions with max-pooling, then three dense layers](docs/images/lenet5.png)
#
# [1] Our drawing of the network; the original tutorial's figure is from
# <http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf>.

# %%
class LeNet5(nn.Cell):
    """LeNet5 for 1x32x32 inputs and 10 classes."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, pad_mode="pad", padding=0)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(400, 120)
        self.fc2 = nn.Dense(120, 84)
        self.fc3 = nn.Dense(84, num_classes)

    def construct(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(self.flatten(x))))


# %% [markdown]
# ### Saving the model
#
# Callbacks let you run your own code at set points of training or evaluation. MindSpore
# brings several:
#
# - `ModelCheckpoint` saves the parameters, for retraining or inference.
# - `LossMonitor` prints the loss every `per_print_times` steps, and stops training with a
#   `ValueError` as soon as the loss is NaN or Inf.
# - `SummaryCollector` still exists in 2.10: it writes the loss, the learning rate and the
#   graphs to summary files for MindSpore Insight, whose last release was 2.3 (its views moved
#   to MindStudio Insight). `python main.py train` logs every step and draws its curves instead.
#
# `CheckpointConfig` tells `ModelCheckpoint` when to save and what to keep. Its main arguments
# in 2.10:
#
# | argument | default | meaning |
# | --- | --- | --- |
# | `save_checkpoint_steps` | 1 | save every this many steps |
# | `save_checkpoint_seconds` | 0 | or every this many seconds (not with the steps) |
# | `keep_checkpoint_max` | 5 | keep at most this many files, deleting the oldest |
# | `keep_checkpoint_per_n_minutes` | 0 | or keep one file per this many minutes |
# | `integrated_save` | True | in automatic parallel training, merge the slices into one file |
# | `async_save` | False | write the file in a background thread |
# | `append_info` | None | extra values to store: `"epoch_num"`, `"step_num"`, or a dict |
# | `crc_check` | False | store a checksum, so that loading with `crc_check=True` refuses a damaged file |
# | `exception_save` | False | also save when training stops with an exception |
# | `format` | `"ckpt"` | `"ckpt"` or `"safetensors"` |
#
# `ModelCheckpoint(prefix, directory, config)` names its files `<prefix>-<epoch>_<step>.ckpt`,
# and writes the compiled graph to `<prefix>-graph.meta`. A checkpoint of the training network
# holds the weights and the optimizer's state: its momentum, learning rate and step count.
#
# `Model` bundles the network, the loss function, the optimizer and the metrics (accuracy and
# loss here). The original tutorial calls `Model.train` for all epochs and then `Model.eval`
# once. `Model.fit` does both, with an evaluation after every epoch; `LossMonitor` prints its
# result, and `SaveBest`, our own small callback, keeps the parameters of the most accurate
# epoch in `<prefix>-best.ckpt`, which rotation by `keep_checkpoint_max` never deletes.

# %%
class SaveBest(Callback):
    """After each evaluation of Model.fit, save the parameters if they are the most accurate so far."""

    def __init__(self, checkpoint, directory):
        super().__init__()
        self.checkpoint, self.directory, self.best_acc, self.best_file = checkpoint, directory, -1.0, None

    def on_train_epoch_end(self, run_context):
        cb_params = run_context.original_args()
        acc = float(cb_params.metrics["acc"])
        if acc > self.best_acc:  # named after this run's files: lenet-best.ckpt, lenet_1-best.ckpt, ...
            prefix = os.path.basename(self.checkpoint.latest_ckpt_file_name).rsplit("-", 1)[0]
            self.best_acc, self.best_file = acc, os.path.join(self.directory, f"{prefix}-best.ckpt")
            # written beside it, then renamed over it in one step: a crash mid-save keeps the old best
            partial = os.path.join(self.directory, f".{prefix}-best.ckpt")
            ms.save_checkpoint(cb_params.train_network, partial, crc_check=True,
                               append_dict={"epoch_num": cb_params.cur_epoch_num, "acc": acc})
            os.replace(partial, self.best_file)
            print(f"Best so far: saved {self.best_file}")


# %%
def run_training(net, opt, data_dir, num_epochs, initial_epoch=0, ckpt_dir="ckpt", ckpt_name="lenet",
                 steps_per_epoch=None, callbacks=(), sink=None):
    """Train with a checkpoint each epoch and an evaluation after it; return (last, best) checkpoint."""
    # a shorter epoch reads fewer images: .take() would still transform the rest of the set at its end
    ds_train = create_dataset(data_dir, num_samples=steps_per_epoch * 32 if steps_per_epoch else None)
    ds_eval = create_dataset(data_dir, training=False, batch_size=1000)  # fewer, larger batches: quicker
    steps_per_epoch = ds_train.get_dataset_size()
    # ModelCheckpoint counts the steps of this run; a resumed run's count starts at the optimizer's.
    ckpt_cfg = CheckpointConfig(save_checkpoint_steps=steps_per_epoch, keep_checkpoint_max=5, crc_check=True,
                                append_info=["epoch_num", {"step_num": int(opt.global_step.asnumpy()[0])}])
    loss_cb = LossMonitor(steps_per_epoch)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, opt, metrics={"loss": Loss(), "acc": Accuracy()})  # a dict keeps this order
    sink = ms.get_context("device_target") == "Ascend" if sink is None else sink  # Ascend: whole epochs at once
    with hold_folder(ckpt_dir):  # no other run, from a notebook or a terminal, writes there meanwhile
        ckpt_cb = ModelCheckpoint(prefix=ckpt_name, directory=ckpt_dir, config=ckpt_cfg)
        best_cb = SaveBest(ckpt_cb, ckpt_dir)
        model.fit(initial_epoch + num_epochs, ds_train, ds_eval, callbacks=[*callbacks, loss_cb, ckpt_cb, best_cb],
                  dataset_sink_mode=sink, valid_dataset_sink_mode=sink, initial_epoch=initial_epoch)
    last = os.path.join(ckpt_dir, os.path.basename(ckpt_cb.latest_ckpt_file_name))  # as we named the folder
    return last, best_cb.best_file


# %%
def train(data_dir, lr=0.01, momentum=0.9, num_epochs=2, **options):
    """Train a new LeNet5; return the last and the best checkpoint."""
    net = LeNet5()
    opt = nn.Momentum(net.trainable_params(), lr, momentum)
    return run_training(net, opt, data_dir, num_epochs, **options)


# %%
CKPT_1, _ = train(data_dir, ckpt_dir=CKPT_DIR, steps_per_epoch=STEPS_PER_EPOCH)


# %%
def print_checkpoints(title, *checkpoints):
    """Print the files of the runs that saved `checkpoints`, not those of earlier runs in the folder."""
    for ckpt in checkpoints:
        folder, run = os.path.dirname(ckpt), os.path.basename(ckpt).rsplit("-", 1)[0]  # lenet, lenet_1, ...
        title += "".join(f"\n{name}" for name in sorted(os.listdir(folder)) if name.rsplit("-", 1)[0] == run)
    print(title)


print_checkpoints("Checkpoints after first training:", CKPT_1)

# %% [markdown]
# The loss of the last step of each epoch jumps around; the test accuracy after each epoch is
# what to watch, and it reaches at least 0.97 after two epochs. The listing shows one
# checkpoint per epoch, the best one, and the graph. If `ckpt/` already holds files of an
# earlier run, MindSpore leaves them alone and gives this run's files the prefix `lenet_1`
# (then `lenet_2`, and so on); the listing shows this run's files only. To start clean, pass a
# fresh folder (`TUTORIAL_CKPT_DIR`, or the script's `--ckpt_dir`), or delete `ckpt/` yourself:
# nothing here deletes a checkpoint. MindSpore makes checkpoints read-only, so use `rm -rf ckpt`.

# %% [markdown]
# ### Resuming training from a checkpoint
#
# `ms.load_checkpoint(file)` reads a checkpoint into a dictionary of parameters, and
# `ms.load_param_into_net(cell, params)` copies the matching entries into a network or an
# optimizer, returning the names it could not fill and the file's names it did not use.
# Loading into both the network and the optimizer restores the whole training state,
# momentum included, so the first resumed step is not a cold start. Load into the network
# you define (`LeNet5`), not into the training network that `Model` builds around it.
#
# Three things differ from the original tutorial:
#
# - Loading the optimizer also restores its learning rate of 0.01, which the original then
#   kept without noticing. `resume_train` sets the smaller rate after loading.
# - The epoch stored by `append_info` becomes `initial_epoch`, so the resumed epochs are
#   numbered 3 and 4, not 1 and 2.
# - MindSpore never overwrites another run's files: the new `ModelCheckpoint` finds
#   `lenet-*.ckpt` in `ckpt/` and names this run's files `lenet_1-3_1875.ckpt` and so on, as in
#   the original's listing. The code follows the file name `train` returned.

# %%
def resume_train(data_dir, ckpt_file, lr=0.001, momentum=0.9, num_epochs=2, **options):
    """Continue training from `ckpt_file` with learning rate `lr`; return the last and the best checkpoint."""
    net = LeNet5()
    opt = nn.Momentum(net.trainable_params(), lr, momentum)

    logging.disable(logging.WARNING)  # MindSpore warns of what it does not load, which we print below
    param_dict = ms.load_checkpoint(ckpt_file, crc_check=True, format=Path(ckpt_file).suffix[1:])  # ckpt or safetensors
    net_not_loaded, _ = ms.load_param_into_net(net, param_dict)
    opt_not_loaded, _ = ms.load_param_into_net(opt, param_dict)
    logging.disable(logging.NOTSET)
    opt.learning_rate.set_data(ms.Tensor(lr, ms.float32))  # loading restored the first run's rate

    epoch = int(param_dict["epoch_num"]) if "epoch_num" in param_dict else 0  # plain weights: from epoch 0
    if "steps_per_epoch" in param_dict:  # saved by 'train', perhaps mid-epoch: count the epochs it completed
        epoch = int(param_dict["step_num"]) // int(param_dict["steps_per_epoch"])
    print(f"Loaded {ckpt_file} (epoch {epoch})" if "epoch_num" in param_dict else
          f"Loaded {ckpt_file}: it stores no epoch (plain weights), so training starts at epoch 0, with a fresh "
          f"optimizer")
    print("Network parameters not loaded:", net_not_loaded)
    print("Optimizer parameters not loaded:", opt_not_loaded)
    return run_training(net, opt, data_dir, num_epochs, initial_epoch=epoch, **options)


# %%
CKPT_2, CKPT_BEST = resume_train(data_dir, CKPT_1, ckpt_dir=CKPT_DIR, steps_per_epoch=STEPS_PER_EPOCH)
print_checkpoints("Checkpoints after resuming training:", CKPT_1, CKPT_2)

# %% [markdown]
# Both lists of parameters not loaded are empty: the file fits the network and the optimizer.
# The test loss goes on falling from where the first run stopped (the loss of a single training
# step, which `LossMonitor` prints, jumps around), and the test accuracy ends at 0.975 or more.

# %% [markdown]
# ### Loading a checkpoint for inference
#
# For inference only the weights matter: `infer` loads the checkpoint into a fresh LeNet5,
# predicts the whole test set with `Model.predict`, and prints the accuracy. The figure shows
# the first four test images with the prediction and the truth:
# blue where the model is right, red where it is wrong. It uses the most accurate checkpoint of
# the resumed run, which `SaveBest` kept.

# %%
def infer(data_dir, ckpt_file):
    """Predict the test set with the weights in `ckpt_file` and draw four of the images.

    Returns the figure and the images, labels and predictions as NumPy arrays.
    """
    net = LeNet5()
    ms.load_param_into_net(net, ms.load_checkpoint(ckpt_file, crc_check=True, format=Path(ckpt_file).suffix[1:]))
    model = Model(net)
    images, labels, preds = [], [], []
    for data in create_dataset(data_dir, training=False, batch_size=1000).create_dict_iterator(output_numpy=True):
        output = model.predict(ms.Tensor(data["image"]))
        images.append(data["image"])
        labels.append(data["label"])
        preds.append(np.argmax(output.asnumpy(), axis=1))
    images, labels, preds = np.concatenate(images), np.concatenate(labels), np.concatenate(preds)
    print(f"Test accuracy of {ckpt_file}: {np.mean(preds == labels):.4f} "
          f"({np.count_nonzero(preds != labels)} of {len(labels)} wrong)")

    figure = plt.figure(figsize=(6, 6))
    for i in range(4):
        plt.subplot(2, 2, i + 1)
        plt.imshow(np.squeeze(images[i]), cmap="gray")
        color = "blue" if preds[i] == labels[i] else "red"
        plt.title(f"prediction: {preds[i]}, truth: {labels[i]}", color=color)
        plt.xticks([])
        plt.yticks([])
    return figure, (images, labels, preds)


def save_figure(figure, name, folder="images"):
    """Save `figure` as images/<name>.png, where the script's figures go too."""
    os.makedirs(folder, exist_ok=True)
    figure.savefig(os.path.join(folder, f"{name}.png"))
    print(f"Saved {os.path.join(folder, name)}.png")


# %%
figure, (images, labels, preds) = infer(data_dir, CKPT_BEST)
save_figure(figure, "prediction")

# %% [markdown]
# ## Procedure (Terminal)
#
# The same steps run as a script, on a laptop or a server with any of the three devices:
#
# ```sh
# python main.py                                   # MNIST/ next to main.py, the best device
# python main.py --data_url /path/to/MNIST --device_target CPU
# python main.py --data_url D:\dataset\MNIST       # on Windows
# ```
#
# The script prints what the cells above print, and saves the figures in `images/`. Unlike
# the original, it needs no editing to pick the device.
#
# ## Experiment summary
#
# 1. `ModelCheckpoint`, configured by `CheckpointConfig`, saved a checkpoint after each of two
#    epochs, and `SaveBest` kept the most accurate one.
# 2. `ms.load_checkpoint` and `ms.load_param_into_net` loaded the last one into a new network
#    and its optimizer, and training went on for two more epochs.
# 3. After the checkpoint was loaded, the loss went on falling and the accuracy rose; the
#    best checkpoint of the resumed run recognises the test digits, as the figure shows.
#
# The rest of this notebook goes beyond the original tutorial, one short section per need.

# %% [markdown]
# ## Beyond the tutorial: more from the predictions
#
# *Why:* four images say little about a model. The confusion matrix counts, for each true
# digit (row), what the model said (column), so its off-diagonal cells show which digits it
# confuses; then come the images it gets wrong. The figures live in `machinery/plotting.py`.

# %%
from machinery.plotting import plot_confusion_matrix, plot_misclassified

save_figure(plot_confusion_matrix(labels, preds), "confusion_matrix")
save_figure(plot_misclassified(images, labels, preds), "misclassified")

# %% [markdown]
# ## Beyond the tutorial: fine-tuning for a smaller task
#
# *Why:* the original names fine-tuning as a scenario but never shows it. The smaller, similar
# task here: tell odd digits from even ones, learning from only the first 320 training
# images. A network that already tells the ten digits apart has the features for it; from raw
# pixels, each class mixes digits that look nothing alike.
#
# The new network is LeNet5 with a head of 2 outputs instead of 10. Its other layers, the
# backbone, take their weights from the trained checkpoint; `choice_func` makes
# `load_checkpoint` keep only those. (Leaving out only `fc3.` would not do: with the default
# `strict_load=False`, `load_param_into_net` falls back on any stored name that ends with the
# one it looks for, and would try the optimizer's `moments.fc3.weight`, of the old shape.)

# %%
from mindspore.dataset import SubsetRandomSampler

BACKBONE = ("conv1.", "conv2.", "fc1.", "fc2.")  # every layer but fc3, the head


def parity_dataset(data_dir, training=True, num_images=None):
    """MNIST labelled 1 for an odd digit and 0 for an even one; with `num_images`, the first so many only."""
    sampler = SubsetRandomSampler(range(num_images)) if num_images else None
    return create_dataset(data_dir, training, sampler=sampler).map(lambda digits: digits % 2, input_columns=["label"])


def load_backbone(net, ckpt_file):
    """Load the backbone's weights from `ckpt_file` into `net`; return the parameters of `net` left as they were."""
    params = ms.load_checkpoint(ckpt_file, crc_check=True, choice_func=lambda name: name.startswith(BACKBONE))
    logging.disable(logging.WARNING)  # MindSpore warns of the parameters not loaded, which we print
    not_loaded, _ = ms.load_param_into_net(net, params)
    logging.disable(logging.NOTSET)
    return not_loaded


def train_parity(net, params, data_dir, num_epochs=5):
    """Train `params` of `net` on 320 images; return the odd/even accuracy on the 10,000 test images."""
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(params, 0.01, 0.9), metrics={"acc"})
    model.train(num_epochs, parity_dataset(data_dir, num_images=320))
    return model.eval(parity_dataset(data_dir, training=False))["acc"]


# %%
stored = ms.load_checkpoint(CKPT_BEST)
net = LeNet5(num_classes=2)
for name in load_backbone(net, CKPT_BEST):
    shape = net.parameters_dict()[name].shape
    print(f"Not loaded: {name}, shape {stored[name].shape} in the checkpoint, {shape} here")
print("Left out by choice_func:", ", ".join(sorted({n.split(".")[0] for n in stored if not n.startswith(BACKBONE)})))

# %% [markdown]
# Now the same 50 steps three ways: from random weights, from the checkpoint, and from the
# checkpoint with only the new head trained (the backbone frozen, by giving the optimizer the
# head's parameters only):

# %%
for title, pretrained, head_only in [("From scratch", False, False), ("Fine-tuned", True, False),
                                     ("Fine-tuned, backbone frozen", True, True)]:
    net = LeNet5(num_classes=2)
    if pretrained:
        load_backbone(net, CKPT_BEST)
    accuracy = train_parity(net, net.fc3.trainable_params() if head_only else net.trainable_params(), data_dir)
    print(f"{title + ':':29} odd/even accuracy {accuracy:.3f} after 50 steps on 320 images")

# %% [markdown]
# From scratch, 50 steps reach about 0.85. From the checkpoint they reach more than 0.93, with
# the backbone frozen or not: the features learnt on the ten digits do most of the work.

# %% [markdown]
# ## Beyond the tutorial: surviving a crash
#
# *Why:* the tutorial's resume starts a new run from a checkpoint saved at the end of an
# epoch. A long job that crashes, or is stopped by its scheduler, wants more: to go on from
# where it stopped, as if nothing had happened. MindSpore 2.10 has two callbacks for this:
#
# - `BackupAndRestore(backup_dir)` saves the training network (weights and optimizer state) to
#   `backup_dir/backup.ckpt` after every epoch (`save_freq` counts epochs, never steps), loads
#   it when training begins again, and deletes it when training ends normally.
# - `OnRequestExit(sig=SIGTERM)` saves the network when the process receives `sig` and stops
#   training after the next step. It only acts with the environment variable
#   `MS_ENABLE_GRACEFUL_EXIT=1`; without it, the signal is noted and training goes on to the
#   end. It handles one signal, and MindSpore's runtime turns Ctrl-C (SIGINT) into SIGTERM.
#
# Both store no position: a new `Model.train` call starts again at epoch 1, step 1, on top of
# the restored state. Here both are measured on 2 epochs of 100 steps (fewer in a quick run),
# with an abnormal exit halfway through the second, after step 150, and the rerun compared with
# a run that was never interrupted.

# %%
from mindspore.dataset import config as dataset_config

def exit_step(steps):
    """Where the demos stop a run of 2 epochs of `steps` steps: halfway through the second epoch."""
    return steps + steps // 2


class ExitAt(Callback):
    """Stands in for an abnormal exit: calls `action(step)` after step `step`; counts the steps trained."""

    def __init__(self, action=None, step=None):
        super().__init__()
        self.action, self.step, self.steps = action, step, 0

    def on_train_step_end(self, run_context):
        self.steps += 1
        if self.action and run_context.original_args().cur_step_num == self.step:
            self.action(self.step)


def crash(step):
    raise RuntimeError(f"simulated crash after step {step}")


def run_builtin(data_dir, *callbacks, steps=100, action=None):
    """Train 2 epochs of `steps` steps with fixed seeds, calling `action` at exit_step(steps);
    return the parameters and the steps trained."""
    ms.set_seed(1)
    dataset_config.set_seed(1)
    net, counter = LeNet5(), ExitAt(action, exit_step(steps))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = Model(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))
    try:
        model.train(2, create_dataset(data_dir, num_samples=steps * 32), callbacks=[*callbacks, counter],
                    dataset_sink_mode=False)
    except RuntimeError as error:
        print("Crashed:", error)
    return {p.name: p.asnumpy() for p in model.train_network.get_parameters()}, counter.steps


def compare(name, reference, params, trained, steps=100):
    """Print how far a rerun's parameters `params` (`trained` steps) ended from the uninterrupted run's."""
    weights = [name for name in reference if "." in name and not name.startswith("moments.")]
    difference = max(np.abs(params[name] - reference[name]).max() for name in weights)
    print(f"{name}: the rerun trained {trained} steps ({2 * steps - exit_step(steps)} were left); optimizer "
          f"steps in all: {int(params['global_step'][0])} (uninterrupted: {2 * steps}); "
          f"largest weight difference: {difference:.2g}")


# %%
import signal
import tempfile

from mindspore.train import BackupAndRestore, OnRequestExit

crash_dir = Path(tempfile.mkdtemp(prefix="crash-", dir=CKPT_DIR))  # a fresh folder each time
DEMO_STEPS = min(100, STEPS_PER_EPOCH or 100)  # a quick run's epochs are short here too
reference, _ = run_builtin(data_dir, steps=DEMO_STEPS)
run_builtin(data_dir, BackupAndRestore(str(crash_dir / "backup")), steps=DEMO_STEPS, action=crash)
rerun = run_builtin(data_dir, BackupAndRestore(str(crash_dir / "backup")), steps=DEMO_STEPS)
compare("BackupAndRestore", reference, *rerun, DEMO_STEPS)

os.environ["MS_ENABLE_GRACEFUL_EXIT"] = "1"  # read when the Model is built
previous_handler = signal.getsignal(signal.SIGTERM)
logging.disable(logging.WARNING)  # OnRequestExit logs a warning when it stops training


def exit_callback():
    return OnRequestExit(save_mindir=False, file_name="LeNet5", directory=str(crash_dir / "exit"))


_, steps = run_builtin(data_dir, exit_callback(), steps=DEMO_STEPS,
                       action=lambda step: os.kill(os.getpid(), signal.SIGTERM))
print(f"OnRequestExit: SIGTERM after step {exit_step(DEMO_STEPS)} stopped the run after {steps} steps; saved",
      *os.listdir(crash_dir / "exit" / "rank_0"))
compare("OnRequestExit", reference, *run_builtin(data_dir, exit_callback(), steps=DEMO_STEPS), DEMO_STEPS)
logging.disable(logging.NOTSET)
signal.signal(signal.SIGTERM, previous_handler)  # OnRequestExit leaves its own handler installed
del os.environ["MS_ENABLE_GRACEFUL_EXIT"]

# %% [markdown]
# Both restore the weights and the momentum, which beats starting from scratch. But each
# rerun trains all 200 steps again on top of the saved state, so the optimizer counts more
# steps than it should, the data order starts over, and the weights end about 0.1 away from
# those of the uninterrupted run (the largest difference, above). Passing `initial_epoch` by hand
# would not fix it: the backup does not say which epoch it holds, and `BackupAndRestore`
# cannot save in the middle of one.
#
# `python main.py train --auto_resume` goes further. It saves every `--save_steps` steps as
# well as after each epoch, and each checkpoint stores its position (epoch and step) and the
# run's seed. A continued run takes the newest intact checkpoint, rebuilds the data order of
# that epoch from the seed, skips the batches already trained on, and goes on from the next
# step. SIGINT and SIGTERM both stop it cleanly after the current step, with a checkpoint and
# the command that continues. The engine is `train_resumable`, in `machinery/resumable.py`. The same
# interruption, after step 150, then `auto_resume`:

# %%
from machinery.checkpoint_files import read_checkpoint, table
from machinery.resumable import TrainConfig, train_resumable

exact_dir = Path(tempfile.mkdtemp(prefix="exact-", dir=CKPT_DIR))  # its own folder: the cell runs again
demo = TrainConfig(num_epochs=2, steps_per_epoch=DEMO_STEPS, save_steps=DEMO_STEPS // 2, seed=1)
uninterrupted = train_resumable(LeNet5, create_dataset, data_dir, exact_dir / "uninterrupted", demo)
train_resumable(LeNet5, create_dataset, data_dir, exact_dir / "interrupted", demo,
                stop_after_step=exit_step(DEMO_STEPS))
continued = train_resumable(LeNet5, create_dataset, data_dir, exact_dir / "interrupted", demo, auto_resume=True)
a, b = read_checkpoint(uninterrupted), read_checkpoint(continued)
print("Same parameters as the uninterrupted run, bit for bit:", a.keys() == b.keys()
      and all(np.array_equal(a[name].asnumpy(), b[name].asnumpy()) for name in a))
print(table(exact_dir / "interrupted"))

# %% [markdown]
# The table lists each checkpoint of the interrupted run with its position, the metrics
# stored in it, and whether its CRC still matches. `lenet-best.ckpt` holds the parameters with
# the highest test accuracy so far.

# %% [markdown]
# ## Beyond the tutorial: scaling out with msrun
#
# *Why:* on several devices, training is data-parallel. Every worker holds the whole model,
# trains on its own shard of each epoch, and the gradients are averaged across workers before
# every update, so all keep identical parameters. MindSpore's launcher `msrun` starts the
# workers and tells each how to reach the others:
#
# ```sh
# msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1 --master_port=8118 \
#       --join=True main.py train --auto_resume
# ```
#
# `--join=True` keeps msrun in the foreground until the workers end, so that Ctrl-C stops them;
# msrun's default, `--join=False`, returns at once and leaves them training in the background.
#
# Under `msrun`, `train` joins the workers with `init()` and sets `DATA_PARALLEL` with
# `gradients_mean=True`, and `create_dataset` gives each worker its shard. The global batch is
# 32 x workers, so an epoch has 1/workers as many steps. Every worker saves its own checkpoints
# in `ckpt_dir/rank_<id>/`; they are identical, and each is a complete model.

# %%
from mindspore.communication import get_group_size, get_rank, init


def init_data_parallel():
    """Under msrun, join the other workers and average gradients; return (rank, number of workers)."""
    if "MS_WORKER_NUM" not in os.environ:  # set by msrun
        return 0, 1
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return get_rank(), get_group_size()


# %% [markdown]
# ## Beyond the tutorial: export for deployment
#
# *Why:* a checkpoint is useful only with the network's Python code. `ms.export` writes the
# network and its weights as one file: MindIR, which MindSpore and MindSpore Lite load without
# the Python class, or ONNX, for other runtimes (MindSpore 2.10 writes ONNX with `ms.onnx.export`
# and deprecates `ms.export(file_format="ONNX")`). The input shape is fixed when exporting: a
# batch of 32 images of 1x32x32, normalised as in `create_dataset`.

# %%
EXPORT_INPUT_SHAPE = (32, 1, 32, 32)


def load_weights(ckpt_file):
    """A fresh LeNet5 with the weights stored in `ckpt_file`."""
    net = LeNet5()
    ms.load_param_into_net(net, read_checkpoint(ckpt_file))
    return net


def export_model(ckpt_file, file_format="MINDIR", file_name="lenet5"):
    """Write LeNet5 with the weights in `ckpt_file` as file_name.mindir or file_name.onnx; return its path."""
    net, example = load_weights(ckpt_file), ms.Tensor(np.zeros(EXPORT_INPUT_SHAPE, np.float32))
    if file_format == "ONNX":  # MindSpore 2.10's ONNX exporter; ms.export(file_format="ONNX") is deprecated
        net.pool = nn.MaxPool2d(kernel_size=2, stride=2)  # ONNX lacks the faster route's operator; same math
        ms.onnx.export(net, example, file_name=file_name)
    else:
        ms.export(net, example, file_name=file_name, file_format="MINDIR")
    return Path(f"{file_name}.{file_format.lower()}")


# %% [markdown]
# The lesson writes `ckpt/lenet_1.mindir`, next to the run's checkpoints, and leaves `lenet5.mindir`
# to `python main.py export`. The exported MindIR loads with `ms.load` into a `GraphCell`, which
# runs it like any network. Its predictions on a test batch are those of the checkpoint:

# %%
mindir = export_model(CKPT_BEST, file_name=CKPT_BEST.replace("-best.ckpt", ""))  # ckpt/lenet_1.mindir
print(f"Exported {CKPT_BEST} to {mindir}, input shape {EXPORT_INPUT_SHAPE}")
deployed = nn.GraphCell(ms.load(str(mindir)))
batch = ms.Tensor(images[:32])
from_mindir, from_ckpt = deployed(batch).asnumpy(), load_weights(CKPT_BEST)(batch).asnumpy()
print(f"Same predictions: {(from_mindir.argmax(1) == from_ckpt.argmax(1)).all()}; "
      f"largest difference in the logits: {np.abs(from_mindir - from_ckpt).max():.1e}")

# %% [markdown]
# ## Beyond the tutorial: weights from PyTorch
#
# *Why:* many arrive with a model trained in PyTorch. A checkpoint, in either framework, is
# named arrays, and MindSpore reads PyTorch's safetensors files itself, so moving weights across
# is a rename and a check. `pytorch/lenet5.safetensors` holds a LeNet5 trained in PyTorch by
# `pytorch/train_lenet5.py`, with PyTorch's names and convolutions without biases, as ours;
# `pytorch/lenet5_predictions.json` holds the class PyTorch predicted for each test image, on
# the very arrays `create_dataset` makes. One table maps the names (`machinery/convert.py`,
# [docs/pytorch.md](docs/pytorch.md)): Conv2d and Dense keep PyTorch's names and layouts, so
# nothing is renamed here; BatchNorm, LayerNorm and Embedding would be. No torch is needed.

# %%
import json

from machinery.convert import mindspore_names
from mnist_data import SHIPPED_DIR

PYTORCH_DIR = SHIPPED_DIR.parent / "pytorch"
torch_weights = ms.load_checkpoint(str(PYTORCH_DIR / "lenet5.safetensors"), format="safetensors")
net = LeNet5()
ours = net.parameters_dict()
renamed = mindspore_names({name: value.shape for name, value in torch_weights.items()}, ours)
for torch_name, name in renamed.items():
    print(f"PyTorch {torch_name:11} {str(torch_weights[torch_name].shape):15} -> LeNet5 {name:11} {ours[name].shape}")
weights = {name: torch_weights[torch_name] for torch_name, name in renamed.items()}  # by LeNet5's names
unfilled = [name for name in ours if name not in weights or ours[name].shape != weights[name].shape]
print("Parameters of LeNet5 left unfilled, or of another shape:", unfilled)
ms.load_param_into_net(net, weights)

predictions, labels = [], []
for batch_images, batch_labels in create_dataset(data_dir, training=False, batch_size=1000):  # in file order
    predictions.append(net(batch_images).asnumpy().argmax(1))
    labels.append(batch_labels.asnumpy())
predictions, labels = np.concatenate(predictions), np.concatenate(labels)
recorded = json.loads((PYTORCH_DIR / "lenet5_predictions.json").read_text())
same = np.mean(predictions == np.array(recorded["predictions"][:len(predictions)]))
print(f"Test accuracy in MindSpore: {np.mean(predictions == labels):.4f} (PyTorch: {recorded['accuracy']:.4f} on all "
      f"10000); PyTorch's class for {same:.2%} of the {len(labels)} test images")

# %% [markdown]
# The accuracies are equal, and MindSpore predicts PyTorch's class for every test image.
# `python main.py convert SRC DST` does this for a whole file, either way: a `.pth` or
# `.safetensors` of PyTorch's becomes a `.ckpt` that `infer`, `export` and `resume` take, and
# a checkpoint of ours becomes a `.pth` or `.safetensors` for PyTorch.

# %% [markdown]
# ## Running the script
#
# `python main.py` runs every cell above, in order, and prints what they print; the figures go
# to `images/`, from the notebook too. At the end it copies this run's checkpoints and figures
# to `--train_url`, if one was given. The commands `train`, `resume`, `infer`, `list`, `curves`,
# `export` and `convert` each run one step, with the functions above; `python main.py COMMAND --help`
# describes their options (see the README). The command line lives in `machinery/`.
