"""Checkpoints: one dict of tensors and plain values, safe to load with ``weights_only=True``.

    model               the network's state_dict
    optimizer           torch.optim.SGD's state_dict
    config              TrainConfig.to_dict()
    epoch, step         epochs finished and SGD steps taken when it was written
    batch_order_state   the batch-order torch.Generator's state (ByteTensor)
    best_test_accuracy  the best per-epoch test accuracy so far
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
    torch.save(state, temporary)
    os.replace(temporary, path)


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
