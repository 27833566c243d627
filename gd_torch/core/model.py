"""The network: every layer is a^l = σ(W^l a^{l-1} + b^l); the prediction is argmax a^L."""

import math
from collections.abc import Sequence
from typing import Protocol, cast

import torch
from torch import Tensor, nn

INPUT_SIZE = 28 * 28
OUTPUT_SIZE = 10


def _pytorch_default(weight: Tensor, bias: Tensor, generator: torch.Generator) -> None:
    # nn.Linear.reset_parameters: kaiming_uniform(a=√5) gives W ~ U(±1/√n_in), b ~ U(±1/√n_in)
    bound = 1 / math.sqrt(weight.shape[1])
    weight.uniform_(-bound, bound, generator=generator)
    bias.uniform_(-bound, bound, generator=generator)


def _nielsen(weight: Tensor, bias: Tensor, generator: torch.Generator) -> None:
    # Nielsen chapter 1: every weight and bias ~ N(0, 1).
    weight.normal_(0, 1, generator=generator)
    bias.normal_(0, 1, generator=generator)


def _nielsen_improved(weight: Tensor, bias: Tensor, generator: torch.Generator) -> None:
    # Nielsen chapter 3: W ~ N(0, 1/n_in) keeps z = Wa + b small, so σ does not saturate;
    # b ~ N(0, 1)
    weight.normal_(0, 1 / math.sqrt(weight.shape[1]), generator=generator)
    bias.normal_(0, 1, generator=generator)


class Layer(Protocol):
    """Layer l as the math reads it: W^l as ``weight`` and b^l as ``bias``."""

    weight: Tensor
    bias: Tensor

    def __call__(self, a: Tensor) -> Tensor: ...  # W^l a + b^l


class Layers(Protocol):
    """A network as the math reads it, layer by layer: a Network, or K of them stacked."""

    @property
    def layers(self) -> Sequence[Layer]: ...


INITIALIZATIONS = {
    "pytorch": _pytorch_default,
    "nielsen": _nielsen,
    "nielsen-improved": _nielsen_improved,
}


class Network(nn.Module):
    """Fully connected sigmoid network, default 784-16-16-10 (13,002 weights and biases).

    ``layers[l-1]`` holds W^l (n_l, n_{l-1}) as ``.weight`` and b^l (n_l,) as ``.bias``.
    """

    def __init__(
        self,
        sizes: tuple[int, ...] = (INPUT_SIZE, 16, 16, OUTPUT_SIZE),
        init: str = "nielsen-improved",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.sizes = tuple(sizes)
        self.layers = cast(
            Sequence[Layer],  # an nn.ModuleList (its layers are the module's), read as the math's
            nn.ModuleList(
                nn.Linear(n_in, n_out, dtype=dtype)
                for n_in, n_out in zip(self.sizes, self.sizes[1:])
            ),
        )
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        self.initialize(init, generator)

    @torch.no_grad()
    def initialize(self, init: str, generator: torch.Generator) -> None:
        """Draw every W^l and b^l, layer by layer, from the named scheme."""
        for layer in self.layers:
            INITIALIZATIONS[init](layer.weight, layer.bias, generator)

    def forward(self, x: Tensor, weighted_output: bool = False) -> Tensor:
        """Input activations (n, 784) in [0, 1] -> output activations a^L (n, 10), or with
        ``weighted_output`` the output layer's weighted input z^L (n, 10), a^L = σ(z^L): what the
        cost is computed from (``gd_torch.core.cost``), since σ(z) rounds to 1 for large z."""
        a = x
        for layer in self.layers[:-1]:
            a = torch.sigmoid(layer(a))  # a^l = σ(W^l a^{l-1} + b^l), (n, n_l)
        z = self.layers[-1](a)  # z^L = W^L a^{L-1} + b^L, (n, 10)
        return z if weighted_output else torch.sigmoid(z)  # a^L = σ(z^L)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
