"""Two ways to fill each parameter's ``.grad`` with ∇C for one mini-batch.

Both return the batch cost C (a detached scalar tensor) and leave the step to the optimizer,
so the engines differ only in where the gradient comes from:

    manual     manual.manual_gradients: BP1-BP4 in raw tensor operations (gd_torch.core.manual)
    autograd   autograd_gradients: C.backward() through Network.forward

Each maps (network, images (B, 784), targets (B, 10), cost convention) to C.
"""

from collections.abc import Callable, Iterable
from typing import cast

from torch import Tensor

from gd_torch.core.cost import cost
from gd_torch.core.manual import manual_gradients
from gd_torch.core.model import Network


def autograd_gradients(
    network: Network, images: Tensor, targets: Tensor, convention: str
) -> Tensor:
    """∇C by torch.autograd: record the forward pass, then C.backward()."""
    network.zero_grad(set_to_none=True)
    batch_cost = cost(network(images, weighted_output=True), targets, convention)  # C(z^L)
    batch_cost.backward()
    return batch_cost.detach()


# (network, images, targets, cost convention) -> C, with ∇C in every .grad
Engine = Callable[[Network, Tensor, Tensor, str], Tensor]
ENGINES: dict[str, Engine] = {"manual": manual_gradients, "autograd": autograd_gradients}


def filled_gradients(parameters: Iterable[Tensor]) -> list[Tensor]:
    """Each parameter's .grad, as an engine has filled it (every one, after a gradient pass)."""
    gradients = [parameter.grad for parameter in parameters]
    if any(gradient is None for gradient in gradients):
        raise RuntimeError("a gradient pass must fill every .grad before this")
    return cast(list[Tensor], gradients)
