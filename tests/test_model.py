"""LeNet5, checkpoints and resuming, in-process on tiny IDX files."""
import re

import mindspore as ms
import numpy as np
import pytest


def test_lenet5_output_shape_and_parameter_count(cpu):
    net = cpu.LeNet5()
    assert net(ms.Tensor(np.zeros((4, 1, 32, 32), np.float32))).shape == (4, 10)
    assert sum(p.size for p in net.trainable_params()) == 61684


def test_an_unavailable_device_names_what_is_available(cpu):
    with pytest.raises(cpu.UsageError, match="device_target Ascend is not available here; available: .*CPU"):
        cpu.set_device("Ascend")


def state_of(*cells):
    return {name: p.asnumpy().copy() for cell in cells for name, p in cell.parameters_and_names()}


def test_checkpoint_round_trip_restores_weights_and_optimizer_moments(cpu, tiny_mnist, tmp_path):
    net = cpu.LeNet5()
    optimizer = cpu.nn.Momentum(net.trainable_params(), 0.01, 0.9)
    last = cpu.run_training(net, optimizer, tiny_mnist, tmp_path / "ckpt", num_epochs=2)
    trained = state_of(net, optimizer)
    assert np.abs(trained["moments.fc1.weight"]).sum() > 0  # training did move the momentum

    fresh_net = cpu.LeNet5()
    fresh_optimizer = cpu.nn.Momentum(fresh_net.trainable_params(), 0.01, 0.9)
    assert cpu.load_training_state(fresh_net, fresh_optimizer, last) == 2
    loaded = state_of(fresh_net, fresh_optimizer)
    assert loaded.keys() == trained.keys()
    for name in trained:
        np.testing.assert_array_equal(loaded[name], trained[name], err_msg=name)


def test_resuming_continues_the_epoch_numbering(cpu, tiny_mnist, tmp_path, capsys):
    ckpt_dir = tmp_path / "ckpt"
    first = cpu.train(tiny_mnist, ckpt_dir)
    assert first.name == "lenet-2_3.ckpt"
    resumed = cpu.resume_train(tiny_mnist, ckpt_dir, first)
    out = capsys.readouterr().out
    assert resumed.name == "lenet_1-4_3.ckpt"
    assert re.findall(r"epoch: (\d+) step", out) == ["1", "2", "3", "4"]
    assert "Network parameters not loaded: []" in out and "Optimizer parameters not loaded: []" in out
    params = ms.load_checkpoint(str(resumed))
    assert int(params["epoch_num"]) == 4 and int(params["step_num"]) == 12
    np.testing.assert_allclose(params["learning_rate"].asnumpy(), 0.001)
    assert sorted(p.name for p in ckpt_dir.glob("*.ckpt")) == [
        "lenet-1_3.ckpt", "lenet-2_3.ckpt", "lenet_1-3_3.ckpt", "lenet_1-4_3.ckpt"]


def test_infer_draws_four_titled_predictions(cpu, tiny_mnist, tmp_path):
    last = cpu.train(tiny_mnist, tmp_path / "ckpt", num_epochs=1)
    figure = cpu.infer(tiny_mnist, last)["prediction"]
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 4 and all(re.fullmatch(r"prediction: \d, truth: \d", t) for t in titles)
    for ax in figure.axes:
        prediction, truth = re.findall(r"\d", ax.get_title())
        assert ax.title.get_color() == ("blue" if prediction == truth else "red")
