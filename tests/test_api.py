"""The Python API: what an experimenter does from Python, without the command line."""

import io
import os
import re
from pathlib import Path

import pytest
import torch

import gd_torch
from gd_torch import Callback, RunOptions, TrainingSettings, train
from gd_torch.core.checkpoint import load_checkpoint
from tests.fakes import synthetic_mnist

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def quiet(settings, options, **arguments):
    return train(settings, options, out=io.StringIO(), **arguments)


def test_the_readme_python_api_example_runs(mnist_root, monkeypatch, tmp_path):
    """Every ```python block of the README's "Python API" section, run as written."""
    section = README.read_text().split("\n## Python API\n")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "the README's Python API section has no python block"
    monkeypatch.setenv("GD_TORCH_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), namespace)  # noqa: S102
    assert namespace["result"].stopped == "reached 90%"
    assert namespace["adam"].final["test_accuracy"] > 0.8


def hand_loop(data, optimizer_of, epochs=1, batch_size=10):
    """The steps of the reference loop written out by hand, from the default run's initial
    weights and order."""
    network = gd_torch.Network(generator=gd_torch.seeded_generators(0)[0])
    optimizer = optimizer_of(network)
    order = gd_torch.seeded_generators(0)[1]
    for _ in range(epochs):
        for indices in gd_torch.shuffled_batches(len(data.train), batch_size, order):
            gd_torch.ENGINES["manual"](
                network, data.train.images[indices], data.train.targets[indices], "quadratic"
            )
            optimizer.step()
    return network


def test_any_torch_optim_optimizer_trains_through_the_reference_loop(data, tmp_path):
    settings = TrainingSettings(epochs=2, lr_schedule="constant")
    adam = lambda network: torch.optim.Adam(network.parameters(), lr=0.001)  # noqa: E731
    result = quiet(settings, RunOptions(runs_dir=str(tmp_path)), data=data, optimizer=adam)
    assert (
        isinstance(result.optimizer, torch.optim.Adam) and result.optimizer.state
    )  # Adam's own moments
    for mine, theirs in zip(
        result.network.parameters(), hand_loop(data, adam, epochs=2).parameters()
    ):
        assert torch.equal(mine, theirs)
    untrained = gd_torch.evaluate(
        gd_torch.Network(generator=gd_torch.seeded_generators(0)[0]), data.train, "quadratic"
    )
    assert result.final["train_cost"] < untrained.cost
    assert load_checkpoint(result.run_dir / "last.pt")["optimizer_class"] == "Adam"
    stopped = quiet(
        settings,
        RunOptions(runs_dir=str(tmp_path)),
        data=data,
        optimizer=adam,
        callbacks=[StopAtStep(30)],
    )
    with pytest.raises(
        gd_torch.GdTorchError, match="trained with Adam, not SGD"
    ):  # resumed with the same optimizer only
        quiet(settings, RunOptions(runs_dir=str(tmp_path)), data=data, resume=stopped.run_dir)


def test_momentum_and_nesterov_are_torch_optim_sgds_own(data):
    """The run's steps are exactly those of a hand loop calling
    torch.optim.SGD(momentum, nesterov).step()."""
    settings = TrainingSettings(
        epochs=1, learning_rate=0.5, momentum=0.9, nesterov=True, lr_schedule="constant"
    )
    result = quiet(settings, RunOptions(runs_dir=None), data=data)
    network = hand_loop(
        data,
        lambda network: torch.optim.SGD(
            network.parameters(),
            lr=0.5,
            momentum=0.9,
            nesterov=True,
            weight_decay=settings.weight_decay,
        ),
    )
    for mine, theirs in zip(result.network.parameters(), network.parameters()):
        assert torch.equal(mine, theirs)
    assert all("momentum_buffer" in state for state in result.optimizer.state.values())


class StopAtStep(Callback):
    def __init__(self, step):
        self.at = step

    def on_step_end(self, run):
        if run.step == self.at:
            run.stop(f"step {self.at}")


def test_a_callback_stops_a_run_cleanly_and_leaves_a_checkpoint_that_resumes_bit_for_bit(
    data, tmp_path
):
    settings = TrainingSettings(epochs=3)
    whole = quiet(settings, RunOptions(runs_dir=str(tmp_path / "whole")), data=data)
    stopped = quiet(
        settings,
        RunOptions(runs_dir=str(tmp_path / "stopped")),
        data=data,
        callbacks=[StopAtStep(95)],
    )
    assert stopped.stopped == "step 95" and len(stopped.history) == 1  # in epoch 2, after step 95
    state = load_checkpoint(stopped.run_dir / "last.pt")
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 95, 35)
    resumed = quiet(
        settings, RunOptions(runs_dir=str(tmp_path / "stopped")), data=data, resume=stopped.run_dir
    )
    assert resumed.stopped is None and resumed.run_dir == stopped.run_dir
    for mine, theirs in zip(resumed.network.parameters(), whole.network.parameters()):
        assert torch.equal(mine, theirs)


def test_callbacks_see_every_step_and_epoch_in_order(data):
    class Record(Callback):
        def __init__(self):
            self.events = []

        def on_run_start(self, run):
            self.events.append(("start", run.step))

        def on_epoch_start(self, run):
            self.events.append(("epoch start", run.epoch, run.batches))

        def on_step_end(self, run):
            assert run.batch_cost.dim() == 0 and run.gradient_norm() > 0
            self.events.append(("step", run.step))

        def on_epoch_end(self, run):
            self.events.append(("epoch end", run.epoch, round(run.metrics["test_accuracy"], 6)))

        def on_run_end(self, run):
            self.events.append(("end", run.outcome))

    record = Record()
    result = quiet(
        TrainingSettings(epochs=2, batch_size=100),
        RunOptions(runs_dir=None),
        data=data,
        callbacks=[record],
    )
    accuracies = [round(epoch["test_accuracy"], 6) for epoch in result.history]
    assert record.events == [  # 600 digits in batches of 100: 6 steps an epoch
        ("start", 0),
        ("epoch start", 1, 6),
        *[("step", n) for n in range(1, 7)],
        ("epoch end", 1, accuracies[0]),
        ("epoch start", 2, 6),
        *[("step", n) for n in range(7, 13)],
        ("epoch end", 2, accuracies[1]),
        ("end", "finished"),
    ]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_float64_runs_end_to_end(data, tmp_path, engine):
    result = quiet(
        TrainingSettings(epochs=1, dtype="float64", engine=engine),
        RunOptions(runs_dir=str(tmp_path)),
        data=data,
    )
    assert all(
        p.dtype == torch.float64 and p.grad.dtype == torch.float64
        for p in result.network.parameters()
    )
    state = load_checkpoint(result.run_dir / "last.pt")
    assert all(tensor.dtype == torch.float64 for tensor in state["model"].values())
    network, settings = gd_torch.network_from_checkpoint(state)
    test = data.test.to("cpu", torch.float64)
    assert network.layers[0].weight.dtype == torch.float64 and test.images.dtype == torch.float64
    assert gd_torch.evaluate(network, test, settings.cost).accuracy == result.final["test_accuracy"]


def test_both_engines_agree_to_float64_rounding_over_a_run(data):
    results = [
        quiet(
            TrainingSettings(epochs=1, dtype="float64", engine=engine),
            RunOptions(runs_dir=None),
            data=data,
        )
        for engine in ("manual", "autograd")
    ]
    for manual, autograd in zip(*(result.network.parameters() for result in results)):
        torch.testing.assert_close(manual, autograd, rtol=0, atol=1e-10)


def test_your_own_network_is_the_one_trained(data):
    network = gd_torch.Network(
        (784, 16, 16, 10), init="pytorch", generator=torch.Generator().manual_seed(7)
    )
    before = network.layers[0].weight.detach().clone()
    result = quiet(
        TrainingSettings(epochs=1), RunOptions(runs_dir=None), data=data, network=network
    )
    assert result.network is network and not torch.equal(network.layers[0].weight, before)
    with pytest.raises(
        gd_torch.GdTorchError, match=r"the network given is \(784, 30, 10\), the settings say"
    ):
        quiet(
            TrainingSettings(epochs=1),
            RunOptions(runs_dir=None),
            data=data,
            network=gd_torch.Network((784, 30, 10)),
        )


def test_nothing_is_written_without_a_runs_dir(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = quiet(TrainingSettings(epochs=1), RunOptions(runs_dir=None), data=data)
    assert result.run_dir is None and list(tmp_path.iterdir()) == []


def test_data_must_match_the_validation_setting(data):
    with pytest.raises(
        gd_torch.GdTorchError,
        match="--validation-size 100, but the data given holds 0 validation images",
    ):
        quiet(TrainingSettings(validation_size=100), RunOptions(runs_dir=None), data=data)


def test_the_reference_epoch_runs_alone_from_python(data):
    """One epoch by hand: the loop a reader expects, with any optimizer, and the schedule applied
    by the caller."""
    network = gd_torch.Network()
    optimizer = torch.optim.SGD(network.parameters(), lr=3.0)
    before = gd_torch.evaluate(network, data.test, "quadratic").cost
    order = torch.Generator().manual_seed(1)
    for epoch in range(1, 3):
        for group in optimizer.param_groups:
            group["lr"] = TrainingSettings(epochs=2).learning_rate_at(epoch)
        gd_torch.train_one_epoch(
            network, optimizer, data.train, gd_torch.shuffled_batches(len(data.train), 10, order)
        )
    assert gd_torch.evaluate(network, data.test, "quadratic").cost < before / 2


def test_the_api_is_exported():
    for name in (
        "train",
        "TrainingSettings",
        "RunOptions",
        "Callback",
        "Run",
        "Network",
        "Mnist",
        "Split",
        "load_mnist",
        "train_one_epoch",
        "evaluate",
        "TrainResult",
        "sgd",
        "TensorBoard",
    ):
        assert name in gd_torch.__all__ and hasattr(gd_torch, name), name
    assert os.path.basename(gd_torch.__file__) == "__init__.py"
