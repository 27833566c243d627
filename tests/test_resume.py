"""A run stopped and resumed ends bit for bit where the same run uninterrupted ends, TensorBoard
log included."""

import dataclasses
import io
import re
import signal
from pathlib import Path

import pytest
import torch

from gd_torch import Callback, train
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.guard import Interrupted
from gd_torch.dashboard.tensorboard import TrainingLog
from tests.configs import split
from tests.events import scalars
from tests.fakes import synthetic_mnist

STEPS_PER_EPOCH = 60  # 600 synthetic training images in batches of 10


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def config_for(tmp_path, **changes):
    values = dict(
        epochs=3,
        batch_size=10,
        learning_rate=3.0,
        lr_schedule="cosine",
        log_every=5,
        runs_dir=str(tmp_path / "runs"),
        run_name="r",
    )
    return split(**values | changes)


def train_quietly(config, data, **arguments):
    settings, options = config
    return train(settings, options, data=data, out=io.StringIO(), **arguments)


def interrupt_at(monkeypatch, stop_step: int) -> None:
    """Send ourselves SIGINT right after SGD step ``stop_step`` (a multiple of log_every) is
    logged."""
    log_batch = TrainingLog.batch

    def batch_then_signal(self, step, *arguments):
        log_batch(self, step, *arguments)
        if step == stop_step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(TrainingLog, "batch", batch_then_signal)


def interrupted_and_resumed(monkeypatch, config, data, stop_step):
    interrupt_at(monkeypatch, stop_step)
    with pytest.raises(Interrupted) as stopped:
        train_quietly(config, data)
    monkeypatch.undo()
    (run_dir,) = Path(config[1].runs_dir).iterdir()
    return stopped.value, run_dir, train_quietly(config, data, resume=run_dir)


def without_seconds(history):
    return [
        {k: v for k, v in epoch.items() if k not in ("seconds", "sgd_seconds")} for epoch in history
    ]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
@pytest.mark.parametrize(
    "stop_step", [85, STEPS_PER_EPOCH]
)  # mid-epoch 2; the last step of epoch 1
def test_resumed_run_equals_uninterrupted_bit_for_bit(
    tmp_path, monkeypatch, data, engine, stop_step
):
    whole = train_quietly(config_for(tmp_path / "whole", engine=engine), data)
    config = config_for(tmp_path / "stopped", engine=engine)
    stopped, run_dir, resumed = interrupted_and_resumed(monkeypatch, config, data, stop_step)

    assert stopped.exit_code == 130 and f"--resume {run_dir}" in str(stopped)
    assert resumed.run_dir == run_dir
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], tensor), name
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    for name, tensor in load_checkpoint(whole.run_dir / "last.pt")["model"].items():
        assert torch.equal(load_checkpoint(run_dir / "last.pt")["model"][name], tensor), name


def test_checkpoint_written_on_interruption_holds_the_epoch_start_and_position(
    tmp_path, monkeypatch, data
):
    config = config_for(tmp_path)
    interrupt_at(monkeypatch, 85)
    with pytest.raises(Interrupted):
        train_quietly(config, data)
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 85, 85 - STEPS_PER_EPOCH)
    assert len(state["history"]) == 1


def test_tensorboard_log_of_a_resumed_run_has_every_step_once(tmp_path, monkeypatch, data):
    whole = train_quietly(config_for(tmp_path / "whole"), data)
    _, run_dir, _ = interrupted_and_resumed(monkeypatch, config_for(tmp_path / "stopped"), data, 85)
    for tag in (
        "batch/train_cost",
        "batch/gradient_norm",
        "epoch/test_accuracy",
        "epoch/train_cost",
    ):
        assert scalars(run_dir, tag) == scalars(whole.run_dir, tag), tag
    assert [step for step, _ in scalars(run_dir, "batch/train_cost")] == list(
        range(5, 3 * STEPS_PER_EPOCH + 1, 5)
    )


class KeepFirstCheckpoint(Callback):
    """Keeps last.pt as it was after epoch 1, to put it back later as a crash would leave it."""

    def on_epoch_start(self, run):
        if run.epoch == 2:
            self.saved = (run.run_dir / "last.pt").read_bytes()


def test_resume_from_a_checkpoint_older_than_the_log_purges_the_orphaned_steps(tmp_path, data):
    """As after a crash: the log goes on past the checkpoint; resuming must not show those steps
    twice."""
    config = config_for(tmp_path, epochs=3)
    keep = KeepFirstCheckpoint()
    first = train(*config, data=data, out=io.StringIO(), callbacks=[keep])
    (first.run_dir / "last.pt").write_bytes(keep.saved)  # the log holds 3 epochs, last.pt one
    train_quietly(config, data, resume=first.run_dir)
    steps = [step for step, _ in scalars(first.run_dir, "batch/train_cost")]
    assert steps == list(range(5, 3 * STEPS_PER_EPOCH + 1, 5))
    epochs = [step for step, _ in scalars(first.run_dir, "epoch/test_accuracy")]
    assert epochs == [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH]  # 0: untrained


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(learning_rate=0.5), "--learning-rate 0.5 (the run has 3.0)"),
        (dict(hidden_sizes=(32,)), "--hidden-sizes (32,) (the run has (16, 16))"),
        (dict(engine="autograd"), "--engine autograd (the run has manual)"),
        (dict(seed=1), "--seed 1 (the run has 0)"),
        (dict(epochs=5), "--epochs 5 (the run has 2)"),
        (dict(momentum=0.5), "--momentum 0.5 (the run has 0.0)"),
        (dict(dtype="float64"), "--dtype float64 (the run has float32)"),
    ],
)
def test_resume_refuses_any_change_of_a_training_setting(tmp_path, data, change, message):
    settings, options = config_for(tmp_path, epochs=2)
    run = train(settings, options, data=data, out=io.StringIO())
    before = (run.run_dir / "last.pt").read_bytes()
    with pytest.raises(
        GdTorchError, match=re.escape(message) + ".*a resumed run keeps its training settings"
    ):
        train(
            dataclasses.replace(settings, **change),
            options,
            data=data,
            out=io.StringIO(),
            resume=run.run_dir,
        )
    assert (run.run_dir / "last.pt").read_bytes() == before


def test_resume_accepts_any_run_option_and_refuses_a_finished_run(tmp_path, monkeypatch, data):
    settings, options = config = config_for(tmp_path, epochs=2)
    interrupt_at(monkeypatch, 85)
    with pytest.raises(Interrupted):
        train_quietly(config, data)
    monkeypatch.undo()
    (run_dir,) = Path(options.runs_dir).iterdir()
    changed = dataclasses.replace(
        options, log_every=7, checkpoint_every=3, data_root="elsewhere", image_every=0, threads=2
    )
    assert (
        train(settings, changed, data=data, out=io.StringIO(), resume=run_dir / "last.pt").final[
            "epoch"
        ]
        == 2
    )
    assert load_checkpoint(run_dir / "last.pt")["options"]["log_every"] == 7
    with pytest.raises(GdTorchError, match="already finished its 2 epochs"):
        train_quietly(config, data, resume=run_dir)
