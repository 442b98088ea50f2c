"""LeNet5, and the tutorial's train, resume_train and infer, in-process on tiny IDX files."""
import re

import mindspore as ms
import numpy as np
import pytest


def test_lenet5_output_shape_and_parameter_count(cpu):
    net = cpu.LeNet5()
    assert net(ms.Tensor(np.zeros((4, 1, 32, 32), np.float32))).shape == (4, 10)
    assert sum(p.size for p in net.trainable_params()) == 61684


def test_an_unavailable_device_names_what_is_available(cpu):
    with pytest.raises(ValueError, match="device_target Ascend is not available here; available: .*CPU"):
        cpu.set_device("Ascend")


def test_choosing_the_same_device_again_changes_nothing(cpu, capsys):
    assert cpu.set_device("CPU") == "CPU"
    assert cpu.set_device(None) == "CPU"
    assert "Device: CPU" in capsys.readouterr().out


def state_of(*cells):
    return {name: p.asnumpy().copy() for cell in cells for name, p in cell.parameters_and_names()}


def test_checkpoint_round_trip_restores_weights_and_optimizer_moments(cpu, tiny_mnist, tmp_path):
    net = cpu.LeNet5()
    optimizer = cpu.nn.Momentum(net.trainable_params(), 0.01, 0.9)
    last, best = cpu.run_training(net, optimizer, tiny_mnist, 2, ckpt_dir=str(tmp_path / "ckpt"))
    trained = state_of(net, optimizer)
    assert np.abs(trained["moments.fc1.weight"]).sum() > 0  # training did move the momentum

    # what resume_train does: the taught calls, into the network and the optimizer
    fresh_net = cpu.LeNet5()
    fresh_optimizer = cpu.nn.Momentum(fresh_net.trainable_params(), 0.01, 0.9)
    params = ms.load_checkpoint(last, crc_check=True)
    assert ms.load_param_into_net(fresh_net, params)[0] == []
    assert ms.load_param_into_net(fresh_optimizer, params)[0] == []
    loaded = state_of(fresh_net, fresh_optimizer)
    assert loaded.keys() == trained.keys()
    for name in trained:
        np.testing.assert_array_equal(loaded[name], trained[name], err_msg=name)


def test_resuming_continues_the_epoch_numbering_and_keeps_the_best(cpu, tiny_mnist, tmp_path, capsys):
    ckpt_dir = str(tmp_path / "ckpt")
    first, first_best = cpu.train(tiny_mnist, ckpt_dir=ckpt_dir)
    assert first.endswith("lenet-2_3.ckpt") and first_best.endswith("lenet-best.ckpt")
    resumed, best = cpu.resume_train(tiny_mnist, first, ckpt_dir=ckpt_dir)
    out = capsys.readouterr().out
    assert resumed.endswith("lenet_1-4_3.ckpt") and best.endswith("lenet_1-best.ckpt")
    assert re.findall(r"epoch: (\d+) step", out) == ["1", "2", "3", "4"]
    assert re.findall(r"Eval result: epoch (\d+)", out) == ["1", "2", "3", "4"]
    assert "Network parameters not loaded: []" in out and "Optimizer parameters not loaded: []" in out
    params = ms.load_checkpoint(resumed)
    assert int(params["epoch_num"]) == 4 and int(params["step_num"]) == 12
    np.testing.assert_allclose(params["learning_rate"].asnumpy(), 0.001)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == [
        "lenet-1_3.ckpt", "lenet-2_3.ckpt", "lenet-best.ckpt", "lenet_1-3_3.ckpt", "lenet_1-4_3.ckpt",
        "lenet_1-best.ckpt"]
    # the best file holds the highest accuracy that this run evaluated
    accuracies = [float(a) for a in re.findall(r"Eval result: epoch [34], metrics: .*'acc': ([0-9.]+)", out)]
    stored = ms.load_checkpoint(best, crc_check=True)
    assert float(stored["acc"].asnumpy()) == pytest.approx(max(accuracies), abs=1e-4)
    assert int(stored["epoch_num"]) == 3 + accuracies.index(max(accuracies))


def test_resume_train_starts_at_epoch_0_from_plain_weights(cpu, tiny_mnist, tmp_path, capsys):
    plain = str(tmp_path / "plain.ckpt")
    ms.save_checkpoint(cpu.LeNet5(), plain)
    last, _ = cpu.resume_train(tiny_mnist, plain, num_epochs=1, ckpt_dir=str(tmp_path / "ckpt"))
    out = capsys.readouterr().out
    assert f"Loaded {plain}: it stores no epoch (plain weights), so training starts at epoch 0" in out
    assert "epoch: 1 step: 3" in out
    not_loaded = re.search(r"Optimizer parameters not loaded: (.*)", out)[1]  # a file of weights only
    assert "'learning_rate'" in not_loaded and "'moments.fc3.weight'" in not_loaded
    assert last.endswith("lenet-1_3.ckpt")


def test_infer_draws_four_titled_predictions(cpu, tiny_mnist, tmp_path, capsys):
    last, _ = cpu.train(tiny_mnist, num_epochs=1, ckpt_dir=str(tmp_path / "ckpt"))
    figure, (images, labels, preds) = cpu.infer(tiny_mnist, last)
    assert images.shape == (64, 1, 32, 32) and labels.shape == preds.shape == (64,)  # every test image
    assert f"Test accuracy of {last}: {np.mean(preds == labels):.4f}" in capsys.readouterr().out
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 4 and all(re.fullmatch(r"prediction: \d, truth: \d", t) for t in titles)
    for ax in figure.axes:
        prediction, truth = re.findall(r"\d", ax.get_title())
        assert ax.title.get_color() == ("blue" if prediction == truth else "red")


class TutorialLeNet5(ms.nn.Cell):
    """LeNet5 exactly as the original tutorial defines it, with the default max-pooling route."""

    def __init__(self):
        super().__init__()
        self.conv1 = ms.nn.Conv2d(1, 6, 5, pad_mode="valid")
        self.conv2 = ms.nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.relu = ms.nn.ReLU()
        self.pool = ms.nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = ms.nn.Flatten()
        self.fc1 = ms.nn.Dense(400, 120)
        self.fc2 = ms.nn.Dense(120, 84)
        self.fc3 = ms.nn.Dense(84, 10)

    def construct(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(self.flatten(x))))


def test_the_faster_pooling_route_is_bitwise_the_tutorials_math(cpu):
    """Same weights, same batches: equal outputs, gradients, and parameters after 30 steps."""
    assert cpu.LeNet5().pool.pad_mode == "PAD"  # the route this test vouches for
    rng = np.random.default_rng(1)
    batches = [(ms.Tensor(rng.standard_normal((32, 1, 32, 32)).astype(np.float32)),
                ms.Tensor(rng.integers(0, 10, 32).astype(np.int32))) for _ in range(5)]
    steps, nets = [], []
    for cls in (cpu.LeNet5, TutorialLeNet5):
        ms.set_seed(3)
        net = cls()
        loss = ms.nn.WithLossCell(net, ms.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
        optimizer = ms.nn.Momentum(net.trainable_params(), 0.01, 0.9)
        grads = ms.value_and_grad(loss, None, optimizer.parameters)(*batches[0])[1]
        nets.append((net, [g.asnumpy() for g in grads]))
        steps.append(ms.nn.TrainOneStepCell(loss, optimizer))
    (ours, our_grads), (theirs, their_grads) = nets
    np.testing.assert_array_equal(ours(batches[0][0]).asnumpy(), theirs(batches[0][0]).asnumpy())
    for mine, reference in zip(our_grads, their_grads):
        np.testing.assert_array_equal(mine, reference)
    for i in range(30):
        assert steps[0](*batches[i % 5]).asnumpy() == steps[1](*batches[i % 5]).asnumpy()
    for (name, mine), (_, reference) in zip(ours.parameters_and_names(), theirs.parameters_and_names()):
        np.testing.assert_array_equal(mine.asnumpy(), reference.asnumpy(), err_msg=name)
