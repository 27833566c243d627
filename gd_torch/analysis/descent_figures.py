"""The figures of gradient descent itself: the cost surface and the path down it, the line from
the start to the end, the drunk man and the careful man, how good a mini-batch gradient is, and
one example's nudges. Object API on an Agg canvas, sizes in ``figures.SIZES``; nudges in the
lesson's colours (``mosaic.signed_rgb``: green up, red down)."""

import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from torch import Tensor

from gd_torch.analysis import figures, mosaic
from gd_torch.analysis.gradient_quality import GradientQuality
from gd_torch.analysis.nudges import Nudges
from gd_torch.analysis.surface import Surface
from gd_torch.core.evaluate import Metrics

PATH_COLOURS = ("white", "tab:orange", "tab:red", "tab:pink")


def _levels(costs: np.ndarray) -> np.ndarray:
    """Contour levels evenly spaced in log C: the valley floor and the walls both show."""
    return np.geomspace(costs.min(), costs.max(), 25)


def _one_two_five(value: float, _position) -> str:
    """Tick labels of a log axis as plain numbers, at 1, 2 and 5 times the powers of 10 only."""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:.3g}" if any(math.isclose(mantissa, m) for m in (1, 2, 5)) else ""


def _log_cost_axis(ax) -> None:
    """A log-scale cost axis labelled 0.05, 0.1, 0.2, 0.5, 1, ..."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_one_two_five))
    ax.yaxis.set_minor_formatter(FuncFormatter(_one_two_five))


def _contour(ax, alphas: Tensor, betas: Tensor, costs: Tensor, variance: tuple[float, float]):
    costs = costs.numpy()
    filled = ax.contourf(
        alphas.numpy(), betas.numpy(), costs, levels=_levels(costs), norm=LogNorm(), cmap="viridis"
    )
    ax.contour(
        alphas.numpy(), betas.numpy(), costs, levels=_levels(costs), colors="black", linewidths=0.3
    )
    ax.set_xlabel(f"α along d₁ ({100 * variance[0]:.1f}% of the path's spread)")
    ax.set_ylabel(f"β along d₂ ({100 * variance[1]:.1f}%)")
    return filled


def _path(ax, coordinates: Tensor, label: str, colour: str, heights: Tensor | None = None) -> None:
    x, y = coordinates[:, 0].numpy(), coordinates[:, 1].numpy()
    line = (x, y) if heights is None else (x, y, heights.numpy())
    ax.plot(*line, color=colour, marker="o", markersize=2.5, linewidth=1, label=label, zorder=3)


def cost_surface(
    alphas: Tensor,
    betas: Tensor,
    costs: Tensor,
    path: Tensor,
    path_costs: Tensor,
    variance: tuple[float, float],
    title: str,
) -> Figure:
    """Contour map and 3D surface of C(θ* + α d_1 + β d_2) (costs (len(betas), len(alphas))),
    with the path's snapshots projected onto the plane (path (S, 2), first the start), drawn at
    the height of the surface where they land (path_costs (S,))."""
    figure = figures._figure("cost_surface")
    figure.suptitle(title)
    contour_ax = figure.add_subplot(1, 2, 1)
    filled = _contour(contour_ax, alphas, betas, costs, variance)
    figure.colorbar(filled, ax=contour_ax, label="training cost C (log scale)", format="%.3g")
    _path(contour_ax, path, "the path, projected", "white")
    contour_ax.annotate(
        "start", path[0].tolist(), color="white", xytext=(5, 5), textcoords="offset points"
    )
    contour_ax.plot(0, 0, marker="*", color="red", markersize=14, linestyle="", label="trained θ*")
    contour_ax.legend(loc="upper right", fontsize="small", facecolor="lightgrey")
    contour_ax.set_title("contour map: each line a level of log C")

    surface_ax = figure.add_subplot(
        1, 2, 2, projection="3d", computed_zorder=False
    )  # drawn in order: the path stays in front of the surface
    grid_alpha, grid_beta = np.meshgrid(alphas.numpy(), betas.numpy())
    surface_ax.plot_surface(
        grid_alpha,
        grid_beta,
        np.log10(costs.numpy()),
        cmap="viridis",
        linewidth=0,
        antialiased=False,
        alpha=0.85,
    )
    _path(surface_ax, path, "the path", "white", path_costs.log10())
    surface_ax.scatter(
        [0],
        [0],
        [math.log10(costs[len(betas) // 2, len(alphas) // 2])],
        color="red",
        s=60,
        marker="*",
    )
    surface_ax.set_xlabel("α")
    surface_ax.set_ylabel("β")
    surface_ax.set_zlabel("log₁₀ C")
    surface_ax.set_title("the surface: height = log₁₀ C")
    surface_ax.view_init(elev=35, azim=-120)
    return figure


def cost_line(
    times: Tensor, train: list[Metrics], test: list[Metrics], train_size: int, test_size: int
) -> Figure:
    """Cost and accuracy along θ(t) = (1 − t) θ_0 + t θ*."""
    figure = figures._figure("cost_line")
    ax = figure.subplots()
    t = times.numpy()
    accuracy_ax = ax.twinx()
    for name, metrics, size, colour in (
        ("training", train, train_size, "black"),
        ("test", test, test_size, "tab:blue"),
    ):
        ax.plot(t, [m.cost for m in metrics], color=colour, label=f"{name} cost ({size:,} digits)")
        accuracy_ax.plot(
            t,
            [100 * m.accuracy for m in metrics],
            color=colour,
            linestyle="--",
            linewidth=1,
            label=f"{name} accuracy",
        )
    _log_cost_axis(ax)
    ax.set_xlabel("t:  θ(t) = (1 − t) θ₀ + t θ*")
    ax.set_ylabel("cost C (log scale)")
    accuracy_ax.set_ylabel("accuracy (%), dashed")
    accuracy_ax.set_ylim(0, 100)
    for position, label in ((0, "initial θ₀"), (1, "trained θ*")):
        ax.axvline(position, color="grey", linestyle=":")
        ax.annotate(
            label,
            (position, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
        )
    lines = ax.get_legend_handles_labels()
    more = accuracy_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="center right")
    ax.set_title("The straight line from the initial to the trained weights, and beyond both ends")
    return figure


def descent_paths(
    surfaces: dict[str, tuple[Surface, list[Tensor]]],
    curves: dict[str, dict],
    equal_epochs: int,
    equal_steps: int,
    title: str,
) -> Figure:
    """Top: each plane of ``surfaces`` (the whole paths; their first steps), its cost and every
    walker's path projected onto it (coordinates (S, 2), in the order of ``curves``). Bottom: each
    walker's cost against the epochs and against the steps (``curves[name]``: ``steps``,
    ``epochs``, ``costs``)."""
    figure = figures._figure("descent_paths")
    figure.suptitle(title)
    (whole_ax, first_ax), (epochs_ax, steps_ax) = figure.subplots(2, 2)
    colours = dict(zip(curves, PATH_COLOURS))
    for ax, (label, (surface, paths)) in zip((whole_ax, first_ax), surfaces.items()):
        filled = _contour(ax, surface.alphas, surface.betas, surface.costs, surface.plane.variance)
        figure.colorbar(filled, ax=ax, label="training cost C (log scale)", format="%.3g")
        for name, coordinates in zip(curves, paths):
            _path(ax, coordinates, name, colours[name])
        ax.plot(0, 0, marker="o", color="white", markersize=8, linestyle="")
        ax.annotate("start", (0, 0), color="white", xytext=(6, -12), textcoords="offset points")
        ax.legend(fontsize="small", facecolor="lightgrey")
        ax.set_title(f"{label}, on their own plane through the start")
    for name, curve in curves.items():
        colour = "black" if colours[name] == "white" else colours[name]
        epochs_ax.plot(curve["epochs"], curve["costs"], color=colour, label=name)
        steps_ax.plot(curve["steps"], curve["costs"], color=colour, label=name)
    for ax, x, unit in ((epochs_ax, equal_epochs, "epochs"), (steps_ax, equal_steps, "steps")):
        ax.axvline(x, color="grey", linestyle=":")
        ax.set_xscale("symlog", linthresh=1 if unit == "steps" else 1e-3)
        ax.set_xlim(left=0)
        _log_cost_axis(ax)
        ax.set_xlabel(f"{unit} (symmetric log scale)")
        ax.set_ylabel("training cost C (all training digits)")
        ax.legend(fontsize="small")
    epochs_ax.set_title(f"against the epochs, the same compute: compared at {equal_epochs:g}")
    steps_ax.set_title(f"against the steps: compared at {equal_steps:,}")
    return figure


def gradient_quality(results: dict[str, list[GradientQuality]], train_size: int) -> Figure:
    """Box plots over the draws, per batch size: cosine to ∇C (top) and ‖∇C_B‖/‖∇C‖ (bottom), one
    column per set of weights."""
    figure = figures._figure("gradient_quality")
    figure.suptitle(
        f"How good a mini-batch gradient is: random mini-batches B against ∇C over all "
        f"{train_size:,} training digits"
    )
    axes = figure.subplots(2, len(results), squeeze=False, sharey="row")
    for column, (label, qualities) in enumerate(results.items()):
        names = [f"{q.batch_size:,}" for q in qualities]
        for row, values in enumerate(
            ([q.cosines for q in qualities], [q.norm_ratios for q in qualities])
        ):
            ax = axes[row][column]
            ax.boxplot(
                [v.numpy() for v in values], tick_labels=names, whis=(5, 95), showfliers=False
            )
            for i, v in enumerate(values, start=1):
                ax.annotate(
                    f"{v.median():.3g}",
                    (i, v.median().item()),
                    xytext=(8, 0),
                    textcoords="offset points",
                    fontsize=8,
                    va="center",
                )
            ax.set_xlabel("batch size B")
        axes[0][column].set_title(f"at the {label} weights")
        axes[0][column].set_ylabel("cos∠(∇C_B, ∇C)")
        axes[0][column].axhline(1, color="grey", linestyle=":")
        axes[1][column].set_ylabel("‖∇C_B‖ / ‖∇C‖ (log scale)")
        axes[1][column].set_yscale("log")
        axes[1][column].axhline(1, color="grey", linestyle=":")
    return figure


SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _activation_bars(ax, activations: list[Tensor]) -> None:
    """−∂C/∂a^l of every layer as bars, the outputs (digits 0-9) first, then each hidden layer."""
    position, ticks, labels = 0, [], []
    for l in range(len(activations), 0, -1):
        values = activations[l - 1].double().cpu().numpy()
        x = position + np.arange(len(values))
        ax.bar(x, values, color=np.where(values >= 0, "tab:green", "tab:red"), width=0.8)
        if l == len(activations):
            ticks += list(x)
            labels += [str(d) for d in range(len(values))]
        else:
            ticks.append(x.mean())
            labels.append(f"a{str(l).translate(SUPERSCRIPTS)}")
        position += len(values) + 2
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(ticks, labels, fontsize=7)


def _first_layer(ax, weights: Tensor, label: str) -> None:
    values = weights.detach().double().cpu().numpy()
    scale = np.abs(values).max()
    columns = math.ceil(math.sqrt(len(values)))
    ax.imshow(mosaic.signed_tiles(values, scale, columns), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{label}: −∂C/∂W¹, each neuron (full brightness ±{scale:.2g})", fontsize=8)


def nudges(
    images: list[Tensor], columns: list[str], rows: dict[str, list[Nudges]], title: str
) -> Figure:
    """For each column (one example, a mini-batch, all examples) its digits on top, then for each
    set of weights in ``rows`` the nudges of the activations (bars) and of the first-layer weights
    (28x28 images)."""
    figure = figures._figure("nudges")
    figure.suptitle(title)
    grid = figure.subplots(
        1 + 2 * len(rows),
        len(columns),
        height_ratios=[0.8] + [1, 1.6] * len(rows),
        squeeze=False,
    )
    for column, (shown, heading) in enumerate(zip(images, columns)):
        ax = grid[0][column]
        digits = shown.cpu().double().numpy().reshape(-1, mosaic.TILE, mosaic.TILE)
        grid_of_digits = mosaic.tile(
            digits, math.ceil(math.sqrt(len(digits))), gap_value=mosaic.GAP_GREY
        )
        ax.imshow(grid_of_digits, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(heading, fontsize=10)
        for row, (label, per_column) in enumerate(rows.items()):
            bars = grid[1 + 2 * row][column]
            _activation_bars(bars, per_column[column].activations)
            bars.set_title(f"{label}: −∂C/∂a, the change asked of each activation", fontsize=8)
            _first_layer(grid[2 + 2 * row][column], per_column[column].weights[0], label)
    return figure
