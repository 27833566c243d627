"""gd_torch: the network of 3Blue1Brown's "Gradient descent" lesson and Nielsen's book.

784 input activations -> sigmoid hidden layers -> 10 sigmoid outputs, trained by
stochastic gradient descent on the quadratic cost, with gradients from autograd or from
a hand-written backpropagation twin. The names below are the Python API (README, "Python API").
"""

from gd_torch.api import train
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.core.cost import cost, cost_gradient, one_hot
from gd_torch.core.data import Mnist, Split, load_mnist, shuffled_batches
from gd_torch.core.engines import ENGINES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import Metrics, evaluate
from gd_torch.core.loop import TrainResult, seeded_generators, sgd, train_one_epoch
from gd_torch.core.model import Network
from gd_torch.core.presets import PRESETS, preset_settings
from gd_torch.core.run import Callback, Run
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.dashboard.tensorboard import TensorBoard

__all__ = [
    "ENGINES",
    "PRESETS",
    "Callback",
    "GdTorchError",
    "Metrics",
    "Mnist",
    "Network",
    "Run",
    "RunOptions",
    "Split",
    "TensorBoard",
    "TrainResult",
    "TrainingSettings",
    "cost",
    "cost_gradient",
    "evaluate",
    "load_checkpoint",
    "load_mnist",
    "network_from_checkpoint",
    "one_hot",
    "preset_settings",
    "seeded_generators",
    "sgd",
    "shuffled_batches",
    "train",
    "train_one_epoch",
]
__version__ = "0.1.0"
