"""The figures of ``gd-torch analyze``, drawn with matplotlib's object API (Agg canvas, no
pyplot state).

Weights and gradients are coloured as in the lesson (gd_torch.analysis.mosaic): positive green,
negative red, zero black, on a scale symmetric about zero.
Every figure has a fixed size in inches (``SIZES``) at ``DPI`` dots per inch.
"""

import math

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor

from gd_torch.analysis.mosaic import TILE, signed_tiles
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


def _figure(name: str) -> Figure:
    return Figure(figsize=SIZES[name], dpi=DPI, layout="constrained")


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
        columns = math.ceil(math.sqrt(len(values)))
        ax.imshow(signed_tiles(values, scale, columns), interpolation="nearest")
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
