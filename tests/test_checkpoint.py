"""Checkpoints: atomic, complete, safe to load, kept as last.pt and best.pt."""

import io

import pytest
import torch

import gd_torch.train
from gd_torch.checkpoint import load_checkpoint, save_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.errors import GdTorchError
from gd_torch.train import train
from tests.fakes import synthetic_mnist


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist(600, 200)


def test_save_replaces_atomically_and_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def half_written_then_disk_full(state, file):
        open(file, "wb").write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written_then_disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoint_holds_everything_a_resume_needs(tmp_path, data):
    run = train(TrainConfig(epochs=2, runs_dir=str(tmp_path)), data, out=io.StringIO())
    state = load_checkpoint(run.run_dir / "last.pt")
    assert (state["epoch"], state["step"], state["batches_done"]) == (2, 120, 0)
    assert TrainConfig.from_dict(state["config"]).epochs == 2
    assert state["torch_rng_state"].dtype == torch.uint8 and state["batch_order_state"].dtype == torch.uint8
    assert [epoch["epoch"] for epoch in state["history"]] == [1, 2]
    assert state["best_test_accuracy"] == max(epoch["test_accuracy"] for epoch in run.history)
    for name, tensor in run.network.state_dict().items():
        assert torch.equal(state["model"][name], tensor)


def test_best_checkpoint_is_the_epoch_with_the_best_test_accuracy(tmp_path, data):
    # η = 15 overshoots: the test accuracy goes up and down from epoch to epoch
    config = TrainConfig(epochs=4, learning_rate=15.0, lr_schedule="constant", weight_decay=0.0, runs_dir=str(tmp_path))
    run = train(config, data, out=io.StringIO())
    accuracies = [epoch["test_accuracy"] for epoch in run.history]
    best_epoch = max(range(len(accuracies)), key=lambda i: (accuracies[i], i)) + 1  # the latest of equals
    assert best_epoch < len(accuracies), "this test needs a run whose best epoch is not its last"
    best = load_checkpoint(run.run_dir / "best.pt")
    assert best["epoch"] == best_epoch and best["history"][-1]["test_accuracy"] == max(accuracies)


def test_last_checkpoint_is_written_every_checkpoint_every_epochs_and_at_the_end(tmp_path, data, monkeypatch):
    written = []
    save = gd_torch.train.save_checkpoint
    monkeypatch.setattr(gd_torch.train, "save_checkpoint", lambda path, state: written.append((path.name, state["epoch"])) or save(path, state))
    train(TrainConfig(epochs=5, checkpoint_every=2, runs_dir=str(tmp_path)), data, out=io.StringIO())
    assert [epoch for name, epoch in written if name == "last.pt"] == [2, 4, 5]


class NotATensor:
    pass


@pytest.mark.parametrize("content, message", [
    (b"", "is not a readable checkpoint"),
    (b"PK\x03\x04 truncated zip", "is not a readable checkpoint"),
])
def test_load_refuses_what_is_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(GdTorchError, match=message):
        load_checkpoint(path)


def test_load_refuses_arbitrary_objects_and_dicts_missing_keys(tmp_path):
    torch.save({"model": NotATensor(), "optimizer": {}, "config": {}, "epoch": 0, "step": 0}, tmp_path / "object.pt")
    with pytest.raises(GdTorchError, match="is not a readable checkpoint"):  # weights_only=True never unpickles a class
        load_checkpoint(tmp_path / "object.pt")
    torch.save({"model": {}, "epoch": 1}, tmp_path / "partial.pt")
    with pytest.raises(GdTorchError, match="missing optimizer, config, step"):
        load_checkpoint(tmp_path / "partial.pt")
