"""Small, learnable stand-ins for MNIST that tests make themselves (no network, no real data).

Digit k is drawn as a bright horizontal band at rows 2k+4..2k+6 plus noise, so a network can
learn it in a few epochs; the files are real IDX files that torchvision reads.
"""

import struct
from pathlib import Path

import torch

from gd_torch.core.data import Mnist, Split
from gd_torch.core.mnist_files import MNIST_FILES, raw_folder


def synthetic_digits(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (count, 28, 28) uint8, labels (count,) int64)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = torch.randint(0, 60, (count, 28, 28), generator=generator, dtype=torch.int64)
    for row in range(3):
        images[torch.arange(count), 2 * labels + 4 + row, 4:24] += 180
    return images.clamp(0, 255).to(torch.uint8), labels


def idx_bytes(array: torch.Tensor, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_mnist_files(root: Path, train_count: int = 600, test_count: int = 200) -> Path:
    """Write the four IDX files under root/MNIST/raw as torchvision expects; returns root."""
    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_digits(train_count, seed=1)
    test_images, test_labels = synthetic_digits(test_count, seed=2)
    arrays = (train_images, train_labels, test_images, test_labels)
    for file, array in zip(MNIST_FILES, arrays):
        (folder / file.name).write_bytes(idx_bytes(array, 0x803 if file.is_images else 0x801))
    return root


def synthetic_mnist(train_count: int = 600, test_count: int = 200) -> Mnist:
    """The same digits as ``write_mnist_files``, directly as tensors."""
    splits = []
    for count, seed in ((train_count, 1), (test_count, 2)):
        images, labels = synthetic_digits(count, seed)
        splits.append(Split.from_pixels(images.reshape(count, 784), labels))
    return Mnist(*splits)
