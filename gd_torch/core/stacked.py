"""K networks of one shape trained as one computation: their weights stacked on a leading copy
dimension.

    W^l of copy k = layers[l-1].weight[k]     stacked (K, n_l, n_{l-1})
    b^l of copy k = layers[l-1].bias[k]       stacked (K, n_l)

Names and layout are those of ``Network`` with one more dimension in front, so the manual twin
(``gd_torch.core.manual``, through ``ENGINES["manual"]``) runs on it unchanged as batched matmuls,
and autograd runs the real ``Network.forward`` of every copy at once through
``torch.func.vmap`` + ``functional_call``. Copies never mix: copy k's weights enter only its
own cost C_k, so ∂(Σ_j C_j)/∂W_k = ∂C_k/∂W_k.
"""

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from gd_torch.core import manual, native
from gd_torch.core.cost import cost
from gd_torch.core.data import Split
from gd_torch.core.engines import ENGINES, filled_gradients
from gd_torch.core.evaluate import Metrics, totals
from gd_torch.core.model import Layer, Network
from gd_torch.core.weight_space import parameters_at


class StackedNetworks(nn.Module):
    """K ``Network``s of the same sizes as one module; ``forward`` maps (K, n, 784) to
    (K, n, 10)."""

    def __init__(self, networks: list[Network]):
        super().__init__()
        stacked, _ = stack_module_state(
            networks
        )  # {"layers.0.weight": (K, 16, 784), "layers.0.bias": (K, 16), ...}
        layers = nn.ModuleList(nn.Module() for _ in networks[0].layers)
        for name, value in stacked.items():
            _, index, kind = name.split(".")
            layers[int(index)].register_parameter(kind, nn.Parameter(value.detach()))
        self.layers = cast(Sequence[Layer], layers)  # layer l: W^l (K, n_l, n_{l-1}), b^l
        # Only the structure is needed (functional_call supplies the weights); a tuple keeps it
        # out of parameters().
        self._structure = (copy.deepcopy(networks[0]).to("meta"),)

    @classmethod
    def at_points(cls, points: Tensor, sizes: tuple[int, ...]) -> "StackedNetworks":
        """K networks of ``sizes`` whose weights and biases are the K points θ, rows of ``points``
        (K, P) (``gd_torch.core.weight_space``): e.g. a grid over a plane of the cost surface."""
        stacked = cls([Network(sizes, dtype=points.dtype)]).to(points.device)  # the layout
        values = iter(parameters_at(points, sizes))  # W^1 (K, n_1, n_0), b^1 (K, n_1), ...
        for layer in cast(nn.ModuleList, stacked.layers):
            for kind in ("weight", "bias"):
                layer.register_parameter(kind, nn.Parameter(next(values), requires_grad=False))
        return stacked

    def __len__(self) -> int:
        return self.layers[0].weight.shape[0]

    @torch.no_grad()
    def points(self) -> Tensor:
        """The K points θ_k (K, P), each copy's weights and biases as one vector."""
        return torch.cat([weights.flatten(start_dim=1) for weights in self.parameters()], dim=1)

    def forward(self, x: Tensor, weighted_output: bool = False) -> Tensor:
        """Every copy's ``Network.forward``: a^L, or z^L with ``weighted_output``, (K, n, 10)."""
        network, keywords = self._structure[0], {"weighted_output": weighted_output}
        return vmap(lambda weights, images: functional_call(network, weights, (images,), keywords))(
            dict(self.named_parameters()), x
        )

    @torch.no_grad()
    def gradient_norms(self) -> Tensor:
        """‖∇C_k‖ over every weight and bias of copy k, for each k: (K,)."""
        return torch.stack(
            [grad.flatten(start_dim=1).norm(dim=1) for grad in filled_gradients(self.parameters())]
        ).norm(dim=0)

    @torch.no_grad()
    def copy_into(self, k: int, network: Network) -> Network:
        """Write copy k's weights, and its gradients when there are any, into ``network`` (for
        evaluation and logging)."""
        for stacked, own in zip(self.parameters(), network.parameters(), strict=True):
            own.copy_(stacked[k])
            own.grad = None if stacked.grad is None else stacked.grad[k]
        return network


def autograd_gradients(
    stacked: StackedNetworks, images: Tensor, targets: Tensor, convention: str
) -> Tensor:
    """∇C_k of every copy by torch.autograd through the vmapped forward; returns the costs C_k,
    (K,)."""
    stacked.zero_grad(set_to_none=True)
    costs = cost(stacked(images, weighted_output=True), targets, convention)  # (K,)
    costs.sum().backward()  # copy k's weights enter only C_k: each gets its own ∇C_k
    return costs.detach()


# Each fills the stacked .grad with (K, ...) gradients and returns the (K,) batch costs.
STACKED_ENGINES = {"manual": ENGINES["manual"], "autograd": autograd_gradients}


@torch.inference_mode()
def evaluate_copies(
    stacked: StackedNetworks, split: Split, convention: str, batch_size: int = 10_000
) -> list[Metrics]:
    """``evaluate`` for each of K stacked networks, all at once: every copy sees the same digits,
    so the first layer of all K is one (n, 784) x (784, K·16) matmul (``manual.weighted_input``),
    not K skinny ones."""
    total_costs, corrects = totals(
        lambda images: manual.forward(stacked, images)[0][-1], split, convention, batch_size
    )
    return [
        Metrics.of(total_cost, correct, len(split))
        for total_cost, correct in zip(total_costs.tolist(), corrects.tolist())
    ]


class StackedSGD:
    """w_k ← w_k − η_k (∇C_k + λ w_k) for every copy k: the arithmetic of torch.optim.SGD's step
    without momentum, hand-written with torch's foreach operations, with its own η_k per copy.
    Without ``decay_biases`` (--weight-decay-on weights) the biases take b_k ← b_k − η_k ∇C_k.

    torch.optim.SGD takes one η per parameter group and a group holds whole tensors, so it cannot
    give the K slices of a stacked tensor different rates; the (K,) rates broadcast instead.
    The update is taken as (1 − η_k λ) w_k − η_k ∇C_k, the same number, in two in-place passes over
    the weights without SGD's temporary ∇C + λw: at K = 16 the stacked weights (830 KB) no longer
    fit the fastest caches, and memory traffic is what this step costs. The factors 1 − η_k λ and
    η_k, shaped to broadcast, are made once for the rates (a sweep makes one per epoch), not once
    per step: a step of small copies costs its operations' overhead more than their arithmetic.
    """

    def __init__(
        self,
        stacked: StackedNetworks,
        learning_rates: Tensor,
        weight_decay: float,
        decay_biases: bool = True,
    ):
        layers = len(stacked.layers)
        self.parameters = [layer.weight for layer in stacked.layers] + [
            layer.bias for layer in stacked.layers
        ]

        def per_copy(values: Tensor) -> list[Tensor]:
            """(K,) values shaped to broadcast over each copy's weights (K, 1, 1), biases (K, 1)."""
            return [values.view(-1, 1, 1)] * layers + [values.view(-1, 1)] * layers

        decayed = (len(self.parameters) if decay_biases else layers) if weight_decay else 0
        self.decayed = self.parameters[:decayed]  # the weights come first
        self.decay_factors = per_copy(1 - weight_decay * learning_rates)[:decayed]  # 1 − η_k λ
        self.rates = per_copy(learning_rates)  # η_k

    @torch.no_grad()
    def step(self) -> None:
        if self.decayed:
            torch._foreach_mul_(self.decayed, self.decay_factors)  # w_k ← (1 − η_k λ) w_k
        torch._foreach_addcmul_(
            self.parameters, self.rates, filled_gradients(self.parameters), value=-1
        )  # w_k ← w_k − η_k ∇C_k


class NativeStackedSteps:
    """The steps of an epoch of K stacked copies by the native steps (gd_torch.core.native), the
    manual engine's BP1-BP4 and ``StackedSGD``'s update in C++, one copy after another: what the
    eager stacked step computes (to rounding), without its operators' dispatch, which is most of
    a step of small copies. ``inputs``: ``native.nonzero_inputs`` of the training images, whose
    one-hot ``targets`` are given too. ``orders`` (K, N): copy k's examples in its SGD order, step s
    taking ``orders[k, s·B : (s+1)·B]``; ``steps(start, stop)`` takes the full batches
    start..stop − 1, and leaves each one's C_k and ‖∇C_k‖ in ``costs[s]`` and ``norms[s]``
    (K,), and the last one's ∇C_k in the stacked ``.grad``."""

    def __init__(
        self,
        stacked: StackedNetworks,
        inputs: native.NonzeroInputs,
        targets: Tensor,
        orders: Tensor,
        batch_size: int,
        learning_rates: Tensor,
        weight_decay: float,
        convention: str,
        decay_biases: bool = True,
    ):
        self.stacked, self.inputs, self.targets = stacked, inputs, targets
        self.orders = orders.contiguous()
        self.batch_size, self.learning_rates = batch_size, learning_rates.contiguous()
        self.weight_decay, self.convention, self.decay_biases = (
            weight_decay,
            convention,
            decay_biases,
        )
        self.full_batches = orders.shape[1] // batch_size
        self.costs = torch.zeros(self.full_batches, len(stacked), dtype=learning_rates.dtype)
        self.norms = torch.zeros_like(self.costs)
        for parameter in stacked.parameters():
            parameter.grad = torch.zeros_like(parameter)

    @torch.no_grad()
    def steps(self, start: int, stop: int) -> None:
        layers = self.stacked.layers
        native.sgd_steps(
            [layer.weight for layer in layers],
            [layer.bias for layer in layers],
            filled_gradients(layer.weight for layer in layers),
            filled_gradients(layer.bias for layer in layers),
            self.inputs,
            self.targets,
            self.orders,
            self.batch_size,
            start,
            stop,
            self.learning_rates,
            self.weight_decay,
            self.convention,
            self.costs,
            self.norms,
            self.decay_biases,
        )
