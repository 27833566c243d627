"""Your own handwriting, prepared the way the MNIST digits were made, and what the network says it
is.

MNIST's digits are light on a dark background, scaled (keeping their aspect ratio) to fit
a 20x20 box, and placed in a 28x28 field so that their centre of mass is at the centre.
``prepare`` does the same to any photo or drawing of one digit:

    grayscale in [0, 1] → invert if the background is light
    → background to 0, brightest ink to 1 → crop to the ink → scale the longer side to 20 pixels
    → centre of mass to row 14, column 14 of 28x28
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from gd_torch.core.errors import GdTorchError

FIELD = 28  # MNIST's image side
BOX = 20  # the longer side of the digit inside the field
# pixels at least this bright (after the background is taken away) count as ink when cropping
INK = 0.1


def read_grayscale(path: str | Path) -> Tensor:
    """The image at ``path`` as (height, width) brightness in [0, 1]; transparent pixels count as
    white."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGBA")
    except FileNotFoundError:
        raise GdTorchError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise GdTorchError(
            f"{path} is not an image that PIL can read ({type(error).__name__})"
        ) from None
    white = Image.new("RGBA", image.size, "white")
    gray = Image.alpha_composite(white, image).convert("L")
    return (
        torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
        .reshape(gray.height, gray.width)
        .float()
        / 255
    )


def prepare(gray: Tensor) -> Tensor:
    """A (height, width) grayscale picture of one digit -> the (28, 28) MNIST-style input, light
    on dark, in [0, 1]."""
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = border.median()
    if background > 0.5:  # dark ink on light paper: MNIST is the other way round
        gray, background = 1 - gray, 1 - background
    contrast = gray.max() - background
    if contrast < INK:
        raise GdTorchError(
            "no digit found: the image is blank (no pixel stands out from the background)"
        )
    ink = ((gray - background) / contrast).clamp(0, 1)

    rows, columns = (
        (ink > INK).any(dim=1).nonzero().flatten(),
        (ink > INK).any(dim=0).nonzero().flatten(),
    )
    ink = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]  # crop to the ink
    scale = BOX / max(ink.shape)
    size = (max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale)))
    digit = F.interpolate(
        ink[None, None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0, 0]  # (h, w), max(h, w) = 20

    mass = digit.sum()
    centre_y = (
        digit.sum(dim=1) * torch.arange(size[0])
    ).sum() / mass  # centre of mass in row and column indices
    centre_x = (digit.sum(dim=0) * torch.arange(size[1])).sum() / mass
    top, left = (
        round(FIELD // 2 - centre_y.item()),
        round(FIELD // 2 - centre_x.item()),
    )  # to (14, 14), where MNIST has it
    field = torch.zeros(FIELD, FIELD)
    y0, x0 = max(top, 0), max(left, 0)  # paste, cutting off whatever falls outside the field
    y1, x1 = min(top + size[0], FIELD), min(left + size[1], FIELD)
    field[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return field.clamp(0, 1)


def predict(
    checkpoint: str | Path, images: list[str | Path], show: bool = False, out=None
) -> list[int]:
    """Print the digit the checkpoint's network sees in each image and its ten output
    activations; returns the digits."""
    from PIL import Image

    from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint

    out = out or sys.stdout  # looked up now, so that a redirected sys.stdout is used
    network, settings = network_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    digits = []
    for path in map(Path, images):
        field = prepare(read_grayscale(path))
        with torch.inference_mode():
            activations = network(field.reshape(1, FIELD * FIELD).to(settings.torch_dtype))[
                0
            ]  # (10,)
        digits.append(int(activations.argmax()))
        print(
            f"{path}: {digits[-1]}   activations "
            + "  ".join(f"{j}:{a:.3f}" for j, a in enumerate(activations.tolist())),
            file=out,
        )
        if show:
            shown = path.with_name(f"{path.stem}.prepared.png")
            Image.fromarray((field * 255).round().to(torch.uint8).numpy()).save(shown)
            print(f"  what the network saw (28x28): {shown}", file=out)
    return digits
