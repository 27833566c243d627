"""The manual-backprop twin: the gradient of the cost by the four backpropagation equations.

Raw tensor operations only (matmul and elementwise); no autograd. Notation as in Nielsen's
chapter 2, with one row per example (batch size n):

    z^l = a^{l-1} (W^l)^T + b^l        a^l = σ(z^l)                         forward
    BP1  δ^L = ∇_a C ⊙ σ'(z^L)                                             output error
         δ^L = (a^L − y)/n              for the cross-entropy: σ'(z^L) cancels
    BP2  δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(z^l)                                 error moves back
    BP3  ∂C/∂b^l = Σ_x δ^l_x
    BP4  ∂C/∂W^l = Σ_x δ^l_x (a^{l-1}_x)^T

The 1/n of the average cost sits inside ∇_a C (see ``cost_gradient``), or in the
cross-entropy's BP1, so BP3 and BP4 sum over the examples of the batch. The cross-entropy's
∂C/∂a^L_j = (a_j − y_j) / (n a_j (1 − a_j)) and σ'(z_j) = a_j (1 − a_j): their product is
(a_j − y_j)/n, with no σ' left to slow a saturated output neuron down (Nielsen, chapter 3).

The same lines train K networks at once (``gd_torch.sweep``): with W^l stacked to
(K, n_l, n_{l-1}), b^l to (K, n_l) and activations to (K, n, n_l), every product below is a
batched matmul over the leading copy dimension and every sum runs over the examples (dim −2).
"""

from typing import NamedTuple

import torch
from torch import Tensor

from gd_torch.core.cost import cost, cost_gradient
from gd_torch.core.model import Layers, Network


def sigmoid_prime(a: Tensor) -> Tensor:
    """σ'(z) = σ(z)(1 − σ(z)) = a(1 − a), from the activation a = σ(z), so z need not be kept."""
    return a * (1 - a)


def weighted_input(a: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """z = a W^T + b in one fused matmul: (n, n_l) for one network, (K, n, n_l) for K stacked ones.

    K stacked networks take their own inputs a (K, n, n_{l-1}), or all the same a (n, n_{l-1}) (a
    sweep's evaluation): then the K weight matrices side by side make one wide matmul.
    """
    if weight.dim() == 2:
        return torch.addmm(bias, a, weight.T)
    if a.dim() == 2:
        copies, n_out, n_in = weight.shape
        wide = torch.addmm(
            bias.flatten(), a, weight.reshape(copies * n_out, n_in).T
        )  # (n, K·n_l): column block k is copy k
        return wide.view(len(a), copies, n_out).transpose(0, 1)  # (K, n, n_l)
    return torch.baddbmm(bias.unsqueeze(-2), a, weight.mT)


def forward(network: Layers, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """(zs, activations) as Nielsen's ``backprop`` keeps them: the weighted inputs
    [z^1, ..., z^L] and the activations [a^0 = x, a^1, ..., a^L], each (n, n_l). The backward pass
    reads the activations (σ'(z) = a(1 − a)); the cost is computed from z^L."""
    zs, activations = [], [x]
    for layer in network.layers:
        # z^l = W^l a^{l-1} + b^l, (n, n_l)
        zs.append(weighted_input(activations[-1], layer.weight, layer.bias))
        activations.append(torch.sigmoid(zs[-1]))  # a^l = σ(z^l), (n, n_l)
    return zs, activations


class Backpropagation(NamedTuple):
    """What BP1-BP4 compute for a batch, by layer l = 1..L (index l - 1)."""

    gradients: list[tuple[Tensor, Tensor]]  # (∂C/∂W^l, ∂C/∂b^l): BP4 and BP3
    activation_gradients: list[Tensor]  # ∂C/∂a^l, (n, n_l): −1 times the nudge a^l wants
    deltas: list[Tensor]  # δ^l = ∂C/∂z^l, (n, n_l): BP1 and BP2


def backpropagate(
    network: Layers, activations: list[Tensor], target: Tensor, convention: str
) -> Backpropagation:
    """BP1-BP4 for this batch; ``activations`` comes from ``forward`` and is only read, and
    ``target`` is the one-hot y (n, 10). Row x of ∂C/∂a^l and of δ^l is that of example x, with
    the cost's 1/n in it: summed over the rows, they are those of the average cost C."""
    weights = [layer.weight for layer in network.layers]  # weights[l - 1] is W^l
    output = activations[-1]
    if convention == "cross-entropy":
        # BP1 for the cross-entropy: δ^L = (a^L − y)/n, no σ'(z^L), (n, 10)
        delta = (output - target) / output.shape[-2]
        # ∂C/∂a^L = δ^L / σ'(z^L), (n, 10): the outputs' wanted nudges (BP1 does not need it)
        nabla_a = delta / sigmoid_prime(output)
    else:
        nabla_a = cost_gradient(output, target, convention)  # ∇_a C = ∂C/∂a^L, (n, 10)
        # BP1: δ^L = ∇_a C ⊙ σ'(z^L), (n, 10)
        delta = nabla_a * sigmoid_prime(output)
    gradients, activation_gradients, deltas = [], [], []
    for l in range(len(weights), 0, -1):  # l = L, L-1, ..., 1
        activation_gradients.append(nabla_a)
        deltas.append(delta)
        nabla_b = delta.sum(-2)  # BP3: ∂C/∂b^l = Σ_x δ^l_x, (n_l,)
        # BP4: ∂C/∂W^l = Σ_x δ^l_x (a^{l-1}_x)^T, (n_l, n_{l-1})
        nabla_w = delta.mT @ activations[l - 1]
        gradients.append((nabla_w, nabla_b))
        if l > 1:
            # ∂C/∂a^{l-1} = (W^l)^T δ^l, summed over the neurons each one feeds, (n, n_{l-1})
            nabla_a = delta @ weights[l - 1]
            # BP2: δ^{l-1} = ((W^l)^T δ^l) ⊙ σ'(z^{l-1}), (n, n_{l-1})
            delta = nabla_a * sigmoid_prime(activations[l - 1])
    return Backpropagation(gradients[::-1], activation_gradients[::-1], deltas[::-1])


def backward(
    network: Layers, activations: list[Tensor], target: Tensor, convention: str
) -> list[tuple[Tensor, Tensor]]:
    """[(∂C/∂W^l, ∂C/∂b^l) for l = 1..L], the gradient of the cost C of this batch
    (``backpropagate``'s BP3 and BP4)."""
    return backpropagate(network, activations, target, convention).gradients


@torch.no_grad()
def manual_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """The manual engine: ∇C of this mini-batch by ``forward`` and ``backward``, written into
    each parameter's ``.grad`` for the optimizer; returns the batch cost C."""
    zs, activations = forward(network, images)  # [z^1, ..., z^L], [a^0, a^1, ..., a^L]
    for layer, (nabla_w, nabla_b) in zip(
        network.layers, backward(network, activations, targets, convention)
    ):
        layer.weight.grad, layer.bias.grad = nabla_w, nabla_b
    return cost(zs[-1], targets, convention)
