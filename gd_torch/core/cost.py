"""The quadratic cost, defined here and nowhere else.

For one example x with output activations a^L(x) and one-hot target y(x):

    C_x = Σ_j (a^L_j(x) − y_j(x))²                      (sum over the 10 outputs)

and the cost of the network on n examples is the average   C = (1/n) Σ_x C_x.

Two other conventions are the same function scaled, named so that published learning
rates can be used as printed:

    nielsen    C = 1/(2n) Σ_x ||y(x) − a^L(x)||²   = ½   · quadratic   (Nielsen's book, network.py)
    mse        nn.MSELoss() = mean over n·10 terms  = 1/10 · quadratic

Because ∇C scales by the same factor, a learning rate η in one convention takes the same
steps as η·scale_a/scale_b in another: Nielsen's η = 3.0 is η = 1.5 here and η = 15 in mse.
"""

import torch
from torch import Tensor

COST_SCALES = {"quadratic": 1.0, "nielsen": 0.5, "mse": 0.1}
NUM_CLASSES = 10


def one_hot(labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Digit labels (n,) -> target activations y (n, 10): 1 for the right digit, 0 elsewhere."""
    return torch.nn.functional.one_hot(labels, NUM_CLASSES).to(dtype)


def cost(output: Tensor, target: Tensor, convention: str = "quadratic") -> Tensor:
    """C = scale · (1/n) Σ_x Σ_j (a_j − y_j)², a scalar; output and target are (n, 10).

    For K stacked networks (``gd_torch.sweep``) they are (K, n, 10) and C is (K,), one cost per
    network.
    ``mse_loss`` without reduction is one operation (and one autograd node) for all the squares.
    """
    squares = torch.nn.functional.mse_loss(
        output, target, reduction="none"
    )  # (a_j − y_j)², (n, 10) or (K, n, 10)
    return (COST_SCALES[convention] / output.shape[-2]) * squares.sum(dim=(-2, -1))


def cost_gradient(output: Tensor, target: Tensor, convention: str = "quadratic") -> Tensor:
    """∇_a C = scale · 2 (a^L − y) / n, the (n, 10) partial derivatives ∂C/∂a^L_j(x) (or
    (K, n, 10))."""
    return (2 * COST_SCALES[convention] / output.shape[-2]) * (output - target)
