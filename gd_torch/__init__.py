"""gd_torch: the network of 3Blue1Brown's "Gradient descent" lesson and Nielsen's book.

784 input activations -> sigmoid hidden layers -> 10 sigmoid outputs, trained by
stochastic gradient descent on the quadratic cost, with gradients from autograd or from
a hand-written backpropagation twin. The names below are the Python API (README, "Python API").

Each name is imported when first used (``gd_torch.train``, ``from gd_torch import train``), so
that ``import gd_torch.cli`` stays light: the command line handles Ctrl-C before torch loads.
"""

import importlib
from typing import Any

_EXPORTS = {  # name: the module that defines it
    "train": "gd_torch.api",
    "load_checkpoint": "gd_torch.core.checkpoint",
    "network_from_checkpoint": "gd_torch.core.checkpoint",
    "cost": "gd_torch.core.cost",
    "cost_gradient": "gd_torch.core.cost",
    "one_hot": "gd_torch.core.cost",
    "Mnist": "gd_torch.core.data",
    "Split": "gd_torch.core.data",
    "load_mnist": "gd_torch.core.data",
    "shuffled_batches": "gd_torch.core.data",
    "ENGINES": "gd_torch.core.engines",
    "GdTorchError": "gd_torch.core.errors",
    "Metrics": "gd_torch.core.evaluate",
    "evaluate": "gd_torch.core.evaluate",
    "TrainResult": "gd_torch.core.loop",
    "seeded_generators": "gd_torch.core.loop",
    "sgd": "gd_torch.core.sgd",
    "train_one_epoch": "gd_torch.core.loop",
    "Network": "gd_torch.core.model",
    "PRESETS": "gd_torch.core.presets",
    "preset_settings": "gd_torch.core.presets",
    "Callback": "gd_torch.core.run",
    "Run": "gd_torch.core.run",
    "RunOptions": "gd_torch.core.settings",
    "TrainingSettings": "gd_torch.core.settings",
    "TensorBoard": "gd_torch.dashboard.tensorboard",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gd_torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
