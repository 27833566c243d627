"""A diverging run stops at once with a clear message and never saves what diverged."""

import io

import pytest
import torch

from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.engines import ENGINES
from gd_torch.core.guard import LARGEST_WEIGHT, Diverged, RunGuard
from gd_torch.core.model import Network
from gd_torch.core.settings import TrainingSettings
from tests.configs import split
from tests.fakes import synthetic_mnist

STEPS_PER_EPOCH = 60


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def test_nan_gradient_stops_the_run_at_the_next_step_and_keeps_the_last_good_checkpoint(
    tmp_path, data, monkeypatch
):
    poisoned_step = STEPS_PER_EPOCH + 25  # in epoch 2
    compute_gradients, calls = ENGINES["manual"], []

    def nan_gradient_once(network, *arguments):
        batch_cost = compute_gradients(network, *arguments)
        calls.append(1)
        if len(calls) == poisoned_step:
            network.layers[0].weight.grad[3, 100] = float("nan")
        return batch_cost

    monkeypatch.setitem(ENGINES, "manual", nan_gradient_once)
    settings = dict(
        learning_rate=1.5, lr_schedule="constant", weight_decay=0.0
    )  # pinned: the message names η
    with pytest.raises(Diverged) as diverged:
        train(
            *split(epochs=3, runs_dir=str(tmp_path / "runs"), **settings),
            data=data,
            out=io.StringIO(),
        )
    message = str(diverged.value)
    assert (
        f"diverged at step {poisoned_step + 1} (epoch 2, learning rate 1.5): the batch cost is nan"
        in message
    )
    assert (
        "last.pt, is kept" in message
        and "Hint: start a new run with a smaller --learning-rate" in message
    )
    assert diverged.value.exit_code == 3

    monkeypatch.undo()
    one_epoch = train(
        *split(epochs=1, runs_dir=str(tmp_path / "good"), **settings), data=data, out=io.StringIO()
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    kept = load_checkpoint(run_dir / "last.pt")
    assert kept["epoch"] == 1
    for name, tensor in one_epoch.network.state_dict().items():
        assert torch.equal(kept["model"][name], tensor), name


@pytest.mark.parametrize(
    "log_every", [10, 1000]
)  # caught by the step check, or by the check before the epoch's checkpoint
def test_weights_blowing_up_with_a_finite_cost_stop_the_run(tmp_path, data, log_every):
    # η λ = 3 > 2: every step multiplies the weights by 1 − ηλ = −2; the saturated sigmoids keep
    # the cost finite
    config = split(
        epochs=5, learning_rate=3.0, weight_decay=1.0, log_every=log_every, runs_dir=str(tmp_path)
    )
    with pytest.raises(Diverged) as diverged:
        train(*config, data=data, out=io.StringIO())
    assert f"are not finite or beyond ±{LARGEST_WEIGHT:g}" in str(
        diverged.value
    ) and "or --weight-decay (now 1)" in str(diverged.value)
    for path in [*tmp_path.glob("*/last.pt"), *tmp_path.glob("*/best.pt")]:
        for tensor in load_checkpoint(path)["model"].values():
            assert tensor.abs().max() <= LARGEST_WEIGHT


def test_the_first_step_whose_cost_is_not_finite_is_named():
    """A compiled call takes 16 steps at once; the guard then checks their costs one by one, so the
    first that is not finite is the step named (not the call's last)."""
    settings = TrainingSettings(learning_rate=1.5, lr_schedule="constant")
    network = Network(settings.layer_sizes)
    with RunGuard(settings, 100, torch.device("cpu"), None) as guard:
        costs = [0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.5, 0.4, float("inf"), float("nan")]
        with pytest.raises(
            Diverged,
            match=r"diverged at step 11 \(epoch 0, learning rate 1.5\): the batch cost is inf",
        ):
            for step, batch_cost in enumerate(costs, start=1):
                guard.check_step(step, torch.tensor(batch_cost), network)


def test_an_epoch_whose_steps_all_round_away_is_said_and_a_learning_one_is_not(tmp_path, data):
    """η = 1e-30 is a valid float32 number, but η ∂C/∂w is far below the spacing of float32
    near any weight: every step rounds away, and the run says so instead of "training"."""
    for rate, says_so in ((1e-30, True), (3.0, False)):
        out = io.StringIO()
        train(
            *split(epochs=1, learning_rate=rate, runs_dir=str(tmp_path / str(rate)), image_every=0),
            data=data,
            out=out,
        )
        note = "note: epoch 1 changed no weight or bias: at learning rate 1e-30 every SGD step"
        assert (note in out.getvalue()) == says_so, out.getvalue()
