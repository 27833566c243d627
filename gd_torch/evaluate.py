"""How good the network is on a set of digits: its average cost and the share it classifies right."""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch import manual
from gd_torch.batched import StackedNetworks
from gd_torch.cost import cost
from gd_torch.data import Split
from gd_torch.model import Network


@dataclass(frozen=True)
class Metrics:
    cost: float  # C = (1/n) Σ_x C_x in the run's cost convention
    accuracy: float  # fraction of digits whose brightest output is the right one
    correct: int
    total: int


@torch.inference_mode()
def evaluate(network: Network, split: Split, convention: str, batch_size: int = 10_000) -> Metrics:
    """Cost and accuracy over the whole split, in large batches (no gradients are recorded)."""
    total_cost, correct = _totals(network, split, convention, batch_size)
    return _metrics(total_cost.item(), int(correct.item()), len(split))


@torch.inference_mode()
def evaluate_copies(stacked: StackedNetworks, split: Split, convention: str, batch_size: int = 10_000) -> list[Metrics]:
    """The same for each of K stacked networks (a sweep), all at once: every copy sees the same digits, so the
    first layer of all K is one (n, 784) x (784, K·16) matmul (``manual.weighted_input``), not K skinny ones."""
    total_costs, corrects = _totals(lambda images: manual.forward(stacked, images)[-1], split, convention, batch_size)
    return [_metrics(total_cost, correct, len(split)) for total_cost, correct in zip(total_costs.tolist(), corrects.tolist())]


def _totals(outputs, split: Split, convention: str, batch_size: int) -> tuple[Tensor, Tensor]:
    """(Σ_x C_x, number classified right) over the split, chunk by chunk; () tensors for one network, (K,) for K.

    ``outputs`` maps images (n, 784) to output activations (n, 10), or (K, n, 10) for K networks.
    """
    total_cost = torch.zeros((), device=split.images.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.images.device, dtype=torch.int64)
    for start in range(0, len(split), batch_size):
        output = outputs(split.images[start : start + batch_size])  # (chunk, 10) or (K, chunk, 10)
        labels = split.labels[start : start + batch_size]
        targets = split.targets[start : start + batch_size].expand_as(output)
        total_cost = total_cost + cost(output, targets, convention).double() * len(labels)
        correct = correct + (output.argmax(dim=-1) == labels).sum(dim=-1)
    return total_cost, correct


def _metrics(total_cost: float, correct: int, count: int) -> Metrics:
    return Metrics(cost=total_cost / count, accuracy=correct / count, correct=correct, total=count)
