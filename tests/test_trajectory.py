"""trajectory.bin: the weights at step 0, after every epoch and every --snapshot-every steps; a
resumed run appends where its checkpoint was; a sweep keeps one per copy."""

import dataclasses
import io
import json
import struct
from pathlib import Path

import pytest
import torch

from gd_torch import Callback, train
from gd_torch.core import loop
from gd_torch.core import trajectory as trajectory_module
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import mark_run_directory
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.trajectory import (
    FILE_NAME,
    LEGACY_FILE_NAME,
    Trajectory,
    TrajectoryRecorder,
    saved_trajectory,
)
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


@pytest.fixture
def run_dir(tmp_path):
    """A folder gd_torch may replace files in, as in its own run directories."""
    mark_run_directory(tmp_path)
    return tmp_path


def a_trajectory(snapshots, dtype=torch.float32, sizes=(784, 10)):
    trajectory = Trajectory(sizes)
    generator = torch.Generator().manual_seed(0)
    for i in range(snapshots):
        trajectory.add(10 * i, i, torch.randn(7850, generator=generator, dtype=dtype))
    return trajectory


def grow(trajectory, snapshots):
    generator = torch.Generator().manual_seed(len(trajectory))
    for _ in range(snapshots):
        step = trajectory.steps[-1] + 10
        trajectory.add(step, trajectory.epochs[-1] + 1, torch.randn(7850, generator=generator))


def record_bytes(sizes=(784, 10), itemsize=4):
    return 16 + itemsize * sum(m * n + n for m, n in zip(sizes, sizes[1:]))


def test_a_save_appends_only_the_snapshots_taken_since_the_last(run_dir, monkeypatch):
    """A run's saves grow with what they add, not with the path (they were rewritten whole)."""
    appended = []
    real_append = trajectory_module.append_to_file

    def counted_append(path, data, size):
        appended.append(len(data))
        return real_append(path, data, size)

    monkeypatch.setattr(trajectory_module, "append_to_file", counted_append)
    path = run_dir / FILE_NAME
    trajectory = a_trajectory(3)
    trajectory.save(path)
    first_inode, first_size = path.stat().st_ino, path.stat().st_size
    for new in (2, 0, 5):
        grow(trajectory, new)
        trajectory.save(path)
    assert appended == [2 * record_bytes(), 0, 5 * record_bytes()]
    assert path.stat().st_ino == first_inode  # the same file, never written anew
    assert path.stat().st_size == first_size + 7 * record_bytes()
    assert_same(Trajectory.load(path), trajectory)


def test_the_file_is_the_documented_layout(run_dir):
    """One line of JSON after "gd_torch trajectory ", then step, epochs (int64) and θ per record,
    little-endian: what a reader without gd_torch parses."""
    path = run_dir / FILE_NAME
    trajectory = a_trajectory(2, torch.float64)
    trajectory.save(path)
    line, _, body = path.read_bytes().partition(b"\n")
    assert line.startswith(b"gd_torch trajectory ")
    header = json.loads(line.removeprefix(b"gd_torch trajectory "))
    assert header == {"format": 2, "layer_sizes": [784, 10], "dtype": "float64"}
    size = record_bytes(itemsize=8)
    assert len(body) == 2 * size
    assert struct.unpack("<qq", body[size : size + 16]) == (10, 1)
    second = struct.unpack(f"<{7850}d", body[size + 16 : 2 * size])
    assert torch.equal(torch.tensor(second, dtype=torch.float64), trajectory.points[1])
    assert Trajectory.load(path).points.dtype == torch.float64


def test_a_snapshot_cut_short_by_a_crash_is_dropped(run_dir):
    path = run_dir / FILE_NAME
    trajectory = a_trajectory(3)
    trajectory.save(path)
    with open(path, "ab") as file:  # the next append, killed part of the way
        file.write(struct.pack("<qq", 30, 3) + b"\0" * 1000)
    assert_same(Trajectory.load(path), trajectory)
    grow(trajectory, 1)
    trajectory.save(path)  # the file is not what this trajectory left: it is written anew
    assert_same(Trajectory.load(path), trajectory)


def test_a_file_changed_by_another_writer_is_written_anew(run_dir):
    path = run_dir / FILE_NAME
    trajectory = a_trajectory(2)
    trajectory.save(path)
    a_trajectory(4).save(path)  # another trajectory replaces it
    grow(trajectory, 1)
    trajectory.save(path)
    assert_same(Trajectory.load(path), trajectory)
    path.unlink()
    grow(trajectory, 1)
    trajectory.save(path)  # gone: written whole again
    assert_same(Trajectory.load(path), trajectory)


def test_a_saved_snapshot_that_changes_is_written_anew(run_dir):
    """An epoch's end on the step of the last saved snapshot updates its epochs in the file."""
    path = run_dir / FILE_NAME
    trajectory = a_trajectory(2)
    trajectory.save(path)
    trajectory.add(10, 7, trajectory.points[-1])
    trajectory.save(path)
    assert Trajectory.load(path).epochs == [0, 7]


def test_points_of_another_shape_or_dtype_are_refused():
    trajectory = a_trajectory(1)
    with pytest.raises(ValueError, match=r"a point of shape \(13002,\) for \(784, 10\)"):
        trajectory.add(20, 1, torch.zeros(13_002))
    with pytest.raises(ValueError, match="a torch.float64 point in a torch.float32 trajectory"):
        trajectory.add(20, 1, torch.zeros(7850, dtype=torch.float64))


def test_a_run_from_before_the_log_is_read_and_resumed_from_its_trajectory_pt(tmp_path, data):
    """Runs made before trajectory.bin kept trajectory.pt (format 1): analyze reads it, and a
    resumed run continues its path into trajectory.bin."""
    whole = Trajectory.load(trained(config_for(tmp_path / "whole"), data).run_dir / FILE_NAME)
    config = config_for(tmp_path / "old")
    stopped = trained(config, data, callbacks=[StopAfter(100)])
    run_dir = stopped.run_dir
    kept = Trajectory.load(run_dir / FILE_NAME)
    torch.save(
        {
            "format": 1,
            "layer_sizes": list(kept.layer_sizes),
            "steps": torch.tensor(kept.steps),
            "epochs": torch.tensor(kept.epochs),
            "points": kept.points,
        },
        run_dir / LEGACY_FILE_NAME,
    )
    (run_dir / FILE_NAME).unlink()
    assert saved_trajectory(run_dir) == run_dir / LEGACY_FILE_NAME
    assert_same(Trajectory.load(run_dir / LEGACY_FILE_NAME), kept)
    resumed = trained(config, data, resume=run_dir)
    assert saved_trajectory(resumed.run_dir) == run_dir / FILE_NAME
    assert_same(Trajectory.load(run_dir / FILE_NAME), whole)
