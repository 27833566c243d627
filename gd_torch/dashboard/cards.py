"""The pictures of TensorBoard's IMAGES tab (gd_torch.dashboard.tensorboard), drawn as pixels:
numpy for the pictures, Pillow for the text, in DejaVu Sans (the font of matplotlib's figures).
A card takes a few milliseconds; the same card as a matplotlib figure took a third of a second,
and a run draws three at step 0, every --image-every epochs and after the last (a sweep, for
each of its copies).

TensorBoard's Time Series cards scale each image to fit a box about 1.8 times as wide as it is
tall (375 x 210 pixels at their default width): the cards have that shape, and text large
enough to read at that size.
"""

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from gd_torch.analysis.mosaic import signed_tiles
from gd_torch.core.cost import NUM_CLASSES

CARD_ASPECT = 1.8  # width / height of a Time Series card
CARD_SIZE = (720, 400)  # pixels (width, height): shown at about half that
CARD_FONT = 22  # pixels: 1/18 of the card's height, about 11 pixels when shown
LINE_SPACING = 0.4  # of the font's size, between the lines of a text
WHITE, BLACK, FRAME_GREY = (255, 255, 255), (0, 0, 0), (190, 190, 190)


@functools.cache
def font_file() -> Path:
    """matplotlib's own DejaVu Sans (its ``get_data_path()``), found without importing
    matplotlib, which takes 0.5-1.4 s (its settings, its colour maps) on the drawing thread of
    a run that draws no figure."""
    package = importlib.util.find_spec("matplotlib")  # a dependency of gd_torch
    assert package is not None and package.origin is not None
    return Path(package.origin).with_name("mpl-data") / "fonts" / "ttf" / "DejaVuSans.ttf"


def font(size: float) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` pixels (loaded per card: a font is not for two threads at once)."""
    return ImageFont.truetype(str(font_file()), max(1, round(size)))


def fitting_font(lines: list[str], width: float, size: float) -> ImageFont.FreeTypeFont:
    """The font at ``size`` pixels, or smaller, so that the longest of ``lines`` fits ``width``."""
    longest = max(font(size).getlength(line) for line in lines)
    return font(size * min(1.0, width / max(longest, 1.0)))


def text_block(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    lines: list[str],
    type_face: ImageFont.FreeTypeFont,
    anchor: str,
    align: str = "left",
) -> None:
    spacing = LINE_SPACING * type_face.size
    draw.multiline_text(
        xy,
        "\n".join(lines),
        fill=BLACK,
        font=type_face,
        anchor=anchor,
        spacing=spacing,
        align=align,
    )


def weight_tiles(weights: Tensor, title: str, per_neuron: bool, zoom: int = 4) -> np.ndarray:
    """Each row of ``weights`` (n, 784) as a 28x28 tile, green +, red −, black 0, the tiles laid
    out to fill a card (columns ≈ √(1.8 n)), each weight ``zoom`` x ``zoom`` pixels, under two
    lines of title; (height, width, 3) uint8.

    ``per_neuron``: each tile at full brightness at its own largest |w|, so that every neuron's
    pattern shows; otherwise one scale for all, the largest |w| of the layer, which shows which
    neurons have the large weights. The title says which.
    """
    values = weights.detach().cpu().double().numpy()
    largest = np.abs(values).max(axis=1, keepdims=True)  # (n, 1)
    scale = largest if per_neuron else largest.max()
    columns = math.ceil(math.sqrt(CARD_ASPECT * len(values)))
    rgb = np.rint(255 * signed_tiles(values, scale, columns)).astype(np.uint8)
    pixels = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    line = 6 * zoom  # pixels of title text per line: readable when the card halves the image
    title_height = 4 * line
    width = pixels.shape[1]
    card = Image.new("RGB", (width, pixels.shape[0] + title_height), WHITE)
    card.paste(Image.fromarray(pixels), (0, title_height))
    how = (
        "each neuron at its own largest |w|"
        if per_neuron
        else f"one scale: full at |w| = {largest.max():.3g}"
    )
    lines = [title, f"green +, red −, black 0; {how}"]
    type_face = fitting_font(lines, 0.96 * width, line)
    text_block(
        ImageDraw.Draw(card), (width / 2, title_height / 2), lines, type_face, "mm", "center"
    )
    return np.asarray(card)


def confusion_card(confusion: Tensor, title: str) -> np.ndarray:
    """The confusion matrix as it reads in a card: row t, column p is the share of the true digit
    t answered p, in percent; green on the diagonal (right), red off it (wrong, full red at the
    largest mistake), and beside it the accuracy and the four commonest mistakes; (400, 720, 3)
    uint8."""
    counts = confusion.numpy().astype(np.int64)
    per_digit = counts.sum(axis=1, keepdims=True)
    shares = 100 * counts / np.maximum(per_digit, 1)
    right = np.eye(NUM_CLASSES, dtype=bool)
    worst = max(shares[~right].max(), 1e-9)
    level = np.where(right, shares / 100, shares / worst)
    rgb = np.ones((*shares.shape, 3))
    rgb[right] -= level[right, None] * np.array([0.6, 0.15, 0.6])  # white to green
    rgb[~right] -= level[~right, None] * np.array([0.1, 0.7, 0.7])  # white to red

    cell, left, top = 34, 54, 36  # the matrix: 10 x 10 cells of 34 pixels, from (left, top)
    side = NUM_CLASSES * cell
    card = Image.new("RGB", CARD_SIZE, WHITE)
    cells = np.repeat(np.repeat(np.rint(255 * rgb).astype(np.uint8), cell, 0), cell, 1)
    card.paste(Image.fromarray(cells), (left, top))
    draw = ImageDraw.Draw(card)
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=FRAME_GREY)
    labels, numbers = font(CARD_FONT), font(0.7 * CARD_FONT)
    for d in range(NUM_CLASSES):  # answers along the top, true digits down the left
        centre = left + (d + 0.5) * cell
        draw.text((centre, top - 4), str(d), fill=BLACK, font=labels, anchor="ms")
        draw.text((left - 8, top + (d + 0.5) * cell), str(d), fill=BLACK, font=labels, anchor="rm")
    for (t, p), share in np.ndenumerate(shares):  # legible when the card is enlarged
        if counts[t, p] and (t == p or share >= 1):
            at = (left + (p + 0.5) * cell, top + (t + 0.5) * cell)
            draw.text(at, f"{share:.0f}", fill=BLACK, font=numbers, anchor="mm")
    true_digit = Image.new("L", (side, CARD_FONT))  # "true digit", up the left side
    ImageDraw.Draw(true_digit).text(
        (side / 2, CARD_FONT / 2), "true digit", fill=255, font=font(0.8 * CARD_FONT), anchor="mm"
    )
    card.paste(BLACK, (2, top), true_digit.rotate(90, expand=True))

    mistakes = sorted(
        (
            (counts[t, p], t, p)
            for t in range(NUM_CLASSES)
            for p in range(NUM_CLASSES)
            if t != p and counts[t, p]
        ),
        reverse=True,
    )[:4]
    lines = [
        *title.split(", "),
        f"{100 * np.trace(counts) / max(counts.sum(), 1):.1f}% of {counts.sum():,} right",
        "rows: true, columns: answer",
        "commonest mistakes:",
        *(f" {t} read as {p}: {shares[t, p]:.1f}%" for _, t, p in mistakes),
    ]
    notes = left + side + 20
    type_face = fitting_font(lines, CARD_SIZE[0] - notes - 8, CARD_FONT)
    text_block(draw, (notes, top), lines, type_face, "la")
    return np.asarray(card)
