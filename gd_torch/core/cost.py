"""The cost, defined here and nowhere else: the quadratic cost and the cross-entropy.

Both are computed from the output layer's weighted input z^L (a^L = σ(z^L)), as the forward
passes hand it over. For one example x with one-hot target y(x):

    quadratic       C_x = Σ_j (a^L_j − y_j)²                            (sum over the 10 outputs)
    cross-entropy   C_x = −Σ_j [y_j ln a^L_j + (1 − y_j) ln(1 − a^L_j)] (Nielsen, chapter 3)

and the cost of the network on n examples is the average   C = (1/n) Σ_x C_x.

The cross-entropy is evaluated as Σ_j softplus(z_j) − y_j z_j, the same number (ln σ(z) =
−softplus(−z), ln(1 − σ(z)) = −softplus(z)), because from a^L it is not safe: in float32 σ(z)
rounds to exactly 1 above z ≈ 17, where ln(1 − a) would be −∞ for a wrong digit.

Two other conventions of the quadratic cost are the same function scaled, named so that
published learning rates can be used as printed:

    nielsen    C = 1/(2n) Σ_x ||y(x) − a^L(x)||²   = ½   · quadratic   (Nielsen's book, network.py)
    mse        nn.MSELoss() = mean over n·10 terms  = 1/10 · quadratic

Because ∇C scales by the same factor, a learning rate η in one convention takes the same
steps as η·scale_a/scale_b in another: Nielsen's η = 3.0 is η = 1.5 here and η = 15 in mse.
The cross-entropy is not a scaled quadratic cost; its learning rates are its own.
"""

import torch
from torch import Tensor

COST_SCALES = {"quadratic": 1.0, "nielsen": 0.5, "mse": 0.1}  # the quadratic cost's conventions
COSTS = (*COST_SCALES, "cross-entropy")
NUM_CLASSES = 10


def one_hot(labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Digit labels (n,) -> target activations y (n, 10): 1 for the right digit, 0 elsewhere."""
    return torch.nn.functional.one_hot(labels, NUM_CLASSES).to(dtype)


def cost(weighted_output: Tensor, target: Tensor, convention: str = "quadratic") -> Tensor:
    """C = (1/n) Σ_x C_x, a scalar, from z^L (n, 10) and the one-hot targets y (n, 10).

    quadratic conventions: scale · (1/n) Σ_x Σ_j (σ(z_j) − y_j)²; cross-entropy:
    (1/n) Σ_x Σ_j softplus(z_j) − y_j z_j. For K stacked networks (``gd_torch.sweep``) the inputs
    are (K, n, 10) and C is (K,), one cost per network. ``mse_loss`` and
    ``binary_cross_entropy_with_logits`` without reduction are one operation (and one autograd
    node) for all the terms.
    """
    n = weighted_output.shape[-2]
    if convention == "cross-entropy":
        terms = torch.nn.functional.binary_cross_entropy_with_logits(
            weighted_output, target, reduction="none"
        )  # −[y ln σ(z) + (1 − y) ln(1 − σ(z))], (n, 10) or (K, n, 10)
        return terms.sum(dim=(-2, -1)) / n
    squares = torch.nn.functional.mse_loss(
        torch.sigmoid(weighted_output), target, reduction="none"
    )  # (a_j − y_j)², (n, 10) or (K, n, 10)
    return (COST_SCALES[convention] / n) * squares.sum(dim=(-2, -1))


def cost_gradient(output: Tensor, target: Tensor, convention: str = "quadratic") -> Tensor:
    """∇_a C = scale · 2 (a^L − y) / n, the (n, 10) partial derivatives ∂C/∂a^L_j(x) (or
    (K, n, 10)) of the quadratic conventions. (The cross-entropy's BP1 needs no ∇_a C: see
    ``manual.backward``.)"""
    return (2 * COST_SCALES[convention] / output.shape[-2]) * (output - target)
