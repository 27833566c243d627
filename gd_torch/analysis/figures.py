"""The figures of ``gd-torch analyze``, drawn with matplotlib's object API (Agg canvas, no
pyplot state).

Weights and gradients are coloured as in the lesson: positive green, negative red, zero
black, on a scale symmetric about zero so that equal magnitudes look equally bright.
Every figure has a fixed size in inches (``SIZES``) at ``DPI`` dots per inch.
"""

import math

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor

from gd_torch.analysis.outputs import Answers
from gd_torch.core.cost import NUM_CLASSES

DPI = 100
SIZES = {  # (width, height) in inches; the PNG is DPI times that in pixels
    "first_layer_weights": (12, 6.5),
    "first_layer_gradient": (12, 6.5),
    "sensitivity_histogram": (12, 4),
    "one_weight": (8, 5),
    "noise": (12, 4.5),
    "confusion_matrix": (7, 6.5),
    "misclassified": (10, 4.8),
    "hidden_layers": (10, 9),
    "cost_surface": (15, 6.5),
    "cost_line": (9, 5.5),
    "descent_paths": (14, 11),
    "gradient_quality": (12, 8),
    "nudges": (13, 16),
}
TILE = 28  # an input image is TILE x TILE pixels
# TensorBoard's Time Series cards scale each image to fit a box about 1.8 times as wide as it is
# tall (375 x 210 pixels at their default width): the dashboard's figures have that shape, and
# text large enough to read at that size.
CARD_ASPECT = 1.8
CARD_SIZE = (7.2, 4.0)  # inches: 720 x 400 pixels at DPI, shown at about half that
CARD_FONT = 16  # points: 22 pixels, 1/18 of the card's height, about 10 pixels when shown


def _figure(name: str) -> Figure:
    return Figure(figsize=SIZES[name], dpi=DPI, layout="constrained")


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


def neuron_images(name: str, title: str, panels: dict[str, Tensor]) -> Figure:
    """Each row of each (n, 784) tensor as a 28x28 picture, one mosaic per panel, each on its
    own symmetric scale."""
    figure = _figure(name)
    figure.suptitle(title)
    for ax, (label, values) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels.items()
    ):
        values = values.detach().cpu().double().numpy()
        scale = np.abs(values).max()
        mosaic = tile(values.reshape(-1, TILE, TILE), columns=math.ceil(math.sqrt(len(values))))
        rgb = signed_rgb(np.nan_to_num(mosaic), scale)
        rgb[np.isnan(mosaic)] = 0.35  # grey gaps between neurons, so black reads as zero
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"{label}\ngreen +, red −, black 0; full brightness at ±{scale:.3g}")
        ax.set_axis_off()
    return figure


def sensitivity_histogram(panels: dict[str, list[Tensor]]) -> Figure:
    """Per layer, the histogram of log10 |∂C/∂w| over its weights, one curve per panel (e.g.
    trained, initial)."""
    figure = _figure("sensitivity_histogram")
    figure.suptitle(
        "How sensitive the cost is to each weight: histogram of |∂C/∂w| per layer (log scale)"
    )
    layers = len(next(iter(panels.values())))
    for l, ax in enumerate(figure.subplots(1, layers, squeeze=False)[0], start=1):
        magnitudes = {
            label: gradients[l - 1].detach().abs().flatten().double().cpu().numpy()
            for label, gradients in panels.items()
        }
        logs = {label: np.log10(m[m > 0]) for label, m in magnitudes.items()}
        every = np.concatenate(list(logs.values()))
        bins = np.linspace(
            np.percentile(every, 1), every.max(), 50
        )  # the lowest 1% (pixels that are always blank) off the scale
        for label, m in magnitudes.items():
            ax.hist(
                logs[label],
                bins=bins,
                histtype="step",
                linewidth=1.5,
                label=f"{label} (median {np.median(m):.2g})",
            )
        rows, columns = next(iter(panels.values()))[l - 1].shape
        ax.set_title(f"layer {l}: W{l} ({rows}x{columns})")
        ax.set_xlabel("log10 |∂C/∂w|")
        ax.set_ylabel("weights")
        ax.legend(fontsize="small")
    return figure


def one_weight(
    name: str,
    curve: tuple[list[float], list[float]],
    path: tuple[list[float], list[float]],
    learning_rate: float,
    trained_value: float,
) -> Figure:
    """C(w) along one weight, with the points w_0, w_1, ... that gradient descent on that
    weight visits."""
    figure = _figure("one_weight")
    ax = figure.subplots()
    ax.plot(*curve, color="black", linewidth=1.5, label="C(w), every other weight fixed")
    ax.plot(
        *path,
        color="tab:orange",
        marker="o",
        markersize=5,
        linewidth=1,
        label=f"w ← w − η C'(w), η = {learning_rate:.3g}",
    )
    ax.annotate("start", (path[0][0], path[1][0]), textcoords="offset points", xytext=(6, 6))
    ax.axvline(
        trained_value, color="tab:green", linestyle=":", label=f"trained value {trained_value:.3g}"
    )
    ax.set_xlabel(f"w = {name}")
    ax.set_ylabel("training cost C")
    ax.set_title(
        f"One weight, one slope: gradient descent on {name} alone, {len(path[0]) - 1} steps"
    )
    ax.legend()
    return figure


def noise(answers: dict[str, Answers]) -> Figure:
    """For each set of images: the histogram of the highest output activation, and the shares
    of predicted digits."""
    figure = _figure("noise")
    figure.suptitle("What the network answers for real test digits and for random noise")
    confidence, digits = figure.subplots(1, 2)
    width = 0.8 / len(answers)
    for i, (label, answer) in enumerate(answers.items()):
        confidence.hist(
            answer.highest.cpu().numpy(),
            bins=np.linspace(0, 1, 41),
            histtype="step",
            linewidth=1.5,
            density=True,
            label=label,
        )
        shares = (answer.digit_counts() / len(answer.digit)).numpy()
        digits.bar(
            np.arange(NUM_CLASSES) + (i - (len(answers) - 1) / 2) * width,
            shares,
            width=width,
            label=label,
        )
    confidence.set_xlabel("highest output activation max_j a_j")
    confidence.set_ylabel("density")
    confidence.set_title("how sure it is")
    confidence.legend()
    digits.set_xticks(range(NUM_CLASSES))
    digits.set_xlabel("predicted digit")
    digits.set_ylabel("share of images")
    digits.set_title("which digit it says")
    digits.legend()
    return figure


def confusion_matrix(confusion: Tensor) -> Figure:
    """Counts of test digits by true (rows) and predicted (columns) digit; per-digit accuracy
    beside each row."""
    figure = _figure("confusion_matrix")
    ax = figure.subplots()
    counts = confusion.numpy()
    ax.imshow(np.log1p(counts), cmap="viridis")
    for (t, p), count in np.ndenumerate(counts):
        ax.text(
            p,
            t,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count < counts.max() / 3 else "black",
        )
    accuracy = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    ax.set_yticks(range(NUM_CLASSES), [f"{d} ({100 * a:.1f}%)" for d, a in enumerate(accuracy)])
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit (share right)")
    ax.set_title(
        f"Confusion matrix on {counts.sum():,} test digits: "
        f"{100 * np.trace(counts) / counts.sum():.2f}% right"
    )
    return figure


def weight_tiles(weights: Tensor, title: str, per_neuron: bool, zoom: int = 4) -> Figure:
    """Each row of ``weights`` (n, 784) as a 28x28 tile, green +, red −, black 0, the tiles laid
    out to fill a TensorBoard card (columns ≈ √(1.8 n)), each weight ``zoom`` x ``zoom`` pixels.

    ``per_neuron``: each tile at full brightness at its own largest |w|, so that every neuron's
    pattern shows; otherwise one scale for all, the largest |w| of the layer, which shows which
    neurons have the large weights. The title says which.
    """
    values = weights.detach().cpu().double().numpy()
    largest = np.abs(values).max(axis=1, keepdims=True)  # (n, 1)
    scale = largest if per_neuron else np.full_like(largest, largest.max())
    columns = math.ceil(math.sqrt(CARD_ASPECT * len(values)))
    mosaic = tile((values / np.maximum(scale, 1e-300)).reshape(-1, TILE, TILE), columns)
    rgb = signed_rgb(np.nan_to_num(mosaic), 1.0)
    rgb[np.isnan(mosaic)] = 0.35  # grey gaps between neurons, so black reads as zero
    pixels = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    line = 6 * zoom  # pixels of title text per line: readable when the card halves the image
    title_height = 4 * line
    height, width = pixels.shape[0] + title_height, pixels.shape[1]
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    figure.figimage(pixels, xo=0, yo=0, origin="upper")  # one image pixel per screen pixel
    how = (
        "each neuron at its own largest |w|"
        if per_neuron
        else f"one scale: full at |w| = {largest.max():.3g}"
    )
    text = f"{title}\ngreen +, red −, black 0; {how}"
    fits = width / (0.6 * max(map(len, text.splitlines())))  # a character is about 0.6 em wide
    figure.text(
        0.5,
        1 - title_height / 2 / height,
        text,
        ha="center",
        va="center",
        fontsize=min(line, fits) * 72 / DPI,
        linespacing=1.4,
    )
    return figure


def confusion_card(confusion: Tensor, title: str) -> Figure:
    """The confusion matrix as it reads in a TensorBoard card: row t, column p is the share of
    the true digit t answered p, in percent; green on the diagonal (right), red off it (wrong,
    full red at the largest mistake), and beside it the accuracy and the five commonest
    mistakes."""
    counts = confusion.numpy().astype(np.int64)
    per_digit = counts.sum(axis=1, keepdims=True)
    shares = 100 * counts / np.maximum(per_digit, 1)
    right = np.eye(NUM_CLASSES, dtype=bool)
    worst = max(shares[~right].max(), 1e-9)
    level = np.where(right, shares / 100, shares / worst)
    rgb = np.ones((*shares.shape, 3))
    rgb[right] -= level[right, None] * np.array([0.6, 0.15, 0.6])  # white to green
    rgb[~right] -= level[~right, None] * np.array([0.1, 0.7, 0.7])  # white to red
    figure = Figure(figsize=CARD_SIZE, dpi=DPI, layout="constrained")
    matrix, notes = figure.subplots(1, 2, width_ratios=[1, 0.85])
    matrix.imshow(rgb)
    for (t, p), share in np.ndenumerate(shares):  # legible when the card is enlarged
        if counts[t, p] and (t == p or share >= 1):
            matrix.text(p, t, f"{share:.0f}", ha="center", va="center", fontsize=0.7 * CARD_FONT)
    matrix.set_xticks(range(NUM_CLASSES))
    matrix.set_yticks(range(NUM_CLASSES))
    matrix.tick_params(labelsize=CARD_FONT, length=0, labeltop=True, labelbottom=False, pad=2)
    matrix.set_ylabel("true digit", fontsize=0.8 * CARD_FONT)
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
    notes.set_axis_off()
    notes.text(0, 1, "\n".join(lines), va="top", fontsize=CARD_FONT, linespacing=1.35)
    return figure


def misclassified(images: Tensor, labels: Tensor, output: Tensor, columns: int = 8) -> Figure:
    """A grid of wrongly answered digits with 'true → predicted (highest activation)' above each."""
    figure = _figure("misclassified")
    figure.suptitle("The most confident mistakes: true → predicted (highest output activation)")
    rows = max(1, math.ceil(len(images) / columns))
    for ax in figure.subplots(rows, columns, squeeze=False).flatten():
        ax.set_axis_off()
    for ax, image, label, out in zip(figure.axes, images, labels, output):
        ax.imshow(image.reshape(TILE, TILE).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{label} → {out.argmax()} ({out.max():.2f})", fontsize=10)
    return figure


def hidden_layers(images: Tensor, activations: list[Tensor], weights: list[Tensor]) -> Figure:
    """For each digit: the image, then every layer's activations as circles (black 0 to white
    1), as the lesson draws them.

    ``activations`` is [a^0, a^1, ..., a^L] for the digits; lines between the non-input layers
    show the weights (green +, red −, more opaque the larger |w|).
    """
    figure = _figure("hidden_layers")
    figure.suptitle("Activations of every layer for a few test digits (brightness = activation)")
    layers = activations[1:]  # a^1 .. a^L, each (n, n_l)
    tallest = max(a.shape[1] for a in layers)
    positions = [
        np.linspace(0, tallest - 1, a.shape[1]) if a.shape[1] > 1 else np.array([(tallest - 1) / 2])
        for a in layers
    ]
    grid = figure.subplots(len(images), 2, squeeze=False, width_ratios=[1, 3])
    for n, (image_ax, network_ax) in enumerate(grid):
        image_ax.imshow(images[n].reshape(TILE, TILE).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        image_ax.set_axis_off()
        network_ax.set_facecolor("black")
        for l in range(1, len(layers)):  # lines for W^{l+1}, between a^l and a^{l+1}
            w = weights[l].detach().cpu().double().numpy()  # (n_{l+1}, n_l)
            j, i = np.indices(w.shape).reshape(2, -1)
            segments = np.stack(
                [
                    np.stack([np.full(len(i), l - 1), positions[l - 1][i]], 1),
                    np.stack([np.full(len(j), l), positions[l][j]], 1),
                ],
                1,
            )
            w = w.flatten()
            rgba = np.column_stack(
                [w < 0, w > 0, np.zeros_like(w), 0.6 * np.abs(w) / np.abs(w).max()]
            )  # red −, green +
            network_ax.add_collection(LineCollection(segments, colors=rgba, linewidths=0.5))
        for l, (a, y) in enumerate(zip(layers, positions)):
            network_ax.scatter(
                np.full(len(y), l),
                y,
                s=60,
                c=a[n].cpu().numpy(),
                cmap="gray",
                vmin=0,
                vmax=1,
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
            )
        output = layers[-1][n]
        for digit, y in enumerate(positions[-1]):
            network_ax.text(
                len(layers) - 0.8,
                y,
                f"{digit}  {output[digit]:.2f}",
                va="center",
                fontsize=7,
                color="yellow" if digit == output.argmax() else "white",
            )
        network_ax.set_xlim(-0.5, len(layers) - 0.2)
        network_ax.invert_yaxis()
        network_ax.set_xticks(range(len(layers)), [f"layer {l}" for l in range(1, len(layers) + 1)])
        network_ax.set_yticks([])
    return figure
