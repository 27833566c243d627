import io
import json
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.core.evaluate import evaluate
from gd_torch.core.settings import to_dict
from tests.configs import split
from tests.fakes import synthetic_mnist


def quick_config(tmp_path, **changes):
    values = dict(
        epochs=3,
        batch_size=10,
        learning_rate=3.0,
        runs_dir=str(tmp_path / "runs"),
        data_root=str(tmp_path),
        log_every=20,
    )
    return split(**(values | changes))


def run(config, data=None):
    settings, options = config
    return train(
        settings, options, data=synthetic_mnist() if data is None else data, out=io.StringIO()
    )


def parameters(result):
    return [p.detach().clone() for p in result.network.parameters()]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_training_learns_the_synthetic_digits(tmp_path, engine):
    result = run(quick_config(tmp_path, engine=engine))
    costs = [epoch["train_cost"] for epoch in result.history]
    assert costs[-1] < costs[0] and result.final["test_accuracy"] > 0.9


def test_same_seed_same_result_other_seed_other_result(tmp_path):
    first, again, other = (run(quick_config(tmp_path, seed=s)) for s in (1, 1, 2))
    assert all(torch.equal(a, b) for a, b in zip(parameters(first), parameters(again)))
    assert not torch.equal(parameters(first)[0], parameters(other)[0])
    assert first.run_dir != again.run_dir


def test_both_engines_follow_the_same_trajectory(tmp_path):
    """One epoch (60 steps) from the same seed on the same data: float32 rounding is all that
    differs."""
    manual, autograd = (
        run(quick_config(tmp_path, engine=e, epochs=1)) for e in ("manual", "autograd")
    )
    for m, a in zip(parameters(manual), parameters(autograd)):
        torch.testing.assert_close(m, a)


def test_run_directory_holds_config_versions_checkpoint_and_events(tmp_path):
    settings, options = config = quick_config(tmp_path, run_name="look")
    result = run(config)
    assert result.run_dir.parent == tmp_path / "runs"
    assert re.fullmatch(r"look_\d{8}-\d{6}", result.run_dir.name)  # the name first, the time last
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved == json.loads(
        json.dumps({"settings": to_dict(settings), "options": to_dict(options)})
    )
    assert "torch" in json.loads((result.run_dir / "versions.json").read_text())
    state = load_checkpoint(result.run_dir / "last.pt")
    assert state["epoch"] == 3 and state["step"] == 3 * 60
    network, saved_settings = network_from_checkpoint(state)
    assert saved_settings == settings and state["options"] == to_dict(options)
    assert all(torch.equal(p, q) for p, q in zip(network.parameters(), result.network.parameters()))
    assert (
        evaluate(network, synthetic_mnist().test, settings.cost).accuracy
        == result.final["test_accuracy"]
    )


def test_a_new_run_never_reuses_a_directory(tmp_path):
    config = quick_config(tmp_path, run_name="same", epochs=1)
    directories = {run(config).run_dir for _ in range(3)}
    assert len(directories) == 3


def test_tensorboard_events_hold_every_chart(tmp_path):
    result = run(quick_config(tmp_path))
    events = EventAccumulator(
        str(result.run_dir), size_guidance={"scalars": 0, "histograms": 0}
    ).Reload()
    scalars = set(events.Tags()["scalars"])
    epoch_tags = {
        f"epoch/{name}"
        for name in (
            "train_cost",
            "train_accuracy",
            "test_cost",
            "test_accuracy",
            "seconds",
            "learning_rate",
        )
    }
    batch_tags = {"batch/train_cost", "batch/gradient_norm", "batch/learning_rate"}
    assert epoch_tags | batch_tags | {"epoch/best_test_accuracy"} <= scalars
    assert not any(tag.startswith("final/") for tag in scalars)  # no one-dot charts
    assert [e.step for e in events.Scalars("epoch/test_accuracy")] == [
        0,
        60,
        120,
        180,
    ]  # x: SGD step, 60 per epoch; step 0 is the untrained network
    assert [e.value for e in events.Scalars("epoch/epoch")] == [0, 1, 2, 3]
    assert [e.value for e in events.Scalars("epoch/test_accuracy")][1:] == pytest.approx(
        [h["test_accuracy"] for h in result.history]
    )
    assert [e.step for e in events.Scalars("batch/train_cost")] == list(range(20, 181, 20))
    assert events.Scalars("batch/learning_rate")[0].value == pytest.approx(3.0)
    histograms = set(events.Tags()["histograms"])
    for l in (1, 2, 3):
        assert {
            f"layer{l}/weights",
            f"layer{l}/biases",
            f"layer{l}/weight_gradients",
            f"layer{l}/bias_gradients",
        } <= histograms
    # HPARAMS: in the run's own directory, not in a sub-run; its metrics are the epoch charts.
    assert not list(result.run_dir.glob("**/*/events.out.tfevents.*"))
    plugin = events.PluginTagToContent("hparams")
    assert {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    } <= set(plugin)
    assert (
        b"epoch/test_accuracy" in plugin["_hparams_/experiment"]
        and b"learning_rate" in plugin["_hparams_/session_start_info"]
    )


def test_cosine_schedule_lowers_the_learning_rate_each_epoch(tmp_path):
    result = run(quick_config(tmp_path, lr_schedule="cosine", epochs=4))
    assert [round(h["learning_rate"], 4) for h in result.history] == [3.0, 2.5607, 1.5, 0.4393]


def test_batch_size_larger_than_the_training_set_is_refused(tmp_path, fake_mnist_root):
    from gd_torch.core.errors import GdTorchError

    settings, options = quick_config(
        tmp_path, batch_size=601, data_root=str(fake_mnist_root), download=False
    )
    with pytest.raises(
        GdTorchError, match="--batch-size 601 is larger than the 600 training images"
    ):
        train(settings, options)
