"""Two ways to fill each parameter's ``.grad`` with ∇C for one mini-batch.

Both return the batch cost (a detached scalar tensor) and leave the step to the same
``torch.optim.SGD``, so the engines differ only in where the gradient comes from.

``GRADIENT_PASSES`` holds the same two computations as pure functions, returning the gradients
instead of writing ``.grad``, for the step that ``--compile`` compiles whole (``gd_torch.step``):
the manual one is ``manual.forward`` and ``manual.backward`` as they are; autograd's
``C.backward()`` cannot be captured in a graph, so there it takes the same derivative through
``torch.func.grad``.
"""

import torch
from torch import Tensor
from torch.func import functional_call

from gd_torch import manual
from gd_torch.cost import cost
from gd_torch.model import Network


def autograd_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """∇C by torch.autograd: record the forward pass, then C.backward()."""
    network.zero_grad(set_to_none=True)
    batch_cost = cost(network(images), targets, convention)
    batch_cost.backward()
    return batch_cost.detach()


def _manual_pass(network: Network, images: Tensor, targets: Tensor, convention: str):
    """([(∂C/∂W^l, ∂C/∂b^l) for each layer], C) by the manual twin (``gd_torch.manual``)."""
    activations = manual.forward(network, images)
    return manual.backward(network, activations, targets, convention), cost(activations[-1], targets, convention)


def _autograd_pass(network: Network, images: Tensor, targets: Tensor, convention: str):
    """The same pair by autograd's functional form: ∇ of C(θ) = cost(network with parameters θ)."""

    def batch_cost(parameters):
        value = cost(functional_call(network, parameters, (images,)), targets, convention)
        return value, value.detach()

    parameters = {name: parameter.detach() for name, parameter in network.named_parameters()}
    gradients, value = torch.func.grad(batch_cost, has_aux=True)(parameters)
    return [(gradients[f"layers.{l}.weight"], gradients[f"layers.{l}.bias"]) for l in range(len(network.layers))], value


def _write_gradients(network: Network, gradients) -> None:
    for layer, (nabla_w, nabla_b) in zip(network.layers, gradients):
        layer.weight.grad = nabla_w
        layer.bias.grad = nabla_b


@torch.no_grad()
def manual_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
    """∇C by the manual twin, written into ``.grad`` for the optimizer."""
    gradients, batch_cost = _manual_pass(network, images, targets, convention)
    _write_gradients(network, gradients)
    return batch_cost


ENGINES = {"manual": manual_gradients, "autograd": autograd_gradients}
# Each maps (network, images, targets, convention) to ([(∂C/∂W^l, ∂C/∂b^l) for each layer], C).
GRADIENT_PASSES = {"manual": _manual_pass, "autograd": _autograd_pass}
