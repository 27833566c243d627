"""What the network answers: its output activations for test digits and for random noise, and
its mistakes."""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core.cost import NUM_CLASSES
from gd_torch.core.data import Split
from gd_torch.core.model import INPUT_SIZE, Network


@torch.inference_mode()
def outputs(network: Network, images: Tensor) -> Tensor:
    """Output activations a^L (n, 10) for images (n, 784); the prediction is their argmax."""
    return network(images)


def noise_images(count: int, generator: torch.Generator) -> Tensor:
    """``count`` images of independent uniform random pixels in [0, 1], (count, 784)."""
    return torch.rand(count, INPUT_SIZE, generator=generator)


@dataclass(frozen=True)
class Answers:
    """The highest output activation and the digit it names, one per image."""

    highest: Tensor  # (n,) max_j a^L_j, in (0, 1)
    digit: Tensor  # (n,) argmax_j a^L_j

    @classmethod
    def of(cls, output: Tensor) -> "Answers":
        highest, digit = output.max(dim=1)
        return cls(highest, digit)

    def digit_counts(self) -> Tensor:
        """How often each digit 0..9 is the answer, (10,)."""
        return torch.bincount(self.digit, minlength=NUM_CLASSES)


@dataclass(frozen=True)
class Mistakes:
    confusion: Tensor  # (10, 10) int: confusion[true, predicted] counts test digits
    confident_mistakes: (
        Tensor  # indices into the split of wrong answers, most confident (highest a^L) first
    )

    @classmethod
    def of(cls, output: Tensor, split: Split) -> "Mistakes":
        answers = Answers.of(output)
        labels = split.labels.to(answers.digit.device)
        confusion = torch.bincount(
            labels * NUM_CLASSES + answers.digit, minlength=NUM_CLASSES**2
        ).reshape(NUM_CLASSES, NUM_CLASSES)
        wrong = (answers.digit != labels).nonzero().flatten()
        return cls(confusion.cpu(), wrong[answers.highest[wrong].argsort(descending=True)].cpu())

    @property
    def per_digit_accuracy(self) -> Tensor:
        """For each true digit, the share of its test images answered right, (10,); NaN where
        there are none."""
        return self.confusion.diagonal() / self.confusion.sum(dim=1)
