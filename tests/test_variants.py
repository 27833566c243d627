"""The variants of gd-torch compare: options as typed, or a TOML/JSON file; mistakes named."""

import json

import pytest

from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import TrainingSettings
from gd_torch.tools.variants import check_distinct, from_file, from_options

BASELINE = TrainingSettings(epochs=2)


def test_options_as_typed_change_the_baseline():
    variant = from_options("--momentum 0.9   --learning-rate=0.3 --nesterov", BASELINE)
    assert variant.name == "--momentum 0.9 --learning-rate=0.3 --nesterov"
    assert variant.changes == {"momentum": 0.9, "learning_rate": 0.3, "nesterov": True}
    assert variant.settings == TrainingSettings(
        epochs=2, momentum=0.9, learning_rate=0.3, nesterov=True
    )
    assert variant.describe() == "--momentum 0.9 --learning-rate 0.3 --nesterov"
    wider = from_options("--hidden-sizes 30 30 --cost cross-entropy", BASELINE)
    assert wider.settings.hidden_sizes == (30, 30) and wider.settings.cost == "cross-entropy"


def test_a_file_holds_named_variants(tmp_path):
    toml = tmp_path / "variants.toml"
    toml.write_text(
        '[cross-entropy]\ncost = "cross-entropy"\n\n'
        "[momentum]\nmomentum = 0.9\nlearning-rate = 0.3\n\n"
        '[wide]\nhidden_sizes = [30]\nweight_decay_on = "weights"\n'
    )
    variants = from_file(toml, BASELINE)
    assert [v.name for v in variants] == ["cross-entropy", "momentum", "wide"]
    assert variants[1].settings.learning_rate == 0.3 and variants[1].settings.momentum == 0.9
    assert variants[2].settings.hidden_sizes == (30,)
    as_json = tmp_path / "variants.json"
    as_json.write_text(json.dumps({"momentum": {"momentum": 0.9, "learning_rate": 0.3}}))
    assert from_file(as_json, BASELINE)[0].settings == variants[1].settings


@pytest.mark.parametrize(
    "text, message",
    [
        ("--cots cross-entropy", "unknown option --cots"),
        ("--lr 0.3", "unknown option --lr"),  # no abbreviations
        ("--cost hinge", "argument --cost: invalid choice: 'hinge'"),
        ("--learning-rate fast", "argument --learning-rate: invalid float value: 'fast'"),
        ("--cost cross-entropy --cost quadratic", "--cost is given more than once"),
        ("--nesterov --no-nesterov --momentum 0.5", "--nesterov is given more than once"),
        ("--nesterov", "--nesterov must be given with --momentum > 0"),
        ("--momentum 1.5", "--momentum must be a number in [0, 1)"),
        ("--seed 3", "--seed cannot change in a variant"),
        ("--compile", "--compile is a run option, not a training setting"),
        ("--no-download", "--no-download is a run option"),
        ("--epochs 2", "is the baseline itself"),
        ("--cost quadratic", "is the baseline itself"),
        ("", "changes no setting"),
        ('--cost "cross', "No closing quotation"),
    ],
)
def test_mistakes_in_a_variant_are_named_in_one_line(text, message):
    with pytest.raises(GdTorchError) as error:
        from_options(text, BASELINE)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith('--variant "')


@pytest.mark.parametrize(
    "content, message",
    [
        ('[a]\ncolour = "red"\n', "colour is not a training setting"),
        ("[a]\nthreads = 2\n", "threads is a run option, not a training setting"),
        ("[a]\nseed = 2\n", "--seed cannot change in a variant"),
        ('[a]\nlearning_rate = "fast"\n', "--learning-rate must be a finite number"),
        (
            "[a]\nlearning_rate = 0.3\nlearning-rate = 0.4\n",
            "learning-rate is given more than once",
        ),
        ("[a]\nepochs = 2\n", "is the baseline itself"),
        ("a = 3\n", "must be a table of settings"),
        ("", "holds no variants"),
        ("[a\n", "is not valid TOML"),
    ],
)
def test_mistakes_in_a_variants_file_are_named(tmp_path, content, message):
    path = tmp_path / "variants.toml"
    path.write_text(content)
    with pytest.raises(GdTorchError, match=message.replace("[", r"\[")):
        from_file(path, BASELINE)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(GdTorchError, match="cannot read it"):
        from_file(tmp_path / "nowhere.toml", BASELINE)


def test_two_variants_with_the_same_settings_or_name_are_refused(tmp_path):
    one = from_options("--momentum 0.9", BASELINE)
    same = from_options("--momentum=0.9", BASELINE)
    with pytest.raises(GdTorchError, match="are the same settings"):
        check_distinct([one, same])
    with pytest.raises(GdTorchError, match="two variants are named"):
        check_distinct([one, from_options("--momentum 0.9", TrainingSettings())])
    check_distinct([one, from_options("--momentum 0.5", BASELINE)])
