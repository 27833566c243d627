"""Checkpoints: one dict of tensors and plain values, safe to load with ``weights_only=True``.

    format              2 (checkpoints without it are from before the settings split, and load)
    model               the network's state_dict
    optimizer           the optimizer's state_dict (its param groups carry initial_lr)
    optimizer_class     e.g. "SGD": a resumed run must use the same kind of optimizer
    settings            the TrainingSettings, as a dict: what decides the result
    options             the RunOptions, as a dict: where and how it ran
    epoch, step         epochs finished and SGD steps taken when it was written
    batch_order_state   the batch-order torch.Generator's state that epoch + 1's order is drawn from
    batches_done        batches of epoch + 1 already trained on: 0, except when stopped mid-epoch
    torch_rng_state     torch's global CPU RNG state (ByteTensor)
    best_accuracy       the best per-epoch accuracy so far, on the split named by best_by
    best_by             "validation_accuracy" when the run holds out a validation set, else
                        "test_accuracy" (as Nielsen reports it)
    history             the per-epoch metrics so far (TrainResult.history)

A run keeps two in its directory: last.pt (rewritten every --checkpoint-every epochs, after the
last epoch and when stopped) and best.pt (the epoch with the best ``best_by`` accuracy).
"""

import dataclasses
import os
from pathlib import Path

import torch

from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings, from_dict, to_dict

FORMAT = 2
REQUIRED_KEYS = ("model", "optimizer", "settings", "options", "epoch", "step")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: to a temporary file in the same directory, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only there when writing failed (disk full, Ctrl-C)


def training_checkpoint(
    network: Network,
    optimizer: torch.optim.Optimizer,
    settings: TrainingSettings,
    options: RunOptions,
    *,
    epoch: int,
    step: int,
    batch_order_state: torch.Tensor,
    batches_done: int,
    best_accuracy: float,
    best_by: str,
    history: list[dict],
) -> dict:
    """Everything the next SGD step depends on, so a resumed run continues bit for bit."""
    return {
        "format": FORMAT,
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_class": type(optimizer).__name__,
        "settings": to_dict(settings),
        "options": to_dict(options),
        "epoch": epoch,
        "step": step,
        "batch_order_state": batch_order_state,
        "batches_done": batches_done,
        "torch_rng_state": torch.get_rng_state(),
        "best_accuracy": best_accuracy,
        "best_by": best_by,
        "history": history,
    }


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, on the CPU, in today's format; a GdTorchError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise GdTorchError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GdTorchError(f"{path} is not a readable checkpoint ({first_line})") from None
    if isinstance(state, dict) and "format" not in state and "config" in state:
        state = _from_format_1(state)
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise GdTorchError(f"{path} is not a gd_torch checkpoint (missing {', '.join(missing)})")
    if state.get("format") != FORMAT:
        raise GdTorchError(
            f"{path} has checkpoint format {state.get('format')!r}; this gd_torch "
            f"reads format {FORMAT} and the older one without a format key"
        )
    return state


def _from_format_1(state: dict) -> dict:
    """A checkpoint of before the settings split: one flat ``config``, best on test accuracy."""
    config = state.pop("config")
    if not isinstance(config, dict):
        return state  # refused by the key check
    names = {f.name for f in dataclasses.fields(TrainingSettings)}
    state["settings"] = {k: v for k, v in config.items() if k in names}
    state["options"] = {k: v for k, v in config.items() if k not in names}
    state["format"], state["optimizer_class"], state["best_by"] = FORMAT, "SGD", "test_accuracy"
    state["best_accuracy"] = state.pop("best_test_accuracy", 0.0)
    for group in (
        state["optimizer"].get("param_groups", []) if isinstance(state["optimizer"], dict) else []
    ):
        group.setdefault("initial_lr", config.get("learning_rate", group.get("lr")))
    return state


def settings_of(state: dict, path: str | Path) -> tuple[TrainingSettings, RunOptions]:
    """The training settings and run options a checkpoint was written with."""
    try:
        return from_dict(TrainingSettings, state["settings"]), from_dict(
            RunOptions, state["options"]
        )
    except GdTorchError as error:
        raise GdTorchError(f"{path} holds settings this gd_torch cannot use ({error})") from None


def network_from_checkpoint(
    state: dict, path: str | Path = "the checkpoint"
) -> tuple[Network, TrainingSettings]:
    """Rebuild the trained network and its training settings from a loaded checkpoint."""
    settings, _ = settings_of(state, path)
    network = Network(settings.layer_sizes, settings.init, dtype=settings.torch_dtype)
    try:
        network.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise GdTorchError(
            f"{path}: its weights do not fit its settings {settings.layer_sizes} "
            f"({str(error).splitlines()[0]})"
        ) from None
    return network, settings
