"""Continuing a run from a checkpoint, in its own run directory, as if it had never stopped.

    gd-torch train --resume runs/<run>                  # from runs/<run>/last.pt
    gd-torch train --resume runs/<run> --epochs 60      # train a finished run further (constant η only)

A checkpoint holds everything the next SGD step depends on: the weights and biases, the
optimizer, the batch-order generator from which the next (or the interrupted) epoch's order
is drawn, how many of that epoch's batches were done, and torch's global RNG. The learning
rate needs nothing saved: it is a pure function of the epoch (``TrainConfig.learning_rate_at``).
So on the CPU a resumed run ends with the same weights, bit for bit, as the run uninterrupted.

Only options that cannot change what is computed may differ from the run's own (``MAY_CHANGE``),
and --epochs, unless the learning-rate schedule depends on it.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gd_torch.checkpoint import load_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.errors import GdTorchError
from gd_torch.model import Network

RESUME_KEYS = ("batch_order_state", "batches_done", "torch_rng_state", "best_test_accuracy", "history")
MAY_CHANGE = ("epochs", "data_root", "download", "device", "threads", "compile", "log_every", "checkpoint_every", "image_every")


@dataclass
class Progress:
    """How far a run has come: where its epoch loop starts."""

    epoch: int = 0  # epochs finished
    step: int = 0  # SGD steps taken
    batches_done: int = 0  # of epoch + 1, when it was stopped mid-epoch
    best_test_accuracy: float = 0.0
    history: list[dict] = field(default_factory=list)


def checkpoint_path(run_dir_or_checkpoint: str | Path) -> Path:
    """A run directory means its last.pt."""
    path = Path(run_dir_or_checkpoint)
    return path / "last.pt" if path.is_dir() else path


def saved_config(run_dir_or_checkpoint: str | Path) -> TrainConfig:
    """The configuration the run was started with: what ``--resume`` continues with, unless told otherwise."""
    path = checkpoint_path(run_dir_or_checkpoint)
    return _config_of(load_checkpoint(path), path)


def _config_of(state: dict, path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (GdTorchError, TypeError) as error:
        raise GdTorchError(f"{path} holds a configuration this gd_torch cannot use ({error})") from None


def load_resumable(run_dir_or_checkpoint: str | Path, config: TrainConfig) -> tuple[Path, dict]:
    """(run directory, checkpoint), refusing a checkpoint that ``config`` cannot continue."""
    path = checkpoint_path(run_dir_or_checkpoint)
    state = load_checkpoint(path)
    saved = _config_of(state, path)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise GdTorchError(f"cannot resume from {path}: it lacks {', '.join(missing)} (written by an older gd_torch?)")
    for f in dataclasses.fields(TrainConfig):
        given, own = getattr(config, f.name), getattr(saved, f.name)
        if given != own and f.name not in MAY_CHANGE:
            raise GdTorchError(f"--{f.name.replace('_', '-')} {given} differs from the {own} the run in {path.parent} was started with: "
                               "a resumed run keeps its training settings (start a new run to change them)")
    if config.epochs != saved.epochs and config.lr_schedule != "constant":
        raise GdTorchError(f"--epochs cannot change when resuming a run with --lr-schedule {config.lr_schedule}: "
                           f"its learning rate depends on the number of epochs ({saved.epochs})")
    if state["epoch"] >= (1 if config.dry_run else config.epochs):
        raise GdTorchError(f"the run in {path.parent} has already finished its {state['epoch']} epochs: give --epochs N larger than that to train on")
    return path.parent, state


def restore(state: dict, network: Network, optimizer: torch.optim.Optimizer, order: torch.Generator) -> Progress:
    """Put the checkpoint's weights, optimizer and RNG states back in place; returns how far the run had come."""
    try:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["batch_order_state"])
        torch.set_rng_state(state["torch_rng_state"])
    except (RuntimeError, ValueError, TypeError) as error:
        raise GdTorchError(f"the checkpoint does not fit its own configuration: {str(error).splitlines()[0]}") from None
    return Progress(state["epoch"], state["step"], state["batches_done"], state["best_test_accuracy"], state["history"])
