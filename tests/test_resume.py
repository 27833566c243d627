"""A run stopped and resumed ends bit for bit where the same run uninterrupted ends, TensorBoard log included."""

import dataclasses
import io
import signal
from pathlib import Path

import pytest
import torch

from gd_torch.checkpoint import load_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.errors import GdTorchError
from gd_torch.guard import Interrupted
from gd_torch.tensorboard_log import TrainingLog
from gd_torch.train import train
from tests.events import scalars
from tests.fakes import synthetic_mnist

STEPS_PER_EPOCH = 60  # 600 synthetic training images in batches of 10


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def config_for(tmp_path, **changes) -> TrainConfig:
    values = dict(epochs=3, batch_size=10, learning_rate=3.0, lr_schedule="cosine", log_every=5, runs_dir=str(tmp_path / "runs"), run_name="r")
    return TrainConfig(**values | changes)


def interrupt_at(monkeypatch, stop_step: int) -> None:
    """Send ourselves SIGINT right after SGD step ``stop_step`` (a multiple of log_every) is logged."""
    log_batch = TrainingLog.batch

    def batch_then_signal(self, step, *arguments):
        log_batch(self, step, *arguments)
        if step == stop_step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(TrainingLog, "batch", batch_then_signal)


def interrupted_and_resumed(monkeypatch, config, data, stop_step):
    interrupt_at(monkeypatch, stop_step)
    with pytest.raises(Interrupted) as stopped:
        train(config, data, out=io.StringIO())
    monkeypatch.undo()
    (run_dir,) = Path(config.runs_dir).iterdir()
    return stopped.value, run_dir, train(config, data, out=io.StringIO(), resume=run_dir)


def without_seconds(history):
    return [{k: v for k, v in epoch.items() if k not in ("seconds", "sgd_seconds")} for epoch in history]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
@pytest.mark.parametrize("stop_step", [85, STEPS_PER_EPOCH])  # mid-epoch 2; the last step of epoch 1
def test_resumed_run_equals_uninterrupted_bit_for_bit(tmp_path, monkeypatch, data, engine, stop_step):
    whole = train(config_for(tmp_path / "whole", engine=engine), data, out=io.StringIO())
    config = config_for(tmp_path / "stopped", engine=engine)
    stopped, run_dir, resumed = interrupted_and_resumed(monkeypatch, config, data, stop_step)

    assert stopped.exit_code == 130 and f"--resume {run_dir}" in str(stopped)
    assert resumed.run_dir == run_dir
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], tensor), name
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    for name, tensor in load_checkpoint(whole.run_dir / "last.pt")["model"].items():
        assert torch.equal(load_checkpoint(run_dir / "last.pt")["model"][name], tensor), name


def test_checkpoint_written_on_interruption_holds_the_epoch_start_and_position(tmp_path, monkeypatch, data):
    config = config_for(tmp_path)
    interrupt_at(monkeypatch, 85)
    with pytest.raises(Interrupted):
        train(config, data, out=io.StringIO())
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 85, 85 - STEPS_PER_EPOCH)
    assert len(state["history"]) == 1


def test_tensorboard_log_of_a_resumed_run_has_every_step_once(tmp_path, monkeypatch, data):
    whole = train(config_for(tmp_path / "whole"), data, out=io.StringIO())
    _, run_dir, _ = interrupted_and_resumed(monkeypatch, config_for(tmp_path / "stopped"), data, 85)
    for tag in ("batch/train_cost", "batch/gradient_norm", "epoch/test_accuracy", "epoch/train_cost"):
        assert scalars(run_dir, tag) == scalars(whole.run_dir, tag), tag
    assert [step for step, _ in scalars(run_dir, "batch/train_cost")] == list(range(5, 3 * STEPS_PER_EPOCH + 1, 5))


def test_resume_from_a_checkpoint_older_than_the_log_purges_the_orphaned_steps(tmp_path, data):
    """As after a crash: the log goes on past the checkpoint; resuming must not show those steps twice."""
    config = config_for(tmp_path, lr_schedule="constant", epochs=1)
    first = train(config, data, out=io.StringIO())
    checkpoint_after_one_epoch = (first.run_dir / "last.pt").read_bytes()
    train(dataclasses.replace(config, epochs=2), data, out=io.StringIO(), resume=first.run_dir)
    (first.run_dir / "last.pt").write_bytes(checkpoint_after_one_epoch)
    train(dataclasses.replace(config, epochs=2), data, out=io.StringIO(), resume=first.run_dir)
    steps = [step for step, _ in scalars(first.run_dir, "batch/train_cost")]
    assert steps == list(range(5, 2 * STEPS_PER_EPOCH + 1, 5))
    assert [step for step, _ in scalars(first.run_dir, "epoch/test_accuracy")] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_more_epochs_on_a_finished_run_equal_the_longer_run(tmp_path, data, engine):
    config = config_for(tmp_path, engine=engine, lr_schedule="constant", epochs=1)
    short = train(config, data, out=io.StringIO())
    longer = train(dataclasses.replace(config, epochs=3), data, out=io.StringIO(), resume=short.run_dir)
    whole = train(config_for(tmp_path / "whole", engine=engine, lr_schedule="constant", epochs=3), data, out=io.StringIO())
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(longer.network.state_dict()[name], tensor), name
    assert [epoch["epoch"] for epoch in longer.history] == [1, 2, 3]


@pytest.mark.parametrize("change, message", [
    (dict(learning_rate=0.5), "--learning-rate 0.5 differs from the 3.0"),
    (dict(hidden_sizes=(32,)), "--hidden-sizes (32,) differs"),
    (dict(engine="autograd"), "--engine autograd differs"),
    (dict(seed=1), "--seed 1 differs"),
    (dict(epochs=5), "--epochs cannot change when resuming a run with --lr-schedule cosine"),
])
def test_resume_refuses_a_change_of_what_is_trained(tmp_path, data, change, message):
    config = config_for(tmp_path, epochs=2)
    run = train(config, data, out=io.StringIO())
    before = (run.run_dir / "last.pt").read_bytes()
    with pytest.raises(GdTorchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(dataclasses.replace(config, **change), data, out=io.StringIO(), resume=run.run_dir)
    assert (run.run_dir / "last.pt").read_bytes() == before


def test_resume_refuses_a_finished_run_and_allows_what_does_not_change_the_result(tmp_path, data):
    config = config_for(tmp_path, epochs=1, lr_schedule="constant")
    run = train(config, data, out=io.StringIO())
    with pytest.raises(GdTorchError, match="already finished its 1 epochs: give --epochs N larger"):
        train(config, data, out=io.StringIO(), resume=run.run_dir)
    allowed = dataclasses.replace(config, epochs=2, log_every=7, checkpoint_every=3, data_root="elsewhere")
    assert train(allowed, data, out=io.StringIO(), resume=run.run_dir / "last.pt").final["epoch"] == 2
