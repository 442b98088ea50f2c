"""The tutorial's training in dataset sink mode, as on Ascend, where the step callbacks fire once
per sink (a whole epoch) rather than once per step.

MindSpore 2.10 accepts dataset_sink_mode=True on CPU but then trains without sinking (model.py,
`_train`: "The CPU cannot support dataset sink mode currently", logged at INFO level). So the
second test drives MindSpore's own sink loop, `Model._train_dataset_sink_process`, on CPU: only
the device queue is replaced, by a helper that yields once per epoch and a network that trains
the epoch's batches when called once, as the device does. The callbacks, the counting of
`cur_step_num` and the order of the calls are MindSpore's."""
import os
import re
import subprocess
import sys

import pytest
from mindspore import nn
from mindspore.train import Callback, History, Model

from conftest import LESSON_ON_CPU, mnist_subset


pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


@pytest.fixture(scope="module")
def short_last_batch_mnist(tmp_path_factory):
    """160 training images (5 batches) and 1,100 test images: an evaluation batch of 1000 and a last one of 100."""
    return mnist_subset(tmp_path_factory.mktemp("short") / "mnist", 160, 1100)


def test_the_lessons_training_asks_for_sink_mode_when_told(tmp_path, short_last_batch_mnist):
    """The lesson's train, resume_train and infer with sink=True, as on Ascend, in a process of their own."""
    data = str(short_last_batch_mnist)
    code = (LESSON_ON_CPU +
            f"last, _ = lesson.train({data!r}, steps_per_epoch=5, sink=True)\n"
            f"_, best = lesson.resume_train({data!r}, last, steps_per_epoch=5, sink=True)\n"
            f"lesson.infer({data!r}, best)\n")
    env = {**os.environ, "GLOG_v": "1", "MPLBACKEND": "Agg"}  # GLOG_v=1: INFO
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CPU cannot support dataset sink mode currently" in result.stderr  # asked for, and refused
    assert [int(n) for n in re.findall(r"^epoch: (\d) step: 5,", result.stdout, re.M)] == [1, 2, 3, 4]
    assert "Test accuracy of ckpt/lenet_1-best.ckpt" in result.stdout
    assert re.search(r"\d+ of 1100 wrong", result.stdout)  # the short last test batch counted


class SinkHelper:
    """Stands in for the device queue of a DatasetHelper in sink mode: one element per sink."""

    def __init__(self, steps):
        self.steps = steps

    def __iter__(self):
        yield ()

    def sink_size(self):
        return self.steps

    def continue_send(self):
        pass

    stop_send = release = continue_send


class SinkNetwork(nn.Cell):
    """Called once per sink, trains on all the batches of the epoch, as the device loop does."""

    def __init__(self, network, dataset):
        super().__init__(auto_prefix=False)
        self.network, self.dataset, self.iterator = network, dataset, None

    def __call__(self, *inputs):
        if self.iterator is None:
            self.iterator = self.dataset.create_tuple_iterator(num_epochs=-1)
        for batch in self.iterator:  # one epoch: the iterator stops at its end, and goes on with the next
            loss = self.network(*batch)
        return loss


class Calls(Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_step_end(self, run_context):
        self.steps.append(run_context.original_args().cur_step_num)


def test_the_callbacks_are_right_when_they_fire_once_per_sink(cpu, short_last_batch_mnist, tmp_path, monkeypatch,
                                                              capsys):
    from machinery import monitoring
    sink_helpers = {}

    def exec_preprocess(self, is_train, dataset, dataset_sink_mode, sink_size=-1, epoch_num=1, dataset_helper=None):
        if not (is_train and dataset_sink_mode):
            return original(self, is_train, dataset, dataset_sink_mode, sink_size, epoch_num, dataset_helper)
        if id(self) not in sink_helpers:
            sink_helpers[id(self)] = SinkHelper(dataset.get_dataset_size()), SinkNetwork(self._train_network, dataset)
        return sink_helpers[id(self)]

    def train_in_sink_mode(self, epoch, dataset, list_callback, cb_params, initial_epoch, valid_infos):
        assert valid_infos[2], "asked for valid_dataset_sink_mode too"
        self._train_dataset_sink_process(epoch, dataset, list_callback, cb_params, -1, initial_epoch, valid_infos)

    original = Model._exec_preprocess
    monkeypatch.setattr(Model, "_exec_preprocess", exec_preprocess)
    monkeypatch.setattr(Model, "_train_process", train_in_sink_mode)  # what _train calls on CPU
    bars = []
    monkeypatch.setattr(monitoring, "progress_enabled", lambda: True)
    real_close = monitoring.ProgressBar._close

    def close(self):
        if self.bar is not None:
            bars.append((self.bar.desc, self.bar.n, self.bar.total))
        real_close(self)

    monkeypatch.setattr(monitoring.ProgressBar, "_close", close)
    calls, history = Calls(), History()
    last, best = cpu.train(short_last_batch_mnist, num_epochs=2, ckpt_dir=str(tmp_path), sink=True,
                           callbacks=[monitoring.ProgressBar(), calls, history])
    out = capsys.readouterr().out
    assert calls.steps == [5, 10]  # once per sink, cur_step_num grown by the sink size
    assert re.findall(r"^epoch: (\d) step: (\d),", out, re.M) == [("1", "5"), ("2", "5")]  # LossMonitor
    assert bars == [("epoch 1/2", 5, 5), ("test", 2, 2), ("epoch 2/2", 5, 5), ("test", 2, 2)]
    # (no lenet-graph.meta: the stand-in network is not compiled as one graph, as the device's sink loop is)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["lenet-1_5.ckpt", "lenet-2_5.ckpt", "lenet-best.ckpt"]
    assert os.path.basename(last) == "lenet-2_5.ckpt" and os.path.basename(best) == "lenet-best.ckpt"
    stored = cpu.ms.load_checkpoint(str(tmp_path / "lenet-2_5.ckpt"))
    assert int(stored["epoch_num"]) == 2 and int(stored["step_num"]) == 10
    assert int(stored["global_step"][0]) == 10  # every step trained: 2 sinks of 5
    assert history.epoch["epoch"] == [1, 2] and len(history.history["acc"]) == 2  # the training curves' data
    best_acc = float(cpu.ms.load_checkpoint(str(best))["acc"])
    assert best_acc == pytest.approx(max(history.history["acc"]))  # stored as float32
