"""MNIST as in-memory tensors, and the shuffled mini-batches of stochastic gradient descent."""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core.cost import one_hot
from gd_torch.core.errors import GdTorchError
from gd_torch.core.mnist_files import (
    LEGACY,
    MNIST_FILES,
    SPLITS,
    check_files,
    check_loaded,
    legacy_against_raw,
    legacy_files,
    raw_folder,
    read_idx,
    read_legacy,
    where_files_go,
)


def activations(pixels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel values 0..255 (uint8) -> the network's input activations in [0, 1]."""
    return pixels.to(dtype).div_(255)  # in place: one (N, 784) tensor of fresh memory, not two


@dataclass
class Split:
    """One part of MNIST: images (N, 784) float in [0, 1], labels (N,) int64, one-hot targets
    (N, 10).

    ``pixels`` holds the same images as read, (N, 784) uint8 0..255, when they came from MNIST's
    files: --compile gathers its mini-batches from them, a quarter of the bytes of ``images``.
    """

    images: Tensor
    labels: Tensor
    pixels: Tensor | None = None

    def __post_init__(self) -> None:
        self.targets = one_hot(self.labels, self.images.dtype)

    @classmethod
    def from_pixels(
        cls, pixels: Tensor, labels: Tensor, dtype: torch.dtype = torch.float32
    ) -> "Split":
        return cls(activations(pixels, dtype), labels, pixels)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, rows: slice | Tensor) -> "Split":
        """``split[:1000]``: the examples in ``rows``."""
        return Split(
            self.images[rows], self.labels[rows], None if self.pixels is None else self.pixels[rows]
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Split":
        """On ``device``, with the images (and targets) as ``dtype`` when given."""
        pixels = None if self.pixels is None else self.pixels.to(device)
        if dtype is not None and pixels is not None and self.images.dtype != dtype:
            return Split(
                activations(pixels, dtype), self.labels.to(device), pixels
            )  # exact in any dtype
        return Split(self.images.to(device, dtype), self.labels.to(device), pixels)


@dataclass
class Mnist:
    train: Split
    test: Split
    validation: Split | None = None
    source: str = ""  # the files the digits were read from (load_mnist), for the start line

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Mnist":
        validation = None if self.validation is None else self.validation.to(device, dtype)
        return Mnist(
            self.train.to(device, dtype), self.test.to(device, dtype), validation, self.source
        )

    def head(self, count: int) -> "Mnist":
        """The first ``count`` examples of each split (``--dry-run``)."""
        validation = None if self.validation is None else self.validation[:count]
        return Mnist(self.train[:count], self.test[:count], validation, self.source)


def _read(root: str, train: bool, download: bool) -> Split:
    """One split as torchvision.datasets.MNIST reads it, checked: the legacy processed/ file when
    there is one (read as torchvision reads it, ``torch.load`` of tensors only), else raw/'s IDX
    files, read as torchvision reads them (``read_idx``) when they are there, else downloaded by
    torchvision. Only the download imports torchvision, which takes seconds."""
    split = "training" if train else "test"
    legacy = legacy_files(root)
    if legacy:
        images, labels = read_legacy(legacy[not train])
        if problem := legacy_against_raw(root, split, images, labels):
            raise GdTorchError(problem)
        return Split.from_pixels(images.reshape(len(images), 28 * 28), labels.long())
    image_kind, label_kind = SPLITS[split]
    image_file, label_file = raw_folder(root) / image_kind.name, raw_folder(root) / label_kind.name
    if image_file.is_file() and label_file.is_file():
        images, labels = read_idx(image_file, image_kind), read_idx(label_file, label_kind)
        check_loaded(images, labels, str(image_file))
        return Split.from_pixels(images.reshape(len(images), 28 * 28), labels.long())
    import torchvision

    try:
        dataset = torchvision.datasets.MNIST(root, train=train, download=download)
    except OSError:
        raise  # said by the command line's one place for OS errors
    except Exception as error:
        # torchvision raises RuntimeError, URLError, ... when it cannot get the files
        reason = (
            "could not be downloaded" if download else "is not there and --no-download was given"
        )
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GdTorchError(
            f"MNIST {reason} ({detail}): {where_files_go(root)}, or set --data-root / GD_TORCH_DATA"
        ) from None
    check_loaded(
        dataset.data, dataset.targets, str(raw_folder(root) / MNIST_FILES[2 * (not train)].name)
    )
    return Split.from_pixels(
        dataset.data.reshape(len(dataset.data), 28 * 28), dataset.targets.long()
    )


def load_mnist(root: str, download: bool = True, validation_size: int = 0) -> Mnist:
    """The 60,000 training and 10,000 test digits; the last ``validation_size`` training images
    are held out as a validation set (Nielsen uses 10,000, leaving 50,000 to train on)."""
    legacy = legacy_files(root)
    missing = [file.name for file in MNIST_FILES if not (raw_folder(root) / file.name).is_file()]
    if download and not legacy and 0 < len(missing) < len(MNIST_FILES):
        raise GdTorchError(
            f"{raw_folder(root)} lacks {', '.join(missing)}, and torchvision's download of MNIST "
            "would replace the files that are there too: put the missing ones beside them, or "
            "move the folder away"
        )
    if raw_folder(root).exists() or not (download or legacy):
        check_files(root, missing_ok=download or bool(legacy))
    train, test = _read(root, True, download), _read(root, False, download)
    if validation_size >= len(train):
        raise GdTorchError(
            f"--validation-size {validation_size} leaves no training images "
            f"(there are {len(train)})"
        )
    source = f"{legacy[0].parent} ({LEGACY})" if legacy else str(raw_folder(root))
    if validation_size == 0:
        return Mnist(train, test, source=source)
    keep = len(train) - validation_size
    return Mnist(train[:keep], test, train[keep:], source)


def shuffled_order(num_examples: int, generator: torch.Generator) -> Tensor:
    """One epoch of SGD: a fresh random order of all examples (indices), the order the
    epoch's mini-batches take them in."""
    return torch.randperm(num_examples, generator=generator)


def shuffled_batches(
    num_examples: int, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, ...]:
    """One epoch of SGD: a fresh random order of all examples cut into mini-batches of indices.

    Every example is visited exactly once; the last batch is smaller when batch_size does not
    divide num_examples.
    """
    return mini_batches(shuffled_order(num_examples, generator), batch_size)


def mini_batches(order: Tensor, batch_size: int) -> tuple[Tensor, ...]:
    """``order`` (example indices, in SGD's order) cut into mini-batches of ``batch_size``, the
    last one smaller when batch_size does not divide it; none at all for no examples (a run
    resumed at the end of an epoch), where ``split`` would give one empty batch."""
    return order.split(batch_size) if len(order) else ()
