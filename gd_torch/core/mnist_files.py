"""The four MNIST files: where they go, what their IDX headers must say, their checksums; and
what torchvision actually reads, checked.

IDX layout (big-endian): a magic number 0x0000_08_0D (unsigned bytes, D dimensions), then D
32-bit sizes, then the data. Images are 0x00000803 with sizes (N, 28, 28); labels are
0x00000801 with size (N,) and values 0..9.

torchvision.datasets.MNIST(root) reads root/MNIST/raw, except when root/MNIST/processed holds
both training.pt and test.pt (its legacy layout, still found in archives people share): then it
reads those instead, whatever raw/ holds. ``legacy_files`` says when; ``check_loaded`` checks what
was read, from either, as tensors: count, shape, dtype and label range.
"""

import hashlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gd_torch.core.errors import GdTorchError, os_error_message


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


def legacy_files(root: str | Path) -> tuple[Path, Path] | None:
    """(training.pt, test.pt) of root/MNIST/processed when torchvision reads them instead of
    raw/ (both are files), else None."""
    folder = Path(root) / "MNIST" / "processed"
    files = folder / "training.pt", folder / "test.pt"
    return files if all(path.is_file() for path in files) else None


LEGACY = "torchvision's legacy layout, which it reads instead of raw/"


def read_legacy(path: Path) -> tuple[Tensor, Tensor]:
    """(images, labels) of a legacy training.pt / test.pt, loaded as torchvision loads it (only
    tensors: weights_only), and checked."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GdTorchError(
            f"{path} ({LEGACY}) holds Python objects other than tensors, and is not read"
        ) from None
    except OSError:
        raise
    except Exception as error:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GdTorchError(f"{path} ({LEGACY}) is not a readable torch file ({detail})") from None
    if not isinstance(loaded, tuple | list) or len(loaded) != 2:
        raise GdTorchError(f"{path} ({LEGACY}) does not hold the pair (images, labels)")
    check_loaded(loaded[0], loaded[1], f"{path} ({LEGACY})")
    return loaded[0], loaded[1]


def check_loaded(images: object, labels: object, source: str) -> None:
    """Refuse MNIST as loaded unless it is N ≥ 1 images (N, 28, 28) of uint8 pixels and N
    integer labels in 0..9: whatever file it came from, this is what training would use."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 3:
        kind = (
            f"a {images.dtype} tensor of {images.dim()} dimensions"
            if isinstance(images, Tensor)
            else f"a {type(images).__name__}"
        )
        raise GdTorchError(f"{source}: its images are {kind}, not (N, 28, 28) uint8 pixels")
    if tuple(images.shape[1:]) != (28, 28):
        raise GdTorchError(f"{source}: its images are {tuple(images.shape[1:])}, not 28x28")
    if len(images) == 0:
        raise GdTorchError(f"{source}: it holds no images")
    if (
        not isinstance(labels, Tensor)
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
        or tuple(labels.shape) != (len(images),)
    ):
        raise GdTorchError(
            f"{source}: it does not hold one integer label for each of its {len(images):,} images"
        )
    if labels.min() < 0 or labels.max() > 9:
        bad = labels.max() if labels.max() > 9 else labels.min()
        raise GdTorchError(f"{source}: label {int(bad)} out of range 0..9")


def idx_of(tensor: Tensor) -> bytes:
    """The IDX file that holds ``tensor`` (uint8 images or integer labels), header included."""
    magic = IMAGE_MAGIC if tensor.dim() == 3 else LABEL_MAGIC
    header = struct.pack(f">I{tensor.dim()}I", magic, *tensor.shape)
    return header + tensor.to(torch.uint8).contiguous().numpy().tobytes()


def where_files_go(root: str | Path) -> str:
    names = ", ".join(f.name for f in MNIST_FILES)
    return f"put the four uncompressed files ({names}) in {raw_folder(root)}/"


def idx_problem(path: Path, file: MnistFile, data: bytes | None = None) -> str | None:
    """What is wrong with an IDX file (header, size, label range), or None when it is sound;
    ``data`` is its bytes when they have been read."""
    try:
        data = path.read_bytes() if data is None else data
    except OSError as error:
        return f"{path}: cannot be read ({os_error_message(error, name_files=False)})"
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


def read_idx(path: Path, file: MnistFile) -> Tensor:
    """The uint8 images (N, 28, 28) or labels (N,) of the IDX file ``path``, read as
    torchvision.datasets.MNIST reads raw/ (``read_sn3_pascalvincent_tensor``: the bytes after the
    header, as they are), and refused, naming the problem, unless sound (``idx_problem``)."""
    data = path.read_bytes()
    if problem := idx_problem(path, file, data):
        raise GdTorchError(problem)
    values = torch.frombuffer(
        bytearray(data), dtype=torch.uint8, offset=16 if file.is_images else 8
    )
    return values.view(-1, 28, 28) if file.is_images else values


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
            with path.open("rb") as header:  # the count, not the whole file again
                counts[file.name] = struct.unpack(">I", header.read(8)[4:8])[0]
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


SPLITS = {"training": (MNIST_FILES[0], MNIST_FILES[1]), "test": (MNIST_FILES[2], MNIST_FILES[3])}


def legacy_against_raw(root: str | Path, split: str, images: Tensor, labels: Tensor) -> str | None:
    """Why the legacy ``split`` ("training" or "test") must not be read: raw/ holds that split
    too, and different digits (torchvision would silently take the legacy ones); None when raw/
    lacks it or holds the same."""
    files = legacy_files(root)
    assert files is not None  # asked only when torchvision reads them
    legacy = files[split == "test"]
    image_file, label_file = (raw_folder(root) / file.name for file in SPLITS[split])
    if not (image_file.is_file() and label_file.is_file()):
        return None
    if image_file.read_bytes() == idx_of(images) and label_file.read_bytes() == idx_of(labels):
        return None
    return (
        f"{legacy} ({LEGACY}) holds {len(images):,} {split} images that differ from the "
        f"{(image_file.stat().st_size - 16) // 784:,} of {image_file}: move {legacy.parent} "
        "away to use raw/ (or raw/ away to use it)"
    )


def is_official(split: str, images: Tensor, labels: Tensor) -> bool:
    """Whether loaded tensors are exactly the official MNIST split (the md5 of their IDX files)."""
    image_file, label_file = SPLITS[split]
    return (
        hashlib.md5(idx_of(images)).hexdigest() == image_file.md5
        and hashlib.md5(idx_of(labels)).hexdigest() == label_file.md5
    )


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_report(root: str | Path) -> tuple[list[str], str | None]:
    """What ``gd-torch check-data`` prints about root: what training reads from it, file by file,
    and the problem that would stop training (None when there is none)."""
    lines, problems, unofficial = [], [], 0
    legacy = legacy_files(root)
    if legacy:
        lines.append(f"training reads {legacy[0].parent}/training.pt and test.pt ({LEGACY}):")
        for split, path in zip(SPLITS, legacy):
            try:
                images, labels = read_legacy(path)
                against_raw = legacy_against_raw(root, split, images, labels)
            except (GdTorchError, OSError) as error:
                problems.append(os_error_message(error) if isinstance(error, OSError) else error)
                lines.append(f"  {path.name:<24} {problems[-1]}")
                continue
            official = is_official(split, images, labels)
            unofficial += not official
            lines.append(
                f"  {path.name:<24} {len(images):>11,} images  "
                + (
                    "official (the digits of the official files)"
                    if official
                    else "sound, but not the official MNIST"
                )
            )
            if against_raw:
                problems.append(against_raw)
    legacy_problems = len(problems)
    folder = raw_folder(root)
    lines.append(
        f"MNIST files in {folder}:"
        + (" (not read: torchvision reads processed/)" if legacy else "")
    )
    for file in MNIST_FILES:
        path = folder / file.name
        try:
            if not path.is_file():
                lines.append(f"  {file.name:<24} missing")
                problems += [] if legacy else [f"{path} is missing"]
                continue
            problem = idx_problem(path, file)
            official = problem is None and md5(path) == file.md5
            size = path.stat().st_size
        except OSError as error:
            problem, official, size = (
                f"{path}: cannot be read ({os_error_message(error, name_files=False)})",
                False,
                0,
            )
        if problem:
            problems.append(problem)
        elif not legacy:
            unofficial += not official
        status = problem or (
            "official (md5 matches)"
            if official
            else "sound IDX file, but not the official one (md5 differs)"
        )
        lines.append(f"  {file.name:<24} {size:>11,} bytes  {status}")
    raw_problems = len(problems) - legacy_problems
    if legacy_problems:
        return lines, str(problems[0])
    if raw_problems:
        return lines, (
            f"{raw_problems} of the 4 MNIST files are missing or broken: {where_files_go(root)}"
        )
    what = "both legacy files are" if legacy else "all four files are"
    lines.append(
        f"{what} present and sound"
        + (
            ", and they are the official MNIST."
            if not unofficial
            else f"; {unofficial} differ from the official MNIST."
        )
    )
    return lines, None
