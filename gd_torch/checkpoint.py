"""Checkpoints: one dict of tensors and plain values, safe to load with ``weights_only=True``.

    model               the network's state_dict
    optimizer           torch.optim.SGD's state_dict
    config              TrainConfig.to_dict()
    epoch, step         epochs finished and SGD steps taken when it was written
    batch_order_state   the batch-order torch.Generator's state that epoch + 1's order is drawn from (ByteTensor)
    batches_done        batches of epoch + 1 already trained on: 0, except when stopped mid-epoch
    torch_rng_state     torch's global CPU RNG state (ByteTensor)
    best_test_accuracy  the best per-epoch test accuracy so far
    history             the per-epoch metrics so far (TrainResult.history)

A run keeps two in its directory: last.pt (rewritten every --checkpoint-every epochs, after
the last epoch and when stopped) and best.pt (the epoch with the best test accuracy).
"""

import os
from pathlib import Path

import torch

from gd_torch.config import TrainConfig
from gd_torch.errors import GdTorchError
from gd_torch.model import Network

REQUIRED_KEYS = ("model", "optimizer", "config", "epoch", "step")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: to a temporary file in the same directory, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only there when writing failed (disk full, a second Ctrl-C)


def training_checkpoint(network: Network, optimizer: torch.optim.Optimizer, config: TrainConfig, *, epoch: int, step: int,
                        batch_order_state: torch.Tensor, batches_done: int, best_test_accuracy: float, history: list[dict]) -> dict:
    """Everything the next SGD step depends on, so a resumed run continues bit for bit (see ``gd_torch.resume``)."""
    return {
        "model": network.state_dict(), "optimizer": optimizer.state_dict(), "config": config.to_dict(),
        "epoch": epoch, "step": step, "batch_order_state": batch_order_state, "batches_done": batches_done,
        "torch_rng_state": torch.get_rng_state(), "best_test_accuracy": best_test_accuracy, "history": history,
    }


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, on the CPU; a clear GdTorchError for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise GdTorchError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GdTorchError(f"{path} is not a readable checkpoint ({first_line})") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise GdTorchError(f"{path} is not a gd_torch checkpoint (missing {', '.join(missing)})")
    return state


def network_from_checkpoint(state: dict) -> tuple[Network, TrainConfig]:
    """Rebuild the trained network and its config from a loaded checkpoint."""
    config = TrainConfig.from_dict(state["config"])
    network = Network(config.layer_sizes, config.init)
    try:
        network.load_state_dict(state["model"])
    except RuntimeError as error:
        raise GdTorchError(f"checkpoint weights do not fit its configuration {config.layer_sizes}: {str(error).splitlines()[0]}") from None
    return network, config
