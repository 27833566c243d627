"""The dashboard's pictures (gd_torch.dashboard.cards): what their pixels show."""

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch

from gd_torch.dashboard.cards import CARD_SIZE, confusion_card, font_file, weight_tiles

ZOOM = 4
TITLE_HEIGHT = 4 * 6 * ZOOM  # weight_tiles' two lines of title


def tile_pixels(card: np.ndarray, neuron: int, columns: int) -> np.ndarray:
    """Neuron ``neuron``'s 28x28 tile of a weight_tiles card, (28·ZOOM, 28·ZOOM, 3)."""
    row, column = divmod(neuron, columns)
    top, left = TITLE_HEIGHT + row * 29 * ZOOM, column * 29 * ZOOM
    return card[top : top + 28 * ZOOM, left : left + 28 * ZOOM]


def test_weight_tiles_colour_each_neuron_by_sign_at_its_own_or_one_scale():
    weights = torch.zeros(16, 784)
    weights[0] = 2.0  # green at full brightness on both scales
    weights[1] = -0.2  # red: full on its own scale, a tenth on the layer's
    columns = 6  # ⌈√(1.8 · 16)⌉
    own, shared = (weight_tiles(weights, "after epoch 1", per_neuron) for per_neuron in (1, 0))
    assert (
        own.shape == shared.shape == (TITLE_HEIGHT + 3 * 29 * ZOOM - ZOOM, 6 * 29 * ZOOM - ZOOM, 3)
    )
    assert own.dtype == np.uint8
    for card in (own, shared):
        assert (tile_pixels(card, 0, columns) == (0, 255, 0)).all()
        assert (tile_pixels(card, 2, columns) == 0).all()  # zero weights: black
    assert (tile_pixels(own, 1, columns) == (255, 0, 0)).all()
    assert (tile_pixels(shared, 1, columns) == (26, 0, 0)).all()  # 0.2 / 2 of 255, rounded
    title = own[:TITLE_HEIGHT]
    assert (title == 255).all(axis=-1).mean() > 0.8 and (title < 100).all(axis=-1).any()
    assert not np.array_equal(own[:TITLE_HEIGHT], shared[:TITLE_HEIGHT])  # they say which


def cell_corner(card: np.ndarray, true: int, answer: int) -> np.ndarray:
    """A pixel of cell (true, answer) of the confusion card, away from its number."""
    cell, left, top = 34, 54, 36
    return card[top + true * cell + 3, left + answer * cell + 3]


def shade(level: float, toward: tuple[float, float, float]) -> tuple[int, ...]:
    """White (level 0) to ``toward`` (level 1), as the card's pixels."""
    return tuple(int(v) for v in np.rint(255 * (1 - level * (1 - np.array(toward)))))


GREEN, RED = (0.4, 0.85, 0.4), (0.9, 0.3, 0.3)


def test_the_confusion_card_is_green_where_right_and_reddest_at_the_largest_mistake():
    confusion = torch.diag(torch.full((10,), 90))
    confusion[4, 9] = 10  # 10% of the 4s read as 9: the largest mistake
    confusion[7, 1] = 5  # 5 of the 95 sevens read as 1
    card = confusion_card(confusion, "test digits, after epoch 2")
    assert card.shape == (CARD_SIZE[1], CARD_SIZE[0], 3)
    assert tuple(cell_corner(card, 0, 0)) == shade(1.0, GREEN)  # all right: full green
    assert tuple(cell_corner(card, 4, 4)) == shade(0.9, GREEN)
    assert tuple(cell_corner(card, 4, 9)) == shade(1.0, RED)
    assert tuple(cell_corner(card, 7, 1)) == shade((5 / 95) / 0.1, RED)
    assert tuple(cell_corner(card, 2, 3)) == (255, 255, 255)  # none
    notes = card[:, 54 + 340 + 20 :]
    assert (notes < 100).all(axis=-1).any()  # the accuracy and the mistakes are written


def test_the_confusion_card_of_no_digits_draws():
    card = confusion_card(torch.zeros(10, 10, dtype=torch.int64), "test digits, untrained")
    assert card.shape == (CARD_SIZE[1], CARD_SIZE[0], 3)
    assert tuple(cell_corner(card, 3, 3)) == (255, 255, 255)


def test_the_cards_write_in_matplotlibs_dejavu_sans_without_importing_matplotlib():
    assert font_file() == Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    drawing = (
        "import sys, torch; from gd_torch.dashboard import cards; "
        "cards.weight_tiles(torch.randn(16, 784), 'after epoch 1', True); "
        "cards.confusion_card(torch.eye(10, dtype=torch.int64), 'test digits'); "
        "print('matplotlib' in sys.modules)"
    )
    drawn = subprocess.run(
        [sys.executable, "-c", drawing], capture_output=True, text=True, check=True
    )
    assert drawn.stdout.strip() == "False"
