"""Checkpoints: atomic, complete, safe to load, kept as last.pt and best.pt."""

import errno
import io
import os

import pytest
import torch

import gd_torch.core.loop
from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import mark_run_directory
from gd_torch.core.resume import load_resumable
from gd_torch.core.settings import RunOptions, TrainingSettings, from_dict
from tests.configs import split
from tests.fakes import synthetic_mnist


def run(data, **values):
    settings, options = split(**values)
    return train(settings, options, data=data, out=io.StringIO())


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def test_save_replaces_atomically_and_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    mark_run_directory(tmp_path)  # replacing is allowed only in a run directory
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def disk_full(descriptor):  # the bytes were written; the disk refuses to keep them
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as error:
        save_checkpoint(path, {"epoch": 2})
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gd_torch-run", "last.pt"]


def test_checkpoint_holds_everything_a_resume_needs(tmp_path, data):
    run = train(
        TrainingSettings(epochs=2),
        RunOptions(runs_dir=str(tmp_path), log_every=7),
        data=data,
        out=io.StringIO(),
    )
    state = load_checkpoint(run.run_dir / "last.pt")
    assert (state["format"], state["epoch"], state["step"], state["batches_done"]) == (2, 2, 120, 0)
    assert (
        from_dict(TrainingSettings, state["settings"]).epochs == 2
    )  # labelled: settings and options apart
    assert from_dict(RunOptions, state["options"]).log_every == 7
    assert (
        state["torch_rng_state"].dtype == torch.uint8
        and state["batch_order_state"].dtype == torch.uint8
    )
    assert [epoch["epoch"] for epoch in state["history"]] == [1, 2]
    assert state["best_by"] == "test_accuracy" and state["optimizer_class"] == "SGD"
    assert state["best_accuracy"] == max(epoch["test_accuracy"] for epoch in run.history)
    for name, tensor in run.network.state_dict().items():
        assert torch.equal(state["model"][name], tensor)


def test_best_checkpoint_is_the_epoch_with_the_best_test_accuracy(tmp_path, data):
    # η = 15 overshoots: the test accuracy goes up and down from epoch to epoch
    result = run(
        data,
        epochs=4,
        learning_rate=15.0,
        lr_schedule="constant",
        weight_decay=0.0,
        runs_dir=str(tmp_path),
    )
    accuracies = [epoch["test_accuracy"] for epoch in result.history]
    best_epoch = (
        max(range(len(accuracies)), key=lambda i: (accuracies[i], i)) + 1
    )  # the latest of equals
    assert best_epoch < len(accuracies), "this test needs a run whose best epoch is not its last"
    best = load_checkpoint(result.run_dir / "best.pt")
    assert best["epoch"] == best_epoch and best["history"][-1]["test_accuracy"] == max(accuracies)
    assert best["best_by"] == "test_accuracy"


def test_best_checkpoint_is_chosen_on_validation_accuracy_when_there_is_a_validation_set(
    tmp_path, data
):
    """A validation set whose labels are shifted by one: the better the network gets on the test
    digits, the worse it does on these, so the two choose different epochs."""
    from gd_torch.core.data import Mnist, Split

    held_out = data.train[500:]
    shifted = Split(held_out.images, (held_out.labels + 1) % 10, held_out.pixels)
    result = run(
        Mnist(data.train[:500], data.test, shifted),
        epochs=4,
        validation_size=100,
        runs_dir=str(tmp_path),
    )
    validation = [epoch["validation_accuracy"] for epoch in result.history]
    test = [epoch["test_accuracy"] for epoch in result.history]
    best_epoch = max(range(len(validation)), key=lambda i: (validation[i], i)) + 1
    test_best_epoch = max(range(len(test)), key=lambda i: (test[i], i)) + 1
    assert best_epoch != test_best_epoch, "this test needs a run whose validation and test disagree"
    best = load_checkpoint(result.run_dir / "best.pt")
    assert (best["epoch"], best["best_by"]) == (best_epoch, "validation_accuracy")
    assert best["best_accuracy"] == max(validation) == result.best_accuracy


def test_a_checkpoint_of_the_format_before_the_settings_split_still_loads_and_resumes(
    tmp_path, data
):
    """Format 1 had one flat "config" and "best_test_accuracy"; it loads as today's format."""
    settings, options = split(epochs=2, lr_schedule="cosine", runs_dir=str(tmp_path / "runs"))
    whole = train(settings, options, data=data, out=io.StringIO())
    state = load_checkpoint(whole.run_dir / "last.pt")
    first = (
        load_checkpoint(whole.run_dir / "best.pt")
        if whole.history[0]["test_accuracy"] >= whole.history[1]["test_accuracy"]
        else None
    )
    old = {
        key: value
        for key, value in state.items()
        if key
        not in ("format", "settings", "options", "best_by", "best_accuracy", "optimizer_class")
    }
    old["config"] = state["settings"] | state["options"]
    old["best_test_accuracy"] = state["best_accuracy"]
    for group in old["optimizer"]["param_groups"]:
        del group["initial_lr"]  # format 1 had none
    torch.save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["settings"] == state["settings"] and loaded["options"] == state["options"]
    assert (
        loaded["best_accuracy"] == state["best_accuracy"] and loaded["best_by"] == "test_accuracy"
    )
    network, _ = network_from_checkpoint(loaded)
    assert all(torch.equal(a, b) for a, b in zip(network.parameters(), whole.network.parameters()))
    assert loaded["optimizer"]["param_groups"][0]["initial_lr"] == settings.learning_rate
    assert first is None or first["epoch"] == 1
    with pytest.raises(GdTorchError, match="already finished its 2 epochs"):
        load_resumable(tmp_path / "old.pt", settings, options)


def test_a_checkpoint_of_an_unknown_format_is_refused_in_one_line(tmp_path):
    torch.save(
        {
            "format": 99,
            "model": {},
            "optimizer": {},
            "settings": {},
            "options": {},
            "epoch": 0,
            "step": 0,
        },
        tmp_path / "future.pt",
    )
    with pytest.raises(
        GdTorchError, match="has checkpoint format 99; this gd_torch reads format 2"
    ):
        load_checkpoint(tmp_path / "future.pt")


def test_last_checkpoint_is_written_every_checkpoint_every_epochs_and_at_the_end(
    tmp_path, data, monkeypatch
):
    written = []
    save = gd_torch.core.loop.save_checkpoint
    monkeypatch.setattr(
        gd_torch.core.loop,
        "save_checkpoint",
        lambda path, state: written.append((path.name, state["epoch"])) or save(path, state),
    )
    run(data, epochs=5, checkpoint_every=2, runs_dir=str(tmp_path))
    assert [epoch for name, epoch in written if name == "last.pt"] == [2, 4, 5]


class NotATensor:
    pass


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not a readable checkpoint"),
        (b"PK\x03\x04 truncated zip", "is not a readable checkpoint"),
    ],
)
def test_load_refuses_what_is_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(GdTorchError, match=message):
        load_checkpoint(path)


def test_load_refuses_arbitrary_objects_and_dicts_missing_keys(tmp_path):
    torch.save(
        {
            "model": NotATensor(),
            "optimizer": {},
            "settings": {},
            "options": {},
            "epoch": 0,
            "step": 0,
        },
        tmp_path / "object.pt",
    )
    with pytest.raises(
        GdTorchError, match="is not a readable checkpoint"
    ):  # weights_only=True never unpickles a class
        load_checkpoint(tmp_path / "object.pt")
    torch.save({"model": {}, "epoch": 1}, tmp_path / "partial.pt")
    with pytest.raises(GdTorchError, match="missing optimizer, settings, options, step"):
        load_checkpoint(tmp_path / "partial.pt")
