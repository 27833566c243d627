"""gd-torch reproduce on synthetic digits: the table, its files, the runs under one parent, the
time budget."""

import csv
import json
import statistics

import pytest

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core import presets
from gd_torch.core.errors import GdTorchError
from gd_torch.tools.reproduce import reproduce
from tests.configs import split
from tests.fakes import synthetic_mnist


@pytest.fixture
def small_presets(monkeypatch):
    """The presets cut to fit 600 synthetic training images (full batch = all 600)."""
    monkeypatch.setitem(presets.PRESETS, "3b1b", presets.PRESETS["3b1b"] | {"validation_size": 100})
    monkeypatch.setitem(
        presets.PRESETS, "full-batch-gd", presets.PRESETS["full-batch-gd"] | {"batch_size": 600}
    )


def test_reproduce_tabulates_every_configuration_over_its_seeds(
    tmp_path, fake_mnist_root, small_presets, capsys
):
    parent, rows = reproduce(
        ["default", "3b1b"],
        [0, 1],
        ["manual", "autograd"],
        2,
        str(fake_mnist_root),
        False,
        str(tmp_path / "runs"),
        None,
    )
    assert parent.parent == tmp_path / "runs"
    runs = sorted(path for path in parent.iterdir() if path.is_dir())
    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    assert len(runs) == 2 * 2 * 2 and all(
        config["options"]["runs_dir"] == str(parent) for config in configs
    )
    assert all(any(f.name.startswith("events.out.tfevents") for f in run.iterdir()) for run in runs)
    assert {
        (c["options"]["run_name"], c["settings"]["seed"], c["settings"]["epochs"]) for c in configs
    } == {
        (f"{name}_{engine}_s{seed}", seed, 2)
        for name in ("default", "3b1b")
        for engine in ("manual", "autograd")
        for seed in (0, 1)
    }

    with (parent / "reproduce.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [(r["configuration"], r["engine"]) for r in table] == [
        ("default", "manual"),
        ("default", "autograd"),
        ("3b1b", "manual"),
        ("3b1b", "autograd"),
    ]
    for row, written in zip(rows, table):
        assert len(row.final) == 2 and float(written["test_accuracy_mean"]) == pytest.approx(
            statistics.mean(row.final)
        )
        assert (
            float(written["test_accuracy_min"])
            <= float(written["test_accuracy_mean"])
            <= float(written["test_accuracy_max"])
        )
        assert all(best >= final for best, final in zip(row.best, row.final))
    assert (
        table[2]["learning_rate"] == "3.0"
        and table[2]["cost"] == "nielsen"
        and table[2]["training_images"] == "500"
    )
    markdown = (parent / "reproduce.md").read_text()
    assert (
        markdown.count("\n") == 2 + 4 and markdown.count(presets.PUBLISHED["3b1b"]) == 2
    )  # both 3b1b rows


def test_full_batch_gd_gets_the_seconds_sgd_100_took(tmp_path, fake_mnist_root, small_presets):
    _, rows = reproduce(
        ["sgd-100", "full-batch-gd-same-time"],
        [0],
        ["manual"],
        3,
        str(fake_mnist_root),
        False,
        str(tmp_path / "runs"),
        None,
    )
    sgd, full = rows
    assert full.config.batch_size == 600 and full.time_budget == pytest.approx(sgd.sgd_seconds[0])
    assert full.sgd_seconds[0] >= full.time_budget and full.epochs[0] >= 1


def test_time_matched_run_needs_its_reference_first(tmp_path, fake_mnist_root, small_presets):
    with pytest.raises(GdTorchError, match="needs sgd-100 earlier"):
        reproduce(
            ["full-batch-gd-same-time", "sgd-100"],
            [0],
            ["manual"],
            1,
            str(fake_mnist_root),
            False,
            str(tmp_path / "runs"),
            None,
        )


def test_time_budget_stops_at_the_first_epoch_past_it(tmp_path):
    config = split(epochs=10_000, time_budget=0.05, batch_size=60, runs_dir=str(tmp_path))
    history = train(*config, data=synthetic_mnist(), out=None).history
    assert history[-1]["sgd_seconds"] >= 0.05 and (
        len(history) == 1 or history[-2]["sgd_seconds"] < 0.05
    )
    assert len(history) < 10_000


def test_reproduce_command_line(tmp_path, fake_mnist_root, capsys):
    main(
        [
            "reproduce",
            "--configurations",
            "default",
            "--seeds",
            "3",
            "--epochs",
            "1",
            "--data-root",
            str(fake_mnist_root),
            "--no-download",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    out = capsys.readouterr().out
    assert (
        "default manual seed 3: test accuracy" in out
        and "| default | manual | 784-16-16-10 | 1 |" in out
    )


@pytest.mark.parametrize(
    "arguments,problem",
    [
        (["--configurations", "nope"], "invalid choice: 'nope'"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--seeds", "-1"], "--seeds must be non-negative integers"),
    ],
)
def test_reproduce_refuses_bad_options_in_one_line(arguments, problem, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["reproduce", *arguments])
    assert problem in str(exit.value.code) + capsys.readouterr().err
