"""Two ways to fill each parameter's ``.grad`` with ∇C for one mini-batch.

Both return the batch cost (a detached scalar tensor) and leave the step to the same
``torch.optim.SGD``, so the engines differ only in where the gradient comes from.

``engine(name, compile=True)`` gives the same engine with its gradient computation compiled by
``torch.compile`` (one graph per batch shape): a few seconds of compiling on the first steps,
then fewer, fused operations per step. The manual engine compiles ``manual.forward`` and
``manual.backward`` as they are; autograd's ``C.backward()`` cannot be captured in a graph, so
the compiled autograd engine takes the same derivative through ``torch.func.grad``.
"""

import functools

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
_PASSES = {"manual": _manual_pass, "autograd": _autograd_pass}


def engine(name: str, compile: bool = False):
    """The engine ``name`` as a function (network, images, targets, convention) -> batch cost."""
    return _compiled_engine(name) if compile else ENGINES[name]


@functools.cache  # one compiled function per engine, reused by every run in the process
def _compiled_engine(name: str):
    compiled_pass = torch.compile(_PASSES[name], dynamic=False)

    @torch.no_grad()  # no graph is recorded around the pass (torch.func.grad ignores an outer no_grad)
    def compiled_gradients(network: Network, images: Tensor, targets: Tensor, convention: str) -> Tensor:
        gradients, batch_cost = compiled_pass(network, images, targets, convention)
        _write_gradients(network, gradients)
        return batch_cost.detach()

    return compiled_gradients
