"""The four MNIST files: where they go, what their IDX headers must say, their checksums.

IDX layout (big-endian): a magic number 0x0000_08_0D (unsigned bytes, D dimensions), then D
32-bit sizes, then the data. Images are 0x00000803 with sizes (N, 28, 28); labels are
0x00000801 with size (N,) and values 0..9.
"""

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from gd_torch.core.errors import GdTorchError


@dataclass(frozen=True)
class MnistFile:
    name: str
    count: int
    is_images: bool
    md5: str  # of the uncompressed official file


MNIST_FILES = (
    MnistFile("train-images-idx3-ubyte", 60_000, True, "6bbc9ace898e44ae57da46a324031adb"),
    MnistFile("train-labels-idx1-ubyte", 60_000, False, "a25bea736e30d166cdddb491f175f624"),
    MnistFile("t10k-images-idx3-ubyte", 10_000, True, "2646ac647ad5339dbf082846283269ea"),
    MnistFile("t10k-labels-idx1-ubyte", 10_000, False, "27ae3e4e09519cfbb04c329615203637"),
)
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


def raw_folder(root: str | Path) -> Path:
    """torchvision.datasets.MNIST(root) reads its files from root/MNIST/raw."""
    return Path(root) / "MNIST" / "raw"


def where_files_go(root: str | Path) -> str:
    names = ", ".join(f.name for f in MNIST_FILES)
    return f"put the four uncompressed files ({names}) in {raw_folder(root)}/"


def idx_problem(path: Path, file: MnistFile) -> str | None:
    """What is wrong with an IDX file (header, size, label range), or None when it is sound."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"{path}: cannot be read ({error.strerror})"
    expected_magic = IMAGE_MAGIC if file.is_images else LABEL_MAGIC
    header_size = 16 if file.is_images else 8
    if len(data) < header_size:
        return (
            f"{path}: truncated: {len(data)} bytes, shorter than the {header_size}-byte IDX header"
        )
    magic, count = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        return (
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"({'images' if file.is_images else 'labels'})"
        )
    if file.is_images:
        rows, columns = struct.unpack(">II", data[8:16])
        if (rows, columns) != (28, 28):
            return f"{path}: images are {rows}x{columns}, expected 28x28"
    expected_size = header_size + count * (784 if file.is_images else 1)
    if len(data) != expected_size:
        return (
            f"{path}: {'truncated' if len(data) < expected_size else 'too long'}: "
            f"{len(data)} bytes, the header's {count} items need {expected_size}"
        )
    if not file.is_images and count and max(data[header_size:]) > 9:
        return f"{path}: label {max(data[header_size:])} out of range 0..9"
    return None


def check_files(root: str | Path, missing_ok: bool = True) -> None:
    """Refuse, naming the file and the problem, any MNIST file present under root that is unsound.

    Missing files are left to torchvision, which downloads them, unless not ``missing_ok``.
    """
    folder = raw_folder(root)
    counts = {}
    for file in MNIST_FILES:
        path = folder / file.name
        if not path.is_file() and not missing_ok:
            raise GdTorchError(
                f"{path} is missing (and --no-download was given): {where_files_go(root)}"
            )
        if path.is_file():
            problem = idx_problem(path, file)
            if problem:
                raise GdTorchError(problem)
            counts[file.name] = struct.unpack(">I", path.read_bytes()[4:8])[0]
    for images, labels in ((MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])):
        if (
            images.name in counts
            and labels.name in counts
            and counts[images.name] != counts[labels.name]
        ):
            raise GdTorchError(
                f"{folder / images.name} holds {counts[images.name]} images but "
                f"{folder / labels.name} {counts[labels.name]} labels"
            )


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
