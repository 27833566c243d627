"""The sections of ``gd-torch analyze`` that look at gradient descent itself: the cost surface and
the path down it, the line from the initial to the trained weights, how good a mini-batch
gradient is, and one example's nudges. Each returns its figures and the lines it prints."""

import torch
from matplotlib.figure import Figure

from gd_torch.analysis import descent_figures
from gd_torch.analysis.gradient_quality import gradient_quality, mini_batches
from gd_torch.analysis.nudges import nudges
from gd_torch.analysis.surface import (
    LINE_TIMES,
    fixed_subset,
    line_points,
    metrics_at,
    subset_words,
    surface_through,
)
from gd_torch.core.data import Mnist, Split
from gd_torch.core.model import Network
from gd_torch.core.settings import TrainingSettings
from gd_torch.core.trajectory import Trajectory
from gd_torch.core.weight_space import point_of

NUDGE_BATCH = 100


def surface_and_line(
    trained: Network,
    initial: Network,
    config: TrainingSettings,
    data: Mnist,
    trajectory: Trajectory | None,
    step: int,
    grid_size: int,
    surface_digits: int,
) -> tuple[dict[str, Figure], list[str]]:
    """The surface on the plane of the path's first two principal components through the trained
    weights θ*, and the line from θ_0 to θ*."""
    sizes, end = config.layer_sizes, point_of(trained)
    lines = []
    if trajectory is not None and len(trajectory.until(step)):
        path = trajectory.until(step).points.to(end.dtype)
        described = f"{len(path)} snapshots of the trajectory, steps 0 to {step:,}"
    else:  # a run from before trajectories were kept: its start (from its seed) and its end
        path = torch.stack([point_of(initial), end])
        described = "no trajectory: the initial and the trained weights only"
        lines.append(
            "cost surface: the run has no trajectory.bin; the plane holds its start and end"
        )
    if not torch.equal(path[-1], end):  # a checkpoint taken between snapshots ends the path
        path = torch.cat([path, end[None]])
    subset = fixed_subset(data.train, surface_digits)
    surface = surface_through(path, end, grid_size, sizes, subset, config.cost, config.seed)
    plane, alphas, betas, costs = surface.plane, surface.alphas, surface.betas, surface.costs
    coordinates = plane.coordinates(path)
    path_costs = torch.tensor(
        [m.cost for m in metrics_at(plane.points(coordinates), sizes, subset, config.cost)]
    )
    centre = costs[grid_size // 2, grid_size // 2].item()
    start_cost = metrics_at(path[:1], sizes, subset, config.cost)[0].cost
    lines += [
        f"cost surface ({described}): the plane through the trained weights along the path's first "
        f"two principal components, which hold {100 * plane.variance[0]:.1f}% + "
        f"{100 * plane.variance[1]:.1f}% = {100 * sum(plane.variance):.1f}% of its spread about "
        "them",
        f"  training cost over {subset_words(subset, data.train)} on a {grid_size} x "
        f"{grid_size} grid (α to ±{alphas[-1]:.3g}, β to ±{betas[-1]:.3g}): {costs.min():.4f} to "
        f"{costs.max():.4f}; {centre:.4f} at the centre, the trained weights; the path's start "
        f"costs {start_cost:.4f}, its shadow on the plane {path_costs[0]:.4f}",
    ]
    figure = descent_figures.cost_surface(
        alphas,
        betas,
        costs,
        coordinates,
        path_costs,
        plane.variance,
        f"The cost surface around the trained weights, on the plane of the path's two main "
        f"directions ({subset_words(subset, data.train)}, {grid_size} x {grid_size} networks)",
    )

    points = line_points(point_of(initial), end, LINE_TIMES)
    train, test = (
        metrics_at(points, sizes, split, config.cost) for split in (data.train, data.test)
    )
    start, finish = (LINE_TIMES == 0).nonzero().item(), (LINE_TIMES == 1).nonzero().item()
    on_the_way = [m.cost for m in train[start : finish + 1]]
    lowest = min(range(len(train)), key=lambda i: train[i].cost)
    rise, rise_at = max(
        (on_the_way[j] - min(on_the_way[: j + 1]), j) for j in range(len(on_the_way))
    )  # the largest climb after a lower point
    hill = (
        "falling all the way: no hill on the way"
        if rise == 0
        else f"with a hill: it climbs by {rise:.4f} up to t = {LINE_TIMES[start + rise_at]:.2f}"
    )
    lines.append(
        f"the straight line θ(t) = (1 − t) θ_0 + t θ* (Goodfellow et al. 2015): training cost "
        f"{train[start].cost:.4f} at the start, {train[finish].cost:.4f} at the trained weights, "
        f"{hill}; beyond the ends {train[0].cost:.4f} (t = −0.5) and {train[-1].cost:.4f} "
        f"(t = 1.5), lowest {train[lowest].cost:.4f} at t = {LINE_TIMES[lowest]:.2f}; test "
        f"accuracy {100 * test[start].accuracy:.1f}% → {100 * test[finish].accuracy:.1f}%"
    )
    line = descent_figures.cost_line(LINE_TIMES, train, test, len(data.train), len(data.test))
    return {"cost_surface": figure, "cost_line": line}, lines


def mini_batch_gradients(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist, draws: int
) -> tuple[dict[str, Figure], list[str]]:
    results = {
        label: gradient_quality(
            network,
            data.train,
            config.cost,
            config.engine,
            torch.Generator().manual_seed(config.seed),
            draws=draws,
        )
        for label, network in (("initial", initial), ("trained", trained))
    }
    lines = [
        f"mini-batch gradients ∇C_B against ∇C over all {len(data.train):,} training digits, "
        f"median over {draws} random mini-batches (initial weights | trained weights):"
    ]
    for at_start, at_end in zip(results["initial"], results["trained"], strict=True):
        lines.append(
            f"  batch {at_start.batch_size:>6,}: cosine {at_start.cosines.median():.3f} | "
            f"{at_end.cosines.median():.3f}   ‖∇C_B‖/‖∇C‖ {at_start.norm_ratios.median():.3g} | "
            f"{at_end.norm_ratios.median():.3g}"
        )
    return {"gradient_quality": descent_figures.gradient_quality(results, len(data.train))}, lines


def one_examples_nudges(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist, digit_index: int
) -> tuple[dict[str, Figure], list[str]]:
    digit = data.test[digit_index : digit_index + 1]
    (batch,) = mini_batches(
        len(data.train), NUDGE_BATCH, 1, torch.Generator().manual_seed(config.seed)
    )
    sets: list[Split] = [digit, data.train[batch], data.train]
    rows = {
        label: [nudges(network, s.images, s.targets, config.cost) for s in sets]
        for label, network in (("initial weights", initial), ("trained weights", trained))
    }
    label = digit.labels.item()
    lines = [f"nudges of test digit #{digit_index} (a {label}), from BP1-BP4 of the manual twin:"]
    for name, (one, mini, whole) in rows.items():
        wished = one.activations[-1]
        others = [d for d in range(10) if d != label]
        strongest = max(others, key=lambda d: abs(wished[d]))
        first = [n.weights[0].flatten() for n in (one, mini, whole)]
        cosine = [(v @ first[2] / (v.norm() * first[2].norm())).item() for v in first[:2]]
        lines.append(
            f"  {name}: output {label} is asked to change by {wished[label]:+.3g}, the strongest "
            f"other wish is digit {strongest}'s {wished[strongest]:+.3g}; its first-layer nudges "
            f"point along −∇C with cosine {cosine[0]:.3f}, those of a mini-batch of "
            f"{NUDGE_BATCH} with {cosine[1]:.3f}"
        )
    figure = descent_figures.nudges(
        [digit.images, data.train.images[batch], data.train.images[:NUDGE_BATCH]],
        [
            f"one test digit, #{digit_index} (a {label})",
            f"a mini-batch of {NUDGE_BATCH} training digits, averaged",
            f"all {len(data.train):,} training digits, averaged: −∇C\n"
            f"({NUDGE_BATCH} of them shown)",
        ],
        rows,
        "One example's nudges (green up, red down), and their averages: over all the training "
        "digits, the negative gradient −∇C",
    )
    return {"nudges": figure}, lines
