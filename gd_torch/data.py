"""MNIST as in-memory tensors, and the shuffled mini-batches of stochastic gradient descent."""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.cost import one_hot
from gd_torch.errors import GdTorchError
from gd_torch.mnist_files import check_files, raw_folder, where_files_go


@dataclass
class Split:
    """One part of MNIST: images (N, 784) float in [0, 1], labels (N,) int64, one-hot targets (N, 10)."""

    images: Tensor
    labels: Tensor

    def __post_init__(self):
        self.targets = one_hot(self.labels, self.images.dtype)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, count: int) -> "Split":
        return Split(self.images[:count], self.labels[:count])


@dataclass
class Mnist:
    train: Split
    test: Split
    validation: Split | None = None

    def to(self, device) -> "Mnist":
        return Mnist(self.train.to(device), self.test.to(device), self.validation.to(device) if self.validation else None)


def _read(root: str, train: bool, download: bool) -> Split:
    import torchvision  # imported here: it takes a second, and most commands never need it

    try:
        dataset = torchvision.datasets.MNIST(root, train=train, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ... when it cannot get the files
        reason = "could not be downloaded" if download else "is not there and --no-download was given"
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GdTorchError(f"MNIST {reason} ({detail}): {where_files_go(root)}, or set --data-root / GD_TORCH_DATA") from None
    images = dataset.data.reshape(len(dataset.data), 28 * 28).float() / 255  # pixels 0..255 -> activations in [0, 1]
    return Split(images, dataset.targets.long())


def load_mnist(root: str, download: bool = True, validation_size: int = 0) -> Mnist:
    """The 60,000 training and 10,000 test digits; the last ``validation_size`` training images
    are held out as a validation set (Nielsen uses 10,000, leaving 50,000 to train on)."""
    if raw_folder(root).exists() or not download:
        check_files(root, missing_ok=download)
    train, test = _read(root, True, download), _read(root, False, download)
    if validation_size >= len(train):
        raise GdTorchError(f"--validation-size {validation_size} leaves no training images (there are {len(train)})")
    if validation_size == 0:
        return Mnist(train, test)
    keep = len(train) - validation_size
    return Mnist(train.head(keep), test, Split(train.images[keep:], train.labels[keep:]))


def shuffled_batches(num_examples: int, batch_size: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    """One epoch of SGD: a fresh random order of all examples cut into mini-batches of indices.

    Every example is visited exactly once; the last batch is smaller when batch_size does not
    divide num_examples.
    """
    return torch.randperm(num_examples, generator=generator).split(batch_size)
