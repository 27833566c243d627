"""How good a mini-batch gradient is: its angle to the full gradient, and its length.

SGD steps along ∇C_B, the gradient of the cost of a random mini-batch B, instead of ∇C over all
N training digits. ∇C_B is an unbiased estimate (its mean over the mini-batches is ∇C); how close
one draw is, is measured by

    cos∠(∇C_B, ∇C) = ∇C_B · ∇C / (‖∇C_B‖ ‖∇C‖)    1: downhill exactly, 0: at right angles to it
    ‖∇C_B‖ / ‖∇C‖                                  how much longer noise makes the step

Drawn without replacement, E‖∇C_B‖² = ‖∇C‖² + (N − B)/(N − 1) · tr(Σ)/B, with Σ the covariance of
the per-example gradients: the noise shrinks like 1/√B and vanishes at B = N, where the only
mini-batch is the training set itself.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.analysis.sensitivity import full_gradient
from gd_torch.core.data import Split, shuffled_batches
from gd_torch.core.model import Network

BATCH_SIZES = (1, 10, 100, 1_000, 60_000)
DRAWS = 200  # random mini-batches per batch size: a median to about ±0.01


@dataclass(frozen=True)
class GradientQuality:
    """The draws of one batch size: cosine to ∇C, and ‖∇C_B‖ / ‖∇C‖, one per mini-batch."""

    batch_size: int
    cosines: Tensor  # (draws,)
    norm_ratios: Tensor  # (draws,)


def gradient_vector(network: Network, split: Split, convention: str, engine: str) -> Tensor:
    """∇C of the cost averaged over ``split``, every ∂C/∂W^l and ∂C/∂b^l in one vector (P,),
    float64."""
    return torch.cat(
        [g.flatten() for pair in full_gradient(network, split, convention, engine) for g in pair]
    ).double()


def mini_batches(
    count: int, batch_size: int, draws: int, generator: torch.Generator
) -> list[Tensor]:
    """``draws`` mini-batches of indices as SGD draws them: epoch after epoch, a fresh random order
    cut into batches (the smaller last batch of an epoch left out)."""
    batches = []
    while len(batches) < draws:
        epoch = shuffled_batches(count, batch_size, generator)
        batches += [batch for batch in epoch if len(batch) == batch_size]
    return batches[:draws]


def gradient_quality(
    network: Network,
    split: Split,
    convention: str,
    engine: str,
    generator: torch.Generator,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    draws: int = DRAWS,
) -> list[GradientQuality]:
    """For each batch size (at most the training set: there, the one mini-batch of all of it), the
    cosines and norm ratios of ``draws`` random mini-batch gradients to the full one."""
    full = gradient_vector(network, split, convention, engine)
    results = []
    for batch_size in sorted({min(size, len(split)) for size in batch_sizes}):
        cosines, ratios = [], []
        for indices in mini_batches(
            len(split), batch_size, 1 if batch_size == len(split) else draws, generator
        ):
            estimate = gradient_vector(network, split[indices], convention, engine)
            cosines.append(estimate @ full / (estimate.norm() * full.norm()))
            ratios.append(estimate.norm() / full.norm())
        results.append(GradientQuality(batch_size, torch.stack(cosines), torch.stack(ratios)))
    return results
