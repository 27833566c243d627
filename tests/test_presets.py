"""Named presets: the published settings, and the command line that starts from them."""

import json

import pytest

from gd_torch.cli import main
from gd_torch.core.cost import COST_SCALES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.presets import preset_settings
from gd_torch.core.settings import RunOptions, to_dict


def test_3b1b_is_nielsens_network_py_on_784_16_16_10():
    config = preset_settings("3b1b")
    assert config.layer_sizes == (784, 16, 16, 10)
    assert (config.init, config.batch_size, config.epochs, config.validation_size) == (
        "nielsen",
        10,
        30,
        10_000,
    )
    assert (config.learning_rate, config.cost) == (3.0, "nielsen")
    assert (config.lr_schedule, config.weight_decay) == ("constant", 0.0)
    # η = 3.0 with Nielsen's ½ takes the steps of η = 1.5 in the quadratic convention
    assert config.learning_rate * COST_SCALES[config.cost] == 1.5 * COST_SCALES["quadratic"]


@pytest.mark.parametrize("name,hidden", [("nielsen-30", (30,)), ("nielsen-100", (100,))])
def test_nielsen_chapter_1_networks_differ_from_3b1b_only_in_the_hidden_layer(name, hidden):
    assert preset_settings(name) == preset_settings("3b1b", hidden_sizes=hidden)


def test_full_batch_gd_and_sgd_100_differ_only_in_the_batch():
    full, sgd = to_dict(preset_settings("full-batch-gd")), to_dict(preset_settings("sgd-100"))
    assert (
        full.pop("batch_size") == 60_000 - full["validation_size"]
    )  # every training image, every step
    assert sgd.pop("batch_size") == 100
    assert full == sgd


def test_overrides_win_and_unknown_presets_are_refused():
    assert preset_settings("nielsen-30", epochs=2).epochs == 2
    with pytest.raises(GdTorchError, match="unknown preset 'nope'"):
        preset_settings("nope")


def test_train_preset_from_the_command_line_with_options_over_it(tmp_path, fake_mnist_root):
    main(
        [
            "train",
            "--preset",
            "nielsen-30",
            "--epochs",
            "2",
            "--validation-size",
            "100",
            "--data-root",
            str(fake_mnist_root),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-download",
        ]
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "config.json").read_text())
    settings = preset_settings("nielsen-30", epochs=2, validation_size=100)
    options = RunOptions(
        data_root=str(fake_mnist_root), runs_dir=str(tmp_path / "runs"), download=False
    )
    assert saved == json.loads(
        json.dumps({"settings": to_dict(settings), "options": to_dict(options)})
    )


def test_unknown_preset_on_the_command_line_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--preset", "nope"])
    assert exit.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
