"""A diverging run stops at once with a clear message and never saves what diverged."""

import io

import pytest
import torch

from gd_torch.checkpoint import load_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.engines import ENGINES
from gd_torch.guard import LARGEST_WEIGHT, Diverged, RunGuard
from gd_torch.model import Network
from gd_torch.train import train
from tests.fakes import synthetic_mnist

STEPS_PER_EPOCH = 60


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def test_nan_gradient_stops_the_run_at_the_next_step_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    poisoned_step = STEPS_PER_EPOCH + 25  # in epoch 2
    compute_gradients, calls = ENGINES["manual"], []

    def nan_gradient_once(network, *arguments):
        batch_cost = compute_gradients(network, *arguments)
        calls.append(1)
        if len(calls) == poisoned_step:
            network.layers[0].weight.grad[3, 100] = float("nan")
        return batch_cost

    monkeypatch.setitem(ENGINES, "manual", nan_gradient_once)
    settings = dict(learning_rate=1.5, lr_schedule="constant", weight_decay=0.0)  # pinned: the message names η
    config = TrainConfig(epochs=3, runs_dir=str(tmp_path / "runs"), **settings)
    with pytest.raises(Diverged) as diverged:
        train(config, data, out=io.StringIO())
    message = str(diverged.value)
    assert f"diverged at step {poisoned_step + 1} (epoch 2, learning rate 1.5): the batch cost is nan" in message
    assert "last.pt, is kept" in message and "Hint: start a new run with a smaller --learning-rate" in message
    assert diverged.value.exit_code == 3

    monkeypatch.undo()
    one_epoch = train(TrainConfig(epochs=1, runs_dir=str(tmp_path / "good"), **settings), data, out=io.StringIO())
    (run_dir,) = (tmp_path / "runs").iterdir()
    kept = load_checkpoint(run_dir / "last.pt")
    assert kept["epoch"] == 1
    for name, tensor in one_epoch.network.state_dict().items():
        assert torch.equal(kept["model"][name], tensor), name


@pytest.mark.parametrize("log_every", [10, 1000])  # caught by the step check, or by the check before the epoch's checkpoint
def test_weights_blowing_up_with_a_finite_cost_stop_the_run(tmp_path, data, log_every):
    # η λ = 3 > 2: every step multiplies the weights by 1 − ηλ = −2; the saturated sigmoids keep the cost finite
    config = TrainConfig(epochs=5, learning_rate=3.0, weight_decay=1.0, log_every=log_every, runs_dir=str(tmp_path))
    with pytest.raises(Diverged) as diverged:
        train(config, data, out=io.StringIO())
    assert f"are not finite or beyond ±{LARGEST_WEIGHT:g}" in str(diverged.value) and "or --weight-decay (now 1)" in str(diverged.value)
    for path in tmp_path.glob("*/*.pt"):
        for tensor in load_checkpoint(path)["model"].values():
            assert tensor.abs().max() <= LARGEST_WEIGHT


def test_a_nan_inside_a_call_of_several_steps_names_its_own_step(tmp_path, data):
    """Compiled calls take several steps at once; the guard reads all their costs and names the first that is not finite."""
    config = TrainConfig(runs_dir=str(tmp_path), learning_rate=1.5, lr_schedule="constant")
    network = Network(config.layer_sizes)
    with RunGuard(config, torch.device("cpu"), tmp_path) as guard:
        guard.check_steps(16, torch.tensor([0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1]), network)  # steps 9..16: all finite
        with pytest.raises(Diverged, match=r"diverged at step 19 \(epoch 0, learning rate 1.5\): the batch cost is inf"):
            guard.check_steps(24, torch.tensor([0.5, 0.4, float("inf"), float("nan"), 0.3, 0.2, 0.2, 0.1]), network)
