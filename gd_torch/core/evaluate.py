"""How good the network is on a set of digits: its average cost and the share it classifies
right."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core.cost import cost
from gd_torch.core.data import Mnist, Split
from gd_torch.core.model import Network


@dataclass(frozen=True)
class Metrics:
    cost: float  # C = (1/n) Σ_x C_x in the run's cost convention
    accuracy: float  # fraction of digits whose brightest output is the right one
    correct: int
    total: int

    @classmethod
    def of(cls, total_cost: float, correct: int, count: int) -> "Metrics":
        """From Σ_x C_x and the number right over ``count`` digits."""
        return cls(total_cost / count, correct / count, correct, count)


@torch.inference_mode()
def evaluate(network: Network, split: Split, convention: str, batch_size: int = 10_000) -> Metrics:
    """Cost and accuracy over the whole split, in large batches (no gradients are recorded)."""
    total_cost, correct = totals(
        lambda images: network(images, weighted_output=True), split, convention, batch_size
    )
    return Metrics.of(total_cost.item(), int(correct.item()), len(split))


def measure(
    evaluate_split: Callable[[Split], list[Metrics]], data: Mnist
) -> list[dict[str, float]]:
    """The per-epoch numbers, {train,test,validation}_{cost,accuracy}, for each network that
    ``evaluate_split`` (split -> [Metrics, one per network]) evaluates."""
    per_network: list[dict[str, float]] = []
    for name, split in (
        ("train", data.train),
        ("test", data.test),
        ("validation", data.validation),
    ):
        if split is not None:
            results = evaluate_split(split)
            per_network = per_network or [{} for _ in results]
            for metrics, result in zip(per_network, results, strict=True):
                metrics[f"{name}_cost"], metrics[f"{name}_accuracy"] = result.cost, result.accuracy
    return per_network


def totals(
    outputs: Callable[[Tensor], Tensor], split: Split, convention: str, batch_size: int = 10_000
) -> tuple[Tensor, Tensor]:
    """(Σ_x C_x, number classified right) over the split, chunk by chunk; () tensors for one
    network, (K,) for K stacked ones (gd_torch.core.stacked).

    ``outputs`` maps images (n, 784) to the output layer's weighted inputs z^L (n, 10), or
    (K, n, 10) for K networks. The brightest output is argmax_j z^L_j = argmax_j σ(z^L_j), without
    the ties of outputs that σ rounds to 1.
    """
    total_cost = torch.zeros((), device=split.images.device, dtype=torch.float64)
    correct = torch.zeros((), device=split.images.device, dtype=torch.int64)
    for start in range(0, len(split), batch_size):
        # z^L, (chunk, 10) or (K, chunk, 10)
        output = outputs(split.images[start : start + batch_size])
        labels = split.labels[start : start + batch_size]
        targets = split.targets[start : start + batch_size].expand_as(output)
        total_cost = total_cost + cost(output, targets, convention).double() * len(labels)
        correct = correct + (output.argmax(dim=-1) == labels).sum(dim=-1)
    return total_cost, correct
