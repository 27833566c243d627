"""How sensitive the cost is to each weight and bias: the gradient ∇C read as a map.

A component ∂C/∂w says how much C changes per unit change of w. If ∂C/∂w₁ = 3.2 and
∂C/∂w₂ = 0.1, nudging w₁ changes the cost 32 times as much as nudging w₂: the cost is
32x more sensitive to w₁. Here each |∂C/∂w| is compared with the median |∂C/∂w| over its
kind (weights with all weights, biases with all biases, every layer together).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core.data import Split
from gd_torch.core.engines import ENGINES
from gd_torch.core.model import Network


def full_gradient(
    network: Network, split: Split, convention: str, engine: str = "manual"
) -> list[tuple[Tensor, Tensor]]:
    """[(∂C/∂W^l, ∂C/∂b^l) for l = 1..L] of the cost C averaged over the whole split.

    The whole split is one batch for the engine that trains the network (it overwrites ``.grad``).
    """
    ENGINES[engine](network, split.images, split.targets, convention)
    return [
        (layer.weight.grad.detach().clone(), layer.bias.grad.detach().clone())
        for layer in network.layers
    ]


@dataclass(frozen=True)
class Sensitivity:
    name: str  # "W1[3, 409]": layer 1, row 3 (its neuron 3), column 409 (input pixel 409); "b2[5]"
    slope: float  # ∂C/∂w
    ratio_to_median: float  # |∂C/∂w| / median |∂C/∂w| over all weights (or over all biases)

    def sentence(self) -> str:
        kind = "weight" if self.name.startswith("W") else "bias"
        return (
            f"the cost is {self.ratio_to_median:.1f}x more sensitive to {self.name} "
            f"than to the median {kind} "
            f"(∂C/∂{self.name} = {self.slope:+.3g})"
        )


def most_sensitive(
    gradients: list[tuple[Tensor, Tensor]], k: int
) -> tuple[list[Sensitivity], list[Sensitivity]]:
    """(the k weights, the k biases) with the largest |∂C/∂w|, largest first."""
    return _top([w for w, _ in gradients], "W", k), _top([b for _, b in gradients], "b", k)


def _top(tensors: list[Tensor], letter: str, k: int) -> list[Sensitivity]:
    median = torch.cat([t.flatten() for t in tensors]).abs().median().item()
    candidates = []  # the k largest of each layer hold the k largest overall
    for l, tensor in enumerate(tensors, start=1):
        for position in tensor.abs().flatten().topk(min(k, tensor.numel())).indices.tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(position), tensor.shape))
            candidates.append((f"{letter}{l}[{', '.join(map(str, index))}]", tensor[index].item()))
    candidates.sort(key=lambda candidate: -abs(candidate[1]))
    return [
        Sensitivity(name, slope, abs(slope) / median if median > 0 else float("inf"))
        for name, slope in candidates[:k]
    ]
