"""gd_torch: the network of 3Blue1Brown's "Gradient descent" lesson and Nielsen's book.

784 input activations -> sigmoid hidden layers -> 10 sigmoid outputs, trained by
stochastic gradient descent on the quadratic cost, with gradients from autograd or from
a hand-written backpropagation twin.
"""

from gd_torch.config import TrainConfig
from gd_torch.cost import cost, cost_gradient
from gd_torch.model import Network

__all__ = ["Network", "TrainConfig", "cost", "cost_gradient"]
__version__ = "0.1.0"
