import argparse

import pytest

from gd_torch.config import TrainConfig, add_config_arguments, config_from_arguments
from gd_torch.errors import GdTorchError


def parse(*argv) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_arguments(parser.parse_args(argv))


def test_command_line_is_built_from_the_dataclass():
    config = parse("--hidden-sizes", "30", "--batch-size", "20", "--learning-rate", "0.5", "--engine", "autograd", "--no-download")
    assert config.hidden_sizes == (30,) and config.layer_sizes == (784, 30, 10)
    assert (config.batch_size, config.learning_rate, config.engine, config.download) == (20, 0.5, "autograd", False)
    assert parse().to_dict() == TrainConfig().to_dict()


def test_options_not_given_come_from_the_base_config():
    base = TrainConfig(epochs=3, batch_size=7)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_arguments(parser.parse_args(["--epochs", "5"]), base)
    assert (config.epochs, config.batch_size) == (5, 7)


def test_data_root_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("GD_TORCH_DATA", "/somewhere/mnist")
    assert TrainConfig().data_root == "/somewhere/mnist"
    monkeypatch.delenv("GD_TORCH_DATA")
    assert TrainConfig().data_root == "data"


def test_round_trip_through_a_plain_dict():
    config = TrainConfig(hidden_sizes=(4, 5), seed=3, lr_schedule="cosine")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(GdTorchError, match="unknown configuration keys: colour"):
        TrainConfig.from_dict(config.to_dict() | {"colour": "red"})


@pytest.mark.parametrize("values,message", [
    ({"batch_size": 0}, "--batch-size must be a positive integer"),
    ({"epochs": -1}, "--epochs must be a positive integer"),
    ({"learning_rate": -0.1}, "--learning-rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "--learning-rate must be a finite number > 0"),
    ({"learning_rate": float("inf")}, "--learning-rate must be a finite number > 0"),
    ({"hidden_sizes": (16, 0)}, "--hidden-sizes must be positive integers"),
    ({"engine": "numpy"}, "--engine must be one of manual, autograd"),
    ({"cost": "cross-entropy"}, "--cost must be one of quadratic, nielsen, mse"),
    ({"weight_decay": -1.0}, "--weight-decay must be a finite number >= 0"),
])
def test_invalid_settings_are_refused_with_the_option_name(values, message):
    with pytest.raises(GdTorchError, match=message):
        TrainConfig(**values)


@pytest.mark.parametrize("schedule,expected", [("constant", [2.0, 2.0, 2.0, 2.0]), ("linear", [2.0, 1.5, 1.0, 0.5]), ("cosine", [2.0, 1.7071, 1.0, 0.2929])])
def test_learning_rate_schedules(schedule, expected):
    config = TrainConfig(learning_rate=2.0, epochs=4, lr_schedule=schedule)
    assert [round(config.learning_rate_at(epoch), 4) for epoch in range(1, 5)] == expected


def test_describe_lists_every_field():
    text = TrainConfig().describe()
    assert "hidden_sizes" in text and "learning_rate" in text and "(16, 16)" in text
