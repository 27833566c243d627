"""One example's nudges, and their average over the examples: the negative gradient −∇C.

For one example x the cost C_x = Σ_j (a^L_j − y_j)² asks each output activation to change by
−∂C_x/∂a^L_j = −2 (a^L_j − y_j) (times the cost's scale): up for the right digit, down for the
others, each in proportion to how far it is from its target. A hidden activation feeds every
neuron of the next layer, so the change asked of it is the sum over those neurons,
−∂C_x/∂a^{l-1}_k = −Σ_j W^l_jk δ^l_j. The wishes become nudges of the weights and biases,
−∂C_x/∂W^l = −δ^l (a^{l-1})^T and −∂C_x/∂b^l = −δ^l: a weight from a bright input, into a neuron
whose change matters most, moves most.

Averaged over all training examples the nudges are −∇C, the step gradient descent takes (per
unit of η); averaged over a mini-batch they are SGD's estimate of it. All of them are read off the
manual twin's BP1-BP4 (``gd_torch.core.manual.backpropagate``): its ∂C/∂a^l, δ^l, ∂C/∂W^l and
∂C/∂b^l, with the sign turned, are the lesson's nudges.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core import manual
from gd_torch.core.model import Network


@dataclass(frozen=True)
class Nudges:
    """The changes a set of examples asks for, averaged over them, by layer l = 1..L."""

    activations: list[Tensor]  # −∂C/∂a^l (n_l,): how each activation should change
    weights: list[Tensor]  # −∂C/∂W^l (n_l, n_{l-1})
    biases: list[Tensor]  # −∂C/∂b^l (n_l,)


@torch.no_grad()
def nudges(network: Network, images: Tensor, targets: Tensor, convention: str) -> Nudges:
    """The nudges of the examples (images (n, 784), one-hot targets (n, 10)), averaged over them;
    for one example, its own. Row x of BP's ∂C/∂a^l holds the cost's 1/n, so the sum over the
    rows is the average over the examples, as BP3 and BP4 sum δ^l."""
    backprop = manual.backpropagate(
        network, manual.forward(network, images)[1], targets, convention
    )
    return Nudges(
        [-nabla_a.sum(0) for nabla_a in backprop.activation_gradients],
        [-nabla_w for nabla_w, _ in backprop.gradients],
        [-nabla_b for _, nabla_b in backprop.gradients],
    )
