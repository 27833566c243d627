"""Two ways to fill each parameter's ``.grad`` with ∇C for one mini-batch.

Both return the batch cost (a detached scalar tensor) and leave the step to the same
``torch.optim.SGD``, so the engines differ only in where the gradient comes from.
"""

import torch
from torch import Tensor

from gd_torch import manual
from gd_torch.cost import cost
from gd_torch.model import Network


def autograd_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """∇C by torch.autograd: record the forward pass, then C.backward()."""
    network.zero_grad(set_to_none=True)
    batch_cost = cost(network(images), targets, convention)
    batch_cost.backward()
    return batch_cost.detach()


@torch.no_grad()
def manual_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """∇C by the manual twin (``gd_torch.manual``), written into ``.grad`` for the optimizer."""
    activations = manual.forward(network, images)
    for layer, (nabla_w, nabla_b) in zip(network.layers, manual.backward(network, activations, targets, convention)):
        layer.weight.grad = nabla_w
        layer.bias.grad = nabla_b
    return cost(activations[-1], targets, convention)


ENGINES = {"manual": manual_gradients, "autograd": autograd_gradients}
