"""Checkpoints: atomic, complete, safe to load, kept as last.pt and best.pt."""

import errno
import io
import os
from pathlib import Path

import pytest
import torch

import gd_torch.core.loop
from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import mark_run_directory
from gd_torch.core.resume import load_resumable
from gd_torch.core.run_dir import create_run_directory
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
        lambda path, state, also=(): (
            written.extend((name.name, state["epoch"]) for name in (path, *also))
            or save(path, state, also)
        ),
    )
    result = run(data, epochs=5, checkpoint_every=2, runs_dir=str(tmp_path))
    assert [epoch for name, epoch in written if name == "last.pt"] == [2, 4, 5]
    best = [epoch for name, epoch in written if name == "best.pt"]
    accuracy = [entry["test_accuracy"] for entry in result.history]
    improved = [i + 1 for i in range(5) if accuracy[i] >= max(accuracy[: i + 1])]
    assert best == improved
    both = (result.run_dir / "last.pt", result.run_dir / "best.pt")
    assert (both[0].stat().st_ino == both[1].stat().st_ino) == (best[-1] == 5)


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


@pytest.fixture(scope="module")
def two_epochs(data, tmp_path_factory) -> Path:
    """last.pt of a finished 2-epoch run, for the tests to edit copies of."""
    return run(data, epochs=2, runs_dir=str(tmp_path_factory.mktemp("runs"))).run_dir / "last.pt"


class RunsCode:
    """Unpickling this would run a shell command: what a malicious checkpoint holds."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/gd_torch-was-run",))


def _edit(state: dict, path: str, value) -> dict:
    """Set state[a][b]... = value for path "a/b"; a value of _DELETE removes the key."""
    *parents, key = path.split("/")
    target = state
    for name in parents:
        target = target[int(name) if isinstance(target, list) else name]
    if value is _DELETE:
        del target[key]
    else:
        target[int(key) if isinstance(target, list) else key] = value
    return state


_DELETE = object()
EDITS = [  # (what is edited, its new value, what the message says)
    ("epoch", -4, "its epoch is -4, not a whole number of epochs in 0..2"),
    ("epoch", 7, "its epoch is 7, not a whole number of epochs in 0..2"),
    ("epoch", 1.5, "its epoch is 1.5"),
    ("step", 1, "its step is 1, but 2 epochs and 0 batches take at least 2 SGD steps"),
    ("batches_done", -1, "its batches_done is -1"),
    ("settings/hidden_sizes", 16, "holds settings this gd_torch cannot use"),
    ("settings/hidden_sizes", [10**12, 16], "but its settings' 784-1000000000000-16-10 network"),
    ("settings/epochs", "2", "--epochs must be a positive integer"),
    ("options/data_root", 5, "--data-root must be a folder name"),
    ("settings", [1, 2], "TrainingSettings must be a dict"),
    ("model", "weights", "its model is a str, not a dict of tensors"),
    ("model/layers.0.weight", _DELETE, "its model holds"),
    ("model/layers.0.weight", torch.zeros(3, 3), "its model's layers.0.weight is (3, 3)"),
    ("model/layers.2.bias", torch.full((10,), float("nan")), "values that are not finite"),
    ("model/layers.1.bias", torch.zeros(16, dtype=torch.int64), "not a tensor of floating-point"),
    ("optimizer/param_groups", _DELETE, "its optimizer is not a torch.optim state_dict"),
    ("optimizer/param_groups/0/lr", float("inf"), "has the learning rate inf"),
    ("optimizer/param_groups/0/params", [0, 1], "not the network's 6 tensors"),
    ("batch_order_state", torch.zeros(3), "its batch_order_state is not the 5056-byte state"),
    ("best_by", "validation_accuracy", "its best_by is 'validation_accuracy' for"),
    ("best_accuracy", 3.0, "its best_accuracy is 3.0, not a fraction"),
    ("history", [], "its history does not hold one entry for each of its 2 epochs"),
    ("history/1/test_accuracy", "high", "entry 2 of its history lacks a metric or holds a non-"),
]


@pytest.mark.parametrize(
    "path, value, message", EDITS, ids=[f"{p}={v!r}"[:40] for p, v, _ in EDITS]
)
def test_an_edited_checkpoint_is_refused_naming_the_file_and_what_is_wrong(
    tmp_path, two_epochs, path, value, message
):
    state = torch.load(two_epochs, weights_only=True)
    torch.save(_edit(state, path, value), tmp_path / "edited.pt")
    with pytest.raises(GdTorchError) as error:
        load_checkpoint(tmp_path / "edited.pt")
    assert message in str(error.value) and "edited.pt" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_checkpoint_that_would_run_code_is_refused_without_advice_to_load_it_unsafely(tmp_path):
    torch.save({"model": RunsCode(), "epoch": 0}, tmp_path / "malicious.pt")
    with pytest.raises(GdTorchError) as error:
        load_checkpoint(tmp_path / "malicious.pt")
    message = str(error.value)
    assert "malicious.pt is not a readable checkpoint" in message and "never unpickles" in message
    assert "weights_only" not in message and "trust" not in message
    assert not os.path.exists("/tmp/gd_torch-was-run")


@pytest.mark.parametrize("command", ["eval", "predict", "analyze", "train --resume"])
def test_every_command_that_reads_a_checkpoint_refuses_an_edited_one_in_one_line(
    tmp_path, two_epochs, command, capsys
):
    from gd_torch.cli import main
    from tests.test_handwriting import draw

    state = torch.load(two_epochs, weights_only=True)
    run_dir = create_run_directory(tmp_path, "edited")
    torch.save(_edit(state, "settings/hidden_sizes", 16), run_dir / "edited.pt")
    draw("1", (40, 40), (10, 5, 30, 35), 5, True).save(tmp_path / "one.png")
    arguments = {
        "eval": ["eval", str(run_dir / "edited.pt")],
        "predict": ["predict", str(run_dir / "edited.pt"), str(tmp_path / "one.png")],
        "analyze": ["analyze", str(run_dir / "edited.pt")],
        "train --resume": ["train", "--resume", str(run_dir / "edited.pt")],
    }[command]
    with pytest.raises(SystemExit) as exit:
        main(arguments)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "edited.pt holds settings this gd_torch cannot use" in err
