import argparse
import dataclasses

import pytest

from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import (
    RunOptions,
    TrainingSettings,
    add_arguments,
    describe,
    from_arguments,
    from_dict,
    to_dict,
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainingSettings)
    add_arguments(parser, RunOptions)
    return parser


def parse(*argv) -> tuple[TrainingSettings, RunOptions]:
    arguments = parser().parse_args(argv)
    return from_arguments(arguments, TrainingSettings), from_arguments(arguments, RunOptions)


def test_command_line_is_built_from_both_dataclasses():
    settings, options = parse(
        "--hidden-sizes",
        "30",
        "--batch-size",
        "20",
        "--learning-rate",
        "0.5",
        "--engine",
        "autograd",
        "--no-download",
        "--momentum",
        "0.9",
        "--nesterov",
        "--dtype",
        "float64",
        "--threads",
        "2",
    )
    assert settings.hidden_sizes == (30,) and settings.layer_sizes == (784, 30, 10)
    assert (settings.batch_size, settings.learning_rate, settings.engine) == (20, 0.5, "autograd")
    assert (settings.momentum, settings.nesterov, settings.dtype) == (0.9, True, "float64")
    assert (options.download, options.threads) == (False, 2)
    assert parse() == (TrainingSettings(), RunOptions())


def test_settings_decide_the_result_and_options_do_not():
    """The split the issue names: a resumed run may change any option and no setting."""
    settings = {f.name for f in dataclasses.fields(TrainingSettings)}
    options = {f.name for f in dataclasses.fields(RunOptions)}
    assert {
        "hidden_sizes",
        "init",
        "cost",
        "engine",
        "learning_rate",
        "momentum",
        "nesterov",
        "weight_decay",
        "weight_decay_on",
        "lr_schedule",
        "epochs",
        "batch_size",
        "seed",
        "validation_size",
        "dtype",
        "train_size",
        "label_noise",
        "data_seed",
    } == settings
    assert {
        "data_root",
        "download",
        "device",
        "threads",
        "compile",
        "runs_dir",
        "run_name",
        "log_every",
        "image_every",
        "checkpoint_every",
        "snapshot_every",
        "dry_run",
        "time_budget",
    } == options


def test_options_not_given_come_from_the_base():
    base = TrainingSettings(epochs=3, batch_size=7)
    settings = from_arguments(parser().parse_args(["--epochs", "5"]), TrainingSettings, base)
    assert (settings.epochs, settings.batch_size) == (5, 7)


def test_data_root_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("GD_TORCH_DATA", "/somewhere/mnist")
    assert RunOptions().data_root == "/somewhere/mnist"
    monkeypatch.delenv("GD_TORCH_DATA")
    assert RunOptions().data_root == "data"


def test_round_trip_through_a_plain_dict():
    settings = TrainingSettings(hidden_sizes=(4, 5), seed=3, lr_schedule="cosine", momentum=0.5)
    assert from_dict(TrainingSettings, to_dict(settings)) == settings
    assert from_dict(RunOptions, to_dict(RunOptions(log_every=7))) == RunOptions(log_every=7)
    with pytest.raises(GdTorchError, match="unknown TrainingSettings keys: colour"):
        from_dict(TrainingSettings, to_dict(settings) | {"colour": "red"})
    with pytest.raises(GdTorchError, match="TrainingSettings must be a dict, not list"):
        from_dict(TrainingSettings, [1, 2])


@pytest.mark.parametrize(
    "values,message",
    [
        ({"batch_size": 0}, "--batch-size must be a positive integer"),
        ({"epochs": -1}, "--epochs must be a positive integer"),
        ({"learning_rate": -0.1}, "--learning-rate must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "--learning-rate must be a finite number > 0"),
        ({"learning_rate": float("inf")}, "--learning-rate must be a finite number > 0"),
        ({"learning_rate": 1e39}, "(and within float32)"),
        ({"hidden_sizes": (16, 0)}, "--hidden-sizes must be positive integers"),
        ({"engine": "numpy"}, "--engine must be one of manual, autograd"),
        ({"cost": "hinge"}, "--cost must be one of quadratic, nielsen, mse, cross-entropy"),
        ({"weight_decay_on": "biases"}, "--weight-decay-on must be one of all, weights"),
        ({"label_noise": 1.5}, "--label-noise must be a fraction in [0, 1]"),
        ({"label_noise": -0.1}, "--label-noise must be a fraction in [0, 1]"),
        ({"label_noise": float("nan")}, "--label-noise must be a fraction in [0, 1]"),
        ({"train_size": -5}, "--train-size must be a non-negative integer"),
        ({"data_seed": -1}, "--data-seed must be an integer in 0 "),
        ({"weight_decay": -1.0}, "--weight-decay must be a finite number >= 0"),
        ({"momentum": 1.0}, "--momentum must be a number in [0, 1)"),
        ({"momentum": -0.1}, "--momentum must be a number in [0, 1)"),
        ({"nesterov": True}, "--nesterov must be given with --momentum > 0"),
        ({"dtype": "float16"}, "--dtype must be one of float32, float64"),
    ],
)
def test_invalid_settings_are_refused_with_the_option_name(values, message):
    with pytest.raises(
        GdTorchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        TrainingSettings(**values)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"threads": 0}, "--threads must be a positive integer"),
        ({"image_every": -1}, "--image-every must be a non-negative integer"),
        ({"run_name": "../up"}, "--run-name must be a plain name"),
        ({"time_budget": float("nan")}, "--time-budget must be a finite number of seconds >= 0"),
    ],
)
def test_invalid_options_are_refused_with_the_option_name(values, message):
    with pytest.raises(GdTorchError, match=message):
        RunOptions(**values)


def test_float64_allows_a_learning_rate_beyond_float32():
    assert TrainingSettings(learning_rate=1e39, dtype="float64").learning_rate == 1e39


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("constant", [2.0, 2.0, 2.0, 2.0]),
        ("linear", [2.0, 1.5, 1.0, 0.5]),
        ("cosine", [2.0, 1.7071, 1.0, 0.2929]),
    ],
)
def test_learning_rate_schedules(schedule, expected):
    settings = TrainingSettings(learning_rate=2.0, epochs=4, lr_schedule=schedule)
    assert [round(settings.learning_rate_at(epoch), 4) for epoch in range(1, 5)] == expected


def test_describe_lists_every_field_under_its_heading():
    text = describe(TrainingSettings(), RunOptions())
    settings_part, options_part = text.split("run options:")
    assert settings_part.startswith("training settings:") and "learning_rate" in settings_part
    assert (
        "(16, 16)" in settings_part
        and "data_root" in options_part
        and "data_root" not in settings_part
    )
