"""--train-size and --label-noise: a seeded subset and seeded random labels, where the data is
prepared, for MNIST from its files and for data passed from Python alike."""

import dataclasses
import io

import pytest
import torch

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.data import Mnist, Split
from gd_torch.core.errors import GdTorchError
from gd_torch.core.loop import prepare_data
from gd_torch.core.presets import preset_settings
from gd_torch.core.training_set import training_set
from tests.configs import split
from tests.fakes import synthetic_mnist

DATA = synthetic_mnist(train_count=600, test_count=200)


def prepared(**values) -> Mnist:
    settings, options = split(runs_dir=None, **values)
    return prepare_data(settings, options, torch.device("cpu"), DATA)


def rows_of(subset: Split, full: Split) -> list[int]:
    """Which rows of ``full`` the images of ``subset`` are (every synthetic image is unique)."""
    flat = full.pixels.long()
    return [int((flat == row.long()).all(dim=1).nonzero()) for row in subset.pixels]


def test_defaults_change_nothing():
    data = prepared()
    assert torch.equal(data.train.labels, DATA.train.labels)
    assert torch.equal(data.train.images, DATA.train.images)


def test_train_size_is_a_seeded_subset_in_the_original_order():
    data = prepared(train_size=100)
    rows = rows_of(data.train, DATA.train)
    assert len(rows) == len(set(rows)) == 100 and rows == sorted(rows)
    assert rows != list(range(100))  # drawn at random, not the first 100
    assert torch.equal(data.train.labels, DATA.train.labels[rows])  # images keep their labels
    assert torch.equal(data.test.images, DATA.test.images)  # the test set is untouched
    assert rows_of(prepared(train_size=100).train, DATA.train) == rows  # the same seed, the same
    other = rows_of(prepared(train_size=100, data_seed=1).train, DATA.train)
    assert other != rows
    assert set(rows) < set(rows_of(prepared(train_size=300).train, DATA.train))  # nested


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_label_noise_replaces_that_fraction_of_the_labels_by_random_digits(fraction):
    noisy = prepared(label_noise=fraction).train
    replaced = round(fraction * len(DATA.train))
    changed = (noisy.labels != DATA.train.labels).sum().item()
    # a replaced label keeps its digit with probability 1/10: about 90% of them change
    assert 0.8 * 0.9 * replaced <= changed <= replaced
    assert torch.equal(noisy.images, DATA.train.images)
    assert torch.equal(noisy.targets, torch.nn.functional.one_hot(noisy.labels, 10).float())
    if fraction == 1.0:  # every digit about equally often, whatever the image
        counts = torch.bincount(noisy.labels, minlength=10)
        assert counts.min() > 30 and counts.max() < 90


def test_label_noise_is_seeded_and_nested():
    half, full = prepared(label_noise=0.5).train.labels, prepared(label_noise=1.0).train.labels
    assert torch.equal(half, prepared(label_noise=0.5).train.labels)
    assert not torch.equal(half, prepared(label_noise=0.5, data_seed=7).train.labels)
    moved = half != DATA.train.labels
    assert torch.equal(half[moved], full[moved])  # F = 1 randomises what F = 0.5 did, and more


def test_the_validation_set_keeps_its_true_labels():
    held_out = Mnist(DATA.train[:500], DATA.test, DATA.train[500:])
    settings, options = split(runs_dir=None, validation_size=100, label_noise=1.0, train_size=50)
    data = prepare_data(settings, options, torch.device("cpu"), held_out)
    assert len(data.train) == 50
    assert torch.equal(data.validation.labels, DATA.train.labels[500:])


def test_a_subset_larger_than_the_training_set_is_refused():
    with pytest.raises(GdTorchError, match="--train-size 601 is more than the 600 training images"):
        prepared(train_size=601)
    with pytest.raises(GdTorchError, match="--batch-size 20 is larger than the 10 training"):
        prepared(train_size=10, batch_size=20)


def test_training_set_alone_leaves_its_input_untouched():
    before = DATA.train.labels.clone()
    training_set(DATA.train, preset_settings("random-labels", train_size=50))
    assert torch.equal(DATA.train.labels, before)


def test_random_labels_are_memorised_not_generalised():
    """The preset's experiment on 100 synthetic digits (learnable in a few epochs with their true
    labels). Each synthetic digit class is one band, so with random labels the test accuracy is
    that of a random map from the bands to the digits, around 10% but wide on 200 test digits."""
    settings = preset_settings("random-labels", train_size=100, learning_rate=3.0, epochs=100)
    options = split(runs_dir=None)[1]
    history = train(settings, options, data=DATA, out=io.StringIO()).history
    assert history[0]["train_accuracy"] < 0.3 < 0.5 < history[-1]["train_accuracy"]
    assert history[-1]["test_accuracy"] < 0.3
    true_labels = dataclasses.replace(settings, label_noise=0.0)
    assert train(true_labels, options, data=DATA, out=io.StringIO()).final["test_accuracy"] > 0.9


def test_from_the_command_line_the_checkpoint_records_the_data_settings(tmp_path, fake_mnist_root):
    settings = ["--train-size", "120", "--label-noise", "0.5", "--data-seed", "3", "--epochs", "1"]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    main(["train", *settings, "--data-root", str(fake_mnist_root), "--no-download", *runs])
    (run,) = (tmp_path / "runs").iterdir()
    saved = load_checkpoint(run / "last.pt")["settings"]
    assert (saved["train_size"], saved["label_noise"], saved["data_seed"]) == (120, 0.5, 3)
