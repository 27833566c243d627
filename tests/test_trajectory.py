"""trajectory.pt: the weights at step 0, after every epoch and every --snapshot-every steps; a
resumed run appends where its checkpoint was; a sweep keeps one per copy."""

import dataclasses
import io
from pathlib import Path

import pytest
import torch

from gd_torch import Callback, train
from gd_torch.core import loop
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.trajectory import FILE_NAME, Trajectory, TrajectoryRecorder
from gd_torch.core.weight_space import point_of
from gd_torch.tools.sweep import sweep
from tests.configs import split
from tests.fakes import synthetic_mnist

# 600 synthetic training images in batches of 10: 60 steps an epoch; a snapshot every 25 steps
EXPECTED_STEPS = [0, 25, 50, 60, 75, 100, 120, 125, 150, 175, 180]
EXPECTED_EPOCHS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3]


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def config_for(tmp_path, **changes):
    values = dict(
        epochs=3,
        batch_size=10,
        learning_rate=3.0,
        snapshot_every=25,
        runs_dir=str(tmp_path / "runs"),
        run_name="r",
    )
    return split(**values | changes)


def trained(config, data, **arguments):
    return train(*config, data=data, out=io.StringIO(), **arguments)


class StopAfter(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, run):
        if run.step == self.step:
            run.stop(f"step {self.step}")


class CrashAtEpochEnd(Callback):
    """Fails after the trajectory was saved at the end of ``epoch`` and before its checkpoint."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, run):
        if run.epoch == self.epoch:
            raise RuntimeError("the machine went away")


def assert_same(a: Trajectory, b: Trajectory) -> None:
    assert (a.steps, a.epochs) == (b.steps, b.epochs)
    assert torch.equal(a.points, b.points)


def test_a_run_keeps_step_zero_every_epoch_and_every_nth_step(tmp_path, data):
    config = config_for(tmp_path)
    result = trained(config, data)
    trajectory = Trajectory.load(result.run_dir / FILE_NAME)
    assert trajectory.steps == EXPECTED_STEPS and trajectory.epochs == EXPECTED_EPOCHS
    assert trajectory.layer_sizes == (784, 16, 16, 10)
    initial = Network(init=config[0].init, generator=seeded_generators(config[0].seed)[0])
    assert torch.equal(trajectory.points[0], point_of(initial))
    last, _ = network_from_checkpoint(load_checkpoint(result.run_dir / "last.pt"))
    assert torch.equal(trajectory.points[-1], point_of(last))
    # the snapshot of step 25 is the network of the same run stopped after step 25
    stopped = trained(config_for(tmp_path / "stopped"), data, callbacks=[StopAfter(25)])
    assert torch.equal(trajectory.points[1], point_of(stopped.network))
    assert not torch.equal(trajectory.points[1], trajectory.points[2])


def test_without_snapshot_every_it_keeps_step_zero_and_the_epochs(tmp_path, data):
    result = trained(config_for(tmp_path, snapshot_every=0), data)
    trajectory = Trajectory.load(result.run_dir / FILE_NAME)
    assert trajectory.steps == [0, 60, 120, 180] and trajectory.epochs == [0, 1, 2, 3]
    assert trajectory.points.shape == (4, 13_002) and trajectory.points.dtype == torch.float32


@pytest.mark.parametrize("stop_step", [85, 100, 120])
def test_a_stopped_and_resumed_run_keeps_the_uninterrupted_trajectory(tmp_path, data, stop_step):
    """Stopped mid-epoch (85), at a snapshot (100), at an epoch's end (120): no step missing, none
    twice, and no snapshot of the step where it stopped unless one was due there."""
    whole = Trajectory.load(trained(config_for(tmp_path / "whole"), data).run_dir / FILE_NAME)
    config = config_for(tmp_path / "stopped")
    stopped = trained(config, data, callbacks=[StopAfter(stop_step)])
    assert Trajectory.load(stopped.run_dir / FILE_NAME).steps[-1] <= stop_step
    resumed = trained(config, data, resume=stopped.run_dir)
    assert_same(Trajectory.load(resumed.run_dir / FILE_NAME), whole)


def test_a_crash_after_the_trajectory_was_saved_leaves_no_duplicate(tmp_path, data):
    """The trajectory is written at the end of epoch 2, then the run dies before last.pt of epoch
    2: the resumed run drops the snapshots after its checkpoint (step 60) and takes them again."""
    whole = Trajectory.load(trained(config_for(tmp_path / "whole"), data).run_dir / FILE_NAME)
    settings, options = config_for(tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="went away"):
        loop.train(
            settings,
            options,
            data=data,
            callbacks=[TrajectoryRecorder(), CrashAtEpochEnd(2)],
            out=io.StringIO(),
        )
    (run_dir,) = Path(options.runs_dir).iterdir()
    assert Trajectory.load(run_dir / FILE_NAME).steps == EXPECTED_STEPS[:7]  # up to step 120
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60
    resumed = trained((settings, options), data, resume=run_dir)
    assert_same(Trajectory.load(resumed.run_dir / FILE_NAME), whole)


def test_a_run_without_a_run_directory_writes_no_trajectory(tmp_path, data):
    result = trained(config_for(tmp_path, runs_dir=None), data)
    assert result.run_dir is None and not list(tmp_path.iterdir())


def test_snapshot_every_must_be_a_non_negative_integer_and_not_compiled():
    with pytest.raises(GdTorchError, match="--snapshot-every must be a non-negative integer"):
        RunOptions(snapshot_every=-1)
    with pytest.raises(GdTorchError, match="--snapshot-every must be 0 with --compile"):
        RunOptions(snapshot_every=100, compile=True)
    RunOptions(compile=True)  # the epoch snapshots are kept with --compile too


def test_a_file_that_is_not_a_trajectory_is_one_line(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(b"not a trajectory")
    with pytest.raises(GdTorchError, match="is not a readable trajectory"):
        Trajectory.load(path)
    torch.save({"format": 1, "layer_sizes": [784, 10]}, path)
    with pytest.raises(GdTorchError, match="is not a readable trajectory"):
        Trajectory.load(path)


def test_snapshots_out_of_order_are_refused():
    trajectory = Trajectory((784, 10))
    trajectory.add(5, 0, torch.zeros(7850))
    trajectory.add(5, 1, torch.zeros(7850))  # the same step again: kept once, epochs updated
    assert (trajectory.steps, trajectory.epochs) == ([5], [1])
    with pytest.raises(ValueError, match="snapshot of step 4 after one of step 5"):
        trajectory.add(4, 0, torch.zeros(7850))


def test_a_sweep_keeps_one_trajectory_per_copy(tmp_path, data):
    base = TrainingSettings(epochs=2, batch_size=10)
    options = RunOptions(runs_dir=str(tmp_path / "runs"), snapshot_every=25)
    result = sweep(base, options, seeds=[3, 4], data=data, out=io.StringIO())
    alone_options = dataclasses.replace(options, runs_dir=str(tmp_path / "single"))
    for copy in result.copies:
        config, network = copy.settings, copy.network
        trajectory = Trajectory.load(copy.run_dir / FILE_NAME)
        assert trajectory.steps == EXPECTED_STEPS[:7] and trajectory.epochs == EXPECTED_EPOCHS[:7]
        initial = Network(init=config.init, generator=seeded_generators(config.seed)[0])
        assert torch.equal(trajectory.points[0], point_of(initial))
        assert torch.equal(trajectory.points[-1], point_of(network))
        alone = Trajectory.load(trained((config, alone_options), data).run_dir / FILE_NAME)
        assert alone.steps == trajectory.steps
        torch.testing.assert_close(trajectory.points, alone.points, rtol=1e-4, atol=1e-5)
