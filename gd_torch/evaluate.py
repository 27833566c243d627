"""How good the network is on a set of digits: its average cost and the share it classifies right."""

from dataclasses import dataclass

import torch

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
    total_cost = torch.zeros((), device=split.images.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.images.device, dtype=torch.int64)
    for start in range(0, len(split), batch_size):
        output = network(split.images[start : start + batch_size])  # (chunk, 10)
        labels = split.labels[start : start + batch_size]
        total_cost += cost(output, split.targets[start : start + batch_size], convention).double() * len(labels)
        correct += (output.argmax(dim=1) == labels).sum()
    count = len(split)
    return Metrics(cost=total_cost.item() / count, accuracy=correct.item() / count, correct=int(correct.item()), total=count)
