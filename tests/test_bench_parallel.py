"""``gd-torch bench --parallel``'s measurement of data-parallel steps, in one process."""

import json
import math

import pytest

from gd_torch.cli import main
from gd_torch.tools.bench_parallel import (
    MEASURED_STEPS,
    REPORT,
    epochs_for,
    halves_seconds,
    seconds_per_step,
    worker,
)


def test_every_batch_size_gets_a_warm_up_epoch_and_enough_measured_steps():
    for train_images in (600, 60_000):
        for batch_size in (1, 10, 599, 600):
            steps_per_epoch = -(-train_images // batch_size)
            epochs = epochs_for(batch_size, train_images)
            assert (epochs - 1) * steps_per_epoch >= MEASURED_STEPS
            assert (epochs - 2) * steps_per_epoch < MEASURED_STEPS  # and no more epochs than that


def test_a_step_is_timed_from_the_end_of_the_first_epoch_to_the_end_of_the_last():
    history = [
        {"epoch": 1, "step": 60, "sgd_seconds": 9.0},  # the warm-up epoch is left out
        {"epoch": 2, "step": 120, "sgd_seconds": 9.5},
        {"epoch": 3, "step": 180, "sgd_seconds": 10.2},
    ]
    assert math.isclose(seconds_per_step(history), 1.2 / 120)


def test_the_worker_reports_seconds_per_step_at_each_batch_size(fake_mnist_root, capsys):
    worker(str(fake_mnist_root), [10, 600])
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(REPORT)]
    report = json.loads(line[len(REPORT) :])
    assert report["train_images"] == 600
    assert set(report["seconds"]) == {"10", "600"}
    assert all(math.isfinite(seconds) and seconds > 0 for seconds in report["seconds"].values())


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--rounds", "0"], "--rounds must be positive integers (got 0)"),
        (["--parallel-copies", "0"], "--parallel-copies must be positive integers (got 0)"),
        (["--parallel-batch-sizes", "10", "-1"], "--parallel-batch-sizes must be positive"),
        (["--epochs", "0"], "--epochs must be a positive integer, not 0"),
    ],
)
def test_bad_numbers_are_refused_before_anything_runs(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["bench", "--parallel", "--data-root", str(tmp_path), *arguments])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_the_ceiling_runs_two_sweeps_of_half_the_copies_at_once(fake_mnist_root, tmp_path):
    wall, slower = halves_seconds(3, 1, str(fake_mnist_root), str(tmp_path))
    summaries = sorted(tmp_path.glob("half*/sweep_*/summary.csv"))
    assert [path.parts[-3] for path in summaries] == ["half0", "half1"]
    copies = [len(path.read_text().strip().splitlines()) - 1 for path in summaries]
    assert copies == [2, 1]  # every copy once: 2 + 1 of the 3
    assert 0 < slower < wall
