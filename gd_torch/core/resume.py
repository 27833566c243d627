"""Continuing a run from a checkpoint, in its own run directory, as if it had never stopped.

    gd-torch train --resume runs/<run>                    # from runs/<run>/last.pt
    gd-torch train --resume runs/<run> --compile          # run options may change

A checkpoint holds everything the next SGD step depends on: the weights and biases, the
optimizer, the batch-order generator from which the next (or the interrupted) epoch's order
is drawn, how many of that epoch's batches were done, and torch's global RNG. The learning
rate needs nothing saved: it is a pure function of the epoch. So on the CPU a resumed run ends
with the same weights, bit for bit, as the run uninterrupted.

The training settings decide the result, so a resumed run keeps them all (as nanoGPT forces
its model arguments from the checkpoint); any run option may change. To train a finished run
further, start a new run: its result would not be the one its settings describe.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from gd_torch.core.checkpoint import load_checkpoint, settings_of
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings, changed

RESUME_KEYS = ("batch_order_state", "batches_done", "torch_rng_state", "best_accuracy", "history")
UPDATE_METHOD = ("foreach", "fused")  # how the optimizer computes its step: this run's choice


@dataclass
class Progress:
    """How far a run has come: where its epoch loop starts."""

    epoch: int = 0  # epochs finished
    step: int = 0  # SGD steps taken
    batches_done: int = 0  # of epoch + 1, when it was stopped mid-epoch
    best_accuracy: float = 0.0
    history: list[dict] = field(default_factory=list)


def checkpoint_path(run_dir_or_checkpoint: str | Path) -> Path:
    """A run directory means its last.pt."""
    path = Path(run_dir_or_checkpoint)
    return path / "last.pt" if path.is_dir() else path


def run_directory_to_resume(run_dir_or_checkpoint: str | Path) -> Path:
    """The run directory a resume writes into: the checkpoint's folder."""
    path = checkpoint_path(run_dir_or_checkpoint)
    if not path.is_file():
        raise GdTorchError(f"checkpoint {path} not found")
    return path.parent


def saved_settings(run_dir_or_checkpoint: str | Path) -> tuple[TrainingSettings, RunOptions]:
    """What the run was started with: what ``--resume`` continues with, unless told otherwise."""
    path = checkpoint_path(run_dir_or_checkpoint)
    return settings_of(load_checkpoint(path), path)


def load_resumable(
    run_dir_or_checkpoint: str | Path, settings: TrainingSettings, options: RunOptions
) -> tuple[Path, dict]:
    """(run directory, checkpoint), refusing a checkpoint that these settings cannot continue."""
    path = checkpoint_path(run_dir_or_checkpoint)
    state = load_checkpoint(path)
    saved, saved_options = settings_of(state, path)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise GdTorchError(f"cannot resume from {path}: it lacks {', '.join(missing)}")
    differences = changed(settings, saved)
    if differences:
        raise GdTorchError(
            f"{'; '.join(differences)}: a resumed run keeps its training "
            "settings (start a new run to change them)"
        )
    if options.dry_run != saved_options.dry_run:
        kind = "a dry run" if saved_options.dry_run else "a full run"
        raise GdTorchError(f"--dry-run cannot change when resuming: {path.parent} is {kind}")
    if state["epoch"] >= (1 if options.dry_run else settings.epochs):
        raise GdTorchError(
            f"the run in {path.parent} has already finished its {state['epoch']} "
            "epochs (to train longer, start a new run with more --epochs)"
        )
    return path.parent, state


def restore(
    state: dict,
    network: Network,
    optimizer: torch.optim.Optimizer,
    order: torch.Generator,
    batches_per_epoch: int,
) -> Progress:
    """Put the checkpoint's weights, optimizer and RNG states back; returns how far it had come."""
    if state["batches_done"] > batches_per_epoch:
        raise GdTorchError(
            f"the checkpoint has done {state['batches_done']} batches of its epoch "
            f"{state['epoch'] + 1}, and an epoch of this data has {batches_per_epoch}"
        )
    if state.get("optimizer_class", "SGD") != type(optimizer).__name__:
        raise GdTorchError(
            f"the checkpoint was trained with {state['optimizer_class']}, not "
            f"{type(optimizer).__name__}: resume it with the same optimizer"
        )
    method = [
        {k: group[k] for k in UPDATE_METHOD if k in group} for group in optimizer.param_groups
    ]
    try:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["batch_order_state"])
        torch.set_rng_state(state["torch_rng_state"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise GdTorchError(
            f"the checkpoint does not fit its own settings: {str(error).splitlines()[0]}"
        ) from None
    for group, kept in zip(optimizer.param_groups, method):
        group.update(kept)  # the same bits either way; the fused kernel is faster
    return Progress(
        state["epoch"],
        state["step"],
        state["batches_done"],
        state["best_accuracy"],
        state["history"],
    )
