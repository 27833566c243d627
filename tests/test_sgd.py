"""The run's SGD as a plan (gd_torch.core.sgd): a run on the native steps never makes its
torch.optim.SGD, and so never imports torch._dynamo, yet it holds, saves and hands over what
the optimizer would."""

import io

import pytest
import torch

from gd_torch import Callback, train
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import PlannedSGD, set_learning_rate, sgd
from tests.fakes import synthetic_mnist
from tests.processes import imported_by_main

FAST = RunOptions(runs_dir=None, compile=True)  # the native steps, on any number of steps


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"weight_decay_on": "weights"},
        {"weight_decay_on": "weights", "weight_decay": 0.0},
        {"momentum": 0.9, "nesterov": True, "dtype": "float64"},
        {"learning_rate": 0.25, "hidden_sizes": (30,), "lr_schedule": "cosine", "epochs": 4},
    ],
)
def test_the_plans_state_is_that_of_the_optimizer_before_a_step(changes):
    """What a run's and a sweep's checkpoints hold, made without torch.optim: torch.optim.SGD's
    own, as made and after each epoch's η."""
    settings = TrainingSettings(**changes)
    network = Network(settings.layer_sizes, dtype=settings.torch_dtype)
    plan, optimizer = PlannedSGD(settings, network), sgd(settings)(network)
    assert plan.state_dict() == optimizer.state_dict()
    for epoch in range(1, settings.epochs + 1):
        set_learning_rate(plan.param_groups, settings, epoch)
        set_learning_rate(optimizer.param_groups, settings, epoch)
        assert plan.state_dict() == optimizer.state_dict()


def test_the_plan_makes_its_sgd_once_over_its_own_groups():
    """η set on the plan is the made SGD's, and what is set on that SGD is the plan's."""
    settings = TrainingSettings(epochs=4, lr_schedule="linear")
    plan = PlannedSGD(settings, Network())
    set_learning_rate(plan.param_groups, settings, 3)
    made = plan.make()
    assert type(made) is torch.optim.SGD and plan.make() is made
    assert made.param_groups[0]["lr"] == settings.learning_rate_at(3)
    made.param_groups[0]["lr"] = 0.5
    assert plan.param_groups[0]["lr"] == 0.5 and plan.state_dict() == made.state_dict()


def test_a_run_on_the_native_steps_does_not_import_the_compiler(fake_mnist_root, tmp_path):
    training = ["train", "--data-root", str(fake_mnist_root), "--no-download", "--runs-dir"]
    training += [str(tmp_path / "runs"), "--epochs", "2", "--compile"]
    imported, printed = imported_by_main(training, "torch._dynamo")
    assert "native C++ steps" in printed and "final test accuracy" in printed
    assert not imported


def test_a_native_runs_checkpoint_holds_the_reference_runs_optimizer(tmp_path):
    settings = TrainingSettings(epochs=3, lr_schedule="linear", weight_decay=1e-4)
    data = synthetic_mnist()
    saved = {}
    for compile in (True, False):
        options = RunOptions(runs_dir=str(tmp_path / str(compile)), compile=compile)
        result = train(settings, options, data=data, out=io.StringIO())
        saved[compile] = load_checkpoint(result.run_dir / "last.pt")
    assert saved[True]["optimizer_class"] == saved[False]["optimizer_class"] == "SGD"
    assert saved[True]["optimizer"] == saved[False]["optimizer"]


def test_an_optimizer_asked_for_mid_run_is_the_one_the_steps_follow():
    """A callback that makes the SGD (``run.optimizer``) and halves its η changes the native
    steps from the next epoch on, as it would the reference loop's."""

    class HalveAfterFirstEpoch(Callback):
        def on_epoch_end(self, run):
            if run.epoch == 1:
                for group in run.optimizer.param_groups:
                    group["initial_lr"] /= 2

    settings = TrainingSettings(epochs=2)
    data = synthetic_mnist()
    runs = [
        train(settings, options, data=data, callbacks=[HalveAfterFirstEpoch()], out=io.StringIO())
        for options in (FAST, RunOptions(runs_dir=None, compile=False))
    ]
    for fast, reference in zip(*(run.network.parameters() for run in runs), strict=True):
        torch.testing.assert_close(fast, reference)
    plain = train(settings, FAST, data=data, out=io.StringIO())
    assert not torch.equal(plain.network.layers[0].weight, runs[0].network.layers[0].weight)
    assert runs[0].optimizer.param_groups[0]["lr"] == settings.learning_rate_at(2) / 2


def test_the_results_optimizer_is_made_when_asked_for_with_the_last_epochs_rate():
    settings = TrainingSettings(epochs=2, lr_schedule="linear")
    result = train(settings, FAST, data=synthetic_mnist(), out=io.StringIO())
    assert isinstance(result.optimizer_or_plan, PlannedSGD)
    assert type(result.optimizer) is torch.optim.SGD
    assert result.optimizer.param_groups[0]["lr"] == settings.learning_rate_at(2)
    assert list(result.optimizer.param_groups[0]["params"]) == list(result.network.parameters())
