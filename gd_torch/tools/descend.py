"""``gd-torch descend``: the drunk man and the careful man, from the same initial weights.

    gd-torch descend --data-root ../shared/mnist            # gradient descent vs SGD at 10 and 100
    gd-torch descend --epochs 2 --steps 300 --batch-sizes 10 100 1000

The lesson calls SGD "a drunk man stumbling aimlessly down a hill, but taking quick steps",
against "a carefully calculating man, who determines the exact downhill direction of each step
before taking a very slow and careful step". Both start here from the same initial weights θ_0,
at the same constant η, without weight decay: full-batch gradient descent (every step on all N
training digits) and SGD at each of ``--batch-sizes``, each by the reference loop
(``train_one_epoch``). They are compared twice: at equal epochs (each has used every digit
``--epochs`` times: the same arithmetic, gradient descent in ``--epochs`` steps, SGD at batch B in
N/B as many) and at equal steps (each has taken ``--steps`` steps). The paths are drawn on one
plane through θ_0, the first two principal components of all of them
(``gd_torch.analysis.surface``), over the training cost there, beside their cost against the
epochs and against the steps.

A command of its own, not a second run given to ``gd-torch analyze``: the comparison is an
experiment, three short trainings from one start under the same η, while ``analyze`` looks at the
one network of a checkpoint (and keeps within its time).
"""

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gd_torch.analysis import descent_figures
from gd_torch.analysis.report import write_figures
from gd_torch.analysis.surface import (
    check_grid,
    fixed_subset,
    metrics_at,
    subset_words,
    surface_through,
)
from gd_torch.core.data import shuffled_batches
from gd_torch.core.engines import ENGINES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import Metrics
from gd_torch.core.loop import prepare_data, seeded_generators, train_one_epoch
from gd_torch.core.model import Network
from gd_torch.core.run_dir import create_run_directory
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import sgd
from gd_torch.core.trajectory import Trajectory
from gd_torch.core.weight_space import point_of

SNAPSHOTS = 60  # points of each path, spaced evenly in log(step): the start is drawn finely


@dataclass
class Descent:
    """One walker: its batch size, the snapshots of its path (every step up to --steps, then
    fewer), and the training cost and test accuracy at the ``measured`` ones."""

    name: str
    batch_size: int
    steps_per_epoch: int
    trajectory: Trajectory
    measured: list[int]  # the steps at which train and test were evaluated
    train: list[Metrics]
    test: list[Metrics]

    def at(self, step: int) -> tuple[Metrics, Metrics]:
        index = self.measured.index(step)
        return self.train[index], self.test[index]

    def points_until(self, step: int) -> Tensor:
        """The snapshots θ of the first ``step`` steps, (S, P)."""
        return self.trajectory.until(step).points


def snapshot_steps(total: int, also: tuple[int, ...]) -> set[int]:
    """0, about ``SNAPSHOTS`` steps spread evenly in log(step) up to ``total``, the powers of 10,
    and the steps ``also`` (where the comparisons are made)."""
    spread = torch.logspace(0, math.log10(total), SNAPSHOTS, dtype=torch.float64).round().long()
    decades = [10**k for k in range(int(math.log10(total)) + 1)]
    return {0, total, *spread.tolist(), *decades, *also}


def walk(
    initial: Network,
    settings: TrainingSettings,
    data,
    total: int,
    recorded: set[int],
) -> Trajectory:
    """``total`` SGD steps of ``settings`` from ``initial`` (copied), keeping θ at the ``recorded``
    steps."""
    network = copy.deepcopy(initial)
    optimizer = sgd(settings)(network)
    order = seeded_generators(settings.seed)[1]
    trajectory = Trajectory(network.sizes)
    trajectory.add(0, 0, point_of(network))
    step, epoch = 0, 0

    def finish_step(batch_cost) -> bool:
        nonlocal step
        step += 1
        if step in recorded:
            trajectory.add(step, epoch, point_of(network))
        return step == total

    while step < total:
        batches = shuffled_batches(len(data.train), settings.batch_size, order)
        train_one_epoch(
            network,
            optimizer,
            data.train,
            batches,
            ENGINES[settings.engine],
            settings.cost,
            finish_step,
        )
        epoch += 1
    return trajectory


def descend(
    data_root: str,
    download: bool = True,
    learning_rate: float = 3.0,
    epochs: int = 1,
    steps: int = 100,
    batch_sizes: tuple[int, ...] = (10, 100),
    seed: int = 0,
    runs_dir: str = "runs",
    grid_size: int = 41,
    surface_digits: int = 10_000,
    out=None,
) -> tuple[Path, list[Descent]]:
    """Train the walkers, draw them, print and write the comparison; returns (run directory,
    [gradient descent, SGD at the largest batch, ..., SGD at the smallest])."""
    out = out or sys.stdout
    for name, value in (("epochs", epochs), ("steps", steps)):
        if not (isinstance(value, int) and value >= 1):
            raise GdTorchError(f"--{name} must be a positive integer, not {value}")
    check_grid(grid_size, surface_digits)
    base = TrainingSettings(
        learning_rate=learning_rate, lr_schedule="constant", weight_decay=0.0, seed=seed
    )
    torch.set_num_threads(1)
    data = prepare_data(
        base, RunOptions(data_root=data_root, download=download), torch.device("cpu")
    )
    count = len(data.train)
    if not batch_sizes or any(not 1 <= size < count for size in batch_sizes):
        raise GdTorchError(
            f"--batch-sizes must be between 1 and {count - 1} (gradient descent, on all {count:,} "
            f"training digits, is always one of the walkers), not {' '.join(map(str, batch_sizes))}"
        )
    initial = Network(base.layer_sizes, base.init, seeded_generators(seed)[0], base.torch_dtype)
    run_dir = create_run_directory(runs_dir, f"descend_lr{learning_rate:g}_s{seed}")
    print(
        f"gd-torch descend: from the same initial weights (seed {seed}), η = {learning_rate:g} "
        f"constant, no weight decay, {count:,} training digits: gradient descent and SGD at batch "
        f"{', '.join(map(str, sorted(batch_sizes)))}; compared at {epochs} epoch(s) and at "
        f"{steps:,} steps; run {run_dir}",
        file=out,
        flush=True,
    )
    descents = []
    for batch_size in (count, *sorted(set(batch_sizes), reverse=True)):
        settings = dataclasses.replace(base, batch_size=batch_size)
        per_epoch = math.ceil(count / batch_size)
        total = max(steps, epochs * per_epoch)
        measured = sorted(snapshot_steps(total, (steps, epochs * per_epoch)))
        trajectory = walk(initial, settings, data, total, set(measured) | set(range(steps + 1)))
        points = trajectory.points[[trajectory.steps.index(step) for step in measured]]
        train, test = (
            metrics_at(points, base.layer_sizes, split, base.cost)
            for split in (data.train, data.test)
        )
        name = "gradient descent" if batch_size == count else f"SGD, batch {batch_size}"
        descents.append(Descent(name, batch_size, per_epoch, trajectory, measured, train, test))
        trajectory.save(run_dir / f"trajectory_b{batch_size}.bin")

    lines = comparison(descents, epochs, steps, count)
    for line in lines:
        print(line, file=out, flush=True)
    (run_dir / "descend.md").write_text("\n".join(["```", *lines, "```", ""]))

    start, subset = point_of(initial), fixed_subset(data.train, surface_digits)
    surfaces = {}  # the whole paths, and their first --steps steps (the equal-steps comparison)
    for label, until in (("the whole paths", None), (f"the first {steps:,} steps", steps)):
        parts = [d.trajectory.points if until is None else d.points_until(until) for d in descents]
        surface = surface_through(
            torch.cat(parts), start, grid_size, base.layer_sizes, subset, base.cost, seed
        )
        surfaces[label] = (surface, [surface.plane.coordinates(part) for part in parts])
        print(
            f"{label} on one plane through the start: it holds "
            f"{100 * sum(surface.plane.variance):.1f}% of their spread "
            f"({100 * surface.plane.variance[0]:.1f}% + {100 * surface.plane.variance[1]:.1f}%); "
            f"the cost over {subset_words(subset, data.train)} on a {grid_size} x {grid_size} grid",
            file=out,
        )
    figure = descent_figures.descent_paths(
        surfaces,
        {
            d.name: {
                "steps": d.measured,
                "epochs": [step / d.steps_per_epoch for step in d.measured],
                "costs": [m.cost for m in d.train],
            }
            for d in descents
        },
        epochs,
        steps,
        f"The careful man and the drunk man: gradient descent and SGD from the same start, "
        f"η = {learning_rate:g}",
    )
    written = write_figures({"descent_paths": figure}, run_dir, 0)
    print(
        f"written: {written['descent_paths']}, descend.md, the paths as trajectory_b<batch>.bin, "
        f"and the figure in TensorBoard (tensorboard --logdir {run_dir})",
        file=out,
    )
    return run_dir, descents


def comparison(descents: list[Descent], epochs: int, steps: int, count: int) -> list[str]:
    """The costs reached at equal epochs and at equal steps, the lowest of each, and each path's
    cost at every power of 10 steps."""
    lines = []
    for heading, step_of in (
        (f"at {epochs} epoch(s) each, the same compute", lambda d: epochs * d.steps_per_epoch),
        (f"at {steps:,} steps each", lambda d: steps),
    ):
        lines += [
            f"{heading}:",
            f"  {'walker':<18}{'batch':>7}{'steps':>8}{'epochs':>9}{'training cost':>15}"
            f"{'test accuracy':>15}",
        ]
        reached = {}
        for d in descents:
            train, test = d.at(step_of(d))
            reached[d.name] = train.cost
            lines.append(
                f"  {d.name:<18}{d.batch_size:>7,}{step_of(d):>8,}"
                f"{step_of(d) / d.steps_per_epoch:>9.3g}{train.cost:>15.4f}"
                f"{100 * test.accuracy:>14.2f}%"
            )
        lowest = min(reached, key=reached.get)
        lines.append(f"  the lowest training cost: {lowest}'s, {reached[lowest]:.4f}")
    lines.append(
        f"the paths (training cost over all {count:,} training digits, at step 0, 1, 10, ...):"
    )
    for d in descents:
        powers = [s for s in d.measured if s == 0 or s == 10 ** round(math.log10(s))]
        shown = [*powers, d.measured[-1]]
        costs = ", ".join(f"{s:,}: {d.at(s)[0].cost:.4f}" for s in dict.fromkeys(shown))
        lines.append(f"  {d.name:<18} {costs}")
    return lines
