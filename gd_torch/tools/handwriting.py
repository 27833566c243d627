"""Your own handwriting, prepared the way the MNIST digits were made, and what the network says it
is.

MNIST's digits are light on a dark background, scaled (keeping their aspect ratio) to fit
a 20x20 box, and placed in a 28x28 field so that their centre of mass is at the centre.
``prepare`` does the same to any photo or drawing of one digit:

    grayscale in [0, 1] → invert if the background is light
    → background to 0, brightest ink to 1 → crop to the ink → scale the longer side to 20 pixels
    → centre of mass to row 14, column 14 of 28x28
"""

import io
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gd_torch.core.errors import GdTorchError, os_error_message
from gd_torch.core.files import write_new_file

FIELD = 28  # MNIST's image side
BOX = 20  # the longer side of the digit inside the field
# pixels at least this bright (after the background is taken away) count as ink when cropping
INK = 0.1
MAX_PIXELS = 64_000_000  # decoded at most (256 MB as RGBA); larger images are refused
LONG_SIDE = 2048  # larger images are reduced to this before the digit is found: 20 pixels remain
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def read_grayscale(path: str | Path) -> Tensor:
    """The image at ``path`` as (height, width) brightness in [0, 1], at most LONG_SIDE on its
    longer side; transparent pixels count as white.

    Any image Pillow reads, in any mode: 1-bit, 8-bit gray or palette, RGB, CMYK, YCbCr, with or
    without alpha, and 16- and 32-bit integer or floating-point pixels (scaled by their range).
    Memory stays bounded: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size when that is still
    larger than LONG_SIDE (``draft``), an image beyond MAX_PIXELS is refused before decoding, and
    a large one is reduced before it becomes floats.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if path.is_dir():
        raise GdTorchError(f"{path} is a folder, not an image")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size is checked below
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore")  # Pillow's notes on palettes, EXIF, ... are not errors
            image.draft(None, (LONG_SIDE, LONG_SIDE))
            if image.width * image.height > MAX_PIXELS:
                raise GdTorchError(
                    f"{path} is {image.width}x{image.height} pixels: gd_torch reads images of up "
                    f"to {MAX_PIXELS // 1_000_000} megapixels (a digit needs 28x28): scale it down"
                )
            gray = torch.from_numpy(_brightness(_reduced(ImageOps.exif_transpose(image))))
    except FileNotFoundError:
        raise GdTorchError(f"image {path} not found") from None
    except PermissionError as error:
        raise GdTorchError(f"cannot read the image {os_error_message(error)}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # Pillow's ways to refuse
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GdTorchError(f"{path} is not an image that Pillow can read ({detail})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return gray


def _reduced(image):
    """At most LONG_SIDE on the longer side: each block of pixels averaged (``Image.reduce``),
    before the image becomes floats, so that memory stays near the decoded image's."""
    factor = math.ceil(max(image.size) / LONG_SIDE)
    if factor <= 1:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce cannot average (1-bit, palettes): their colours first
        numeric = image.mode in ("I", "F") or image.mode.startswith("I;")
        return image.convert("F" if numeric else "RGBA").reduce(factor)


def _brightness(image) -> np.ndarray:
    """A Pillow image of any mode as float32 brightness in [0, 1], transparency as white."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;"):  # numbers, not 8-bit levels
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), posinf=0.0, neginf=0.0)
        if image.mode.startswith("I;16"):
            low, high = 0.0, 65535.0
        else:  # 16-bit PNGs open as "I" too; floats are often 0..1
            high = next((top for top in (1.0, 255.0, 65535.0) if values.max() <= top), values.max())
            low = min(0.0, values.min())
        return ((values - low) / max(high - low, 1e-300)).astype(np.float32)
    if image.mode in ("La", "RGBa"):  # premultiplied alpha: back to plain colours first
        image = image.convert(image.mode[:-1] + "A")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    if image.mode not in ("L", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, palettes, 1-bit: to screen colours
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


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
        if show:  # beside the image, never over a file that is there (gd_torch.core.files)
            png = io.BytesIO()
            Image.fromarray((field * 255).round().to(torch.uint8).numpy()).save(png, "PNG")
            shown = write_new_file(path.with_name(f"{path.stem}.prepared.png"), png.getvalue())
            print(f"  what the network saw (28x28): {shown}", file=out)
    return digits
