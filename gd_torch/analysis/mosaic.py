"""Weights and digits as pictures, in numpy alone: each row of 784 values a 28x28 tile, the tiles
in a grid, coloured as in the lesson (positive green, negative red, zero black) on a scale
symmetric about zero, so that equal magnitudes look equally bright. Used by the figures of
``gd-torch analyze`` and by the dashboard's cards (gd_torch.dashboard.cards)."""

import math

import numpy as np

TILE = 28  # an input image is TILE x TILE pixels
GAP_GREY = 0.35  # the gaps between tiles, so that black reads as zero


def signed_rgb(values: np.ndarray, scale: float) -> np.ndarray:
    """Green for v > 0, red for v < 0, black for 0, brightness |v| / scale (clipped to 1);
    (..., 3)."""
    level = np.clip(values / scale, -1, 1) if scale > 0 else np.zeros_like(values)
    return np.stack([np.clip(-level, 0, 1), np.clip(level, 0, 1), np.zeros_like(level)], axis=-1)


def tile(images: np.ndarray, columns: int, gap_value: float = np.nan) -> np.ndarray:
    """(n, 28, 28) -> one (rows·29 − 1, columns·29 − 1) mosaic, row-major, 1-pixel gaps of
    ``gap_value``."""
    rows = math.ceil(len(images) / columns)
    mosaic = np.full((rows * (TILE + 1) - 1, columns * (TILE + 1) - 1), gap_value)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        mosaic[r * (TILE + 1) : r * (TILE + 1) + TILE, c * (TILE + 1) : c * (TILE + 1) + TILE] = (
            image
        )
    return mosaic


def signed_tiles(values: np.ndarray, scale: np.ndarray | float, columns: int) -> np.ndarray:
    """Rows of ``values`` (n, 784) as ``signed_rgb`` tiles, ``columns`` to a row, full brightness
    at |v| = ``scale`` (one for all, or (n, 1): one per row), grey gaps; (height, width, 3)."""
    mosaic = tile((values / np.maximum(scale, 1e-300)).reshape(-1, TILE, TILE), columns)
    rgb = signed_rgb(np.nan_to_num(mosaic), 1.0)
    rgb[np.isnan(mosaic)] = GAP_GREY
    return rgb
