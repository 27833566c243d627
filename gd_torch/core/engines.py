"""Two ways to fill each parameter's ``.grad`` with ∇C for one mini-batch.

Both return the batch cost C (a detached scalar tensor) and leave the step to the optimizer,
so the engines differ only in where the gradient comes from:

    manual     the backpropagation twin, BP1-BP4 in raw tensor operations (gd_torch.core.manual)
    autograd   C.backward() through Network.forward

Each maps (network, images (B, 784), targets (B, 10), cost convention) to C.
"""

import torch
from torch import Tensor

from gd_torch.core import manual
from gd_torch.core.cost import cost
from gd_torch.core.model import Network


def autograd_gradients(
    network: Network, images: Tensor, targets: Tensor, convention: str
) -> Tensor:
    """∇C by torch.autograd: record the forward pass, then C.backward()."""
    network.zero_grad(set_to_none=True)
    batch_cost = cost(network(images), targets, convention)
    batch_cost.backward()
    return batch_cost.detach()


@torch.no_grad()
def manual_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """∇C by the manual twin, written into ``.grad`` for the optimizer."""
    activations = manual.forward(network, images)  # [a^0, a^1, ..., a^L]
    gradients = manual.backward(network, activations, targets, convention)  # BP1-BP4
    for layer, (nabla_w, nabla_b) in zip(network.layers, gradients):
        layer.weight.grad, layer.bias.grad = nabla_w, nabla_b
    return cost(activations[-1], targets, convention)


ENGINES = {"manual": manual_gradients, "autograd": autograd_gradients}
