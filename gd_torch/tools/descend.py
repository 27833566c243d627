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

from gd_torch.analysis import descent_figures
from gd_torch.analysis.report import write_figures
from gd_torch.analysis.surface import (
    check_grid,
    cost_on_plane,
    fixed_subset,
    grid_axes,
    metrics_at,
    path_plane,
    subset_words,
)
from gd_torch.core.data import shuffled_batches
from gd_torch.core.engines import ENGINES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import Metrics
from gd_torch.core.loop import prepare_data, seeded_generators, sgd, train_one_epoch
from gd_torch.core.model import Network
from gd_torch.core.run_dir import create_run_directory
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.trajectory import Trajectory
from gd_torch.core.weight_space import point_of

SNAPSHOTS = 60  # points of each path, spaced evenly in log(step): the start is drawn finely


@dataclass
class Descent:
    """One walker: its batch size, the snapshots of its path, and the full training cost and test
    accuracy at the snapshots."""

    name: str
    batch_size: int
    steps_per_epoch: int
    trajectory: Trajectory
    train: list[Metrics]
    test: list[Metrics]

    def at(self, step: int) -> tuple[Metrics, Metrics]:
        index = self.trajectory.steps.index(step)
        return self.train[index], self.test[index]


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
        trajectory = walk(
            initial, settings, data, total, snapshot_steps(total, (steps, epochs * per_epoch))
        )
        train, test = (
            metrics_at(trajectory.points, base.layer_sizes, split, base.cost)
            for split in (data.train, data.test)
        )
        name = "gradient descent" if batch_size == count else f"SGD, batch {batch_size}"
        descents.append(Descent(name, batch_size, per_epoch, trajectory, train, test))
        trajectory.save(run_dir / f"trajectory_b{batch_size}.pt")

    lines = comparison(descents, epochs, steps, count)
    for line in lines:
        print(line, file=out, flush=True)
    (run_dir / "descend.md").write_text("\n".join(["```", *lines, "```", ""]))

    start = point_of(initial)
    everything = torch.cat([d.trajectory.points for d in descents])
    plane = path_plane(everything, start, torch.Generator().manual_seed(seed))
    alphas, betas = grid_axes(plane.coordinates(everything), grid_size)
    subset = fixed_subset(data.train, surface_digits)
    costs = cost_on_plane(plane, alphas, betas, base.layer_sizes, subset, base.cost)
    print(
        f"the shared plane through the start holds {100 * sum(plane.variance):.1f}% of the paths' "
        f"spread ({100 * plane.variance[0]:.1f}% + {100 * plane.variance[1]:.1f}%); its cost over "
        f"{subset_words(subset, data.train)} on a {grid_size} x {grid_size} grid",
        file=out,
    )
    paths = {
        d.name: {
            "coordinates": plane.coordinates(d.trajectory.points),
            "steps": d.trajectory.steps,
            "epochs": [step / d.steps_per_epoch for step in d.trajectory.steps],
            "costs": [m.cost for m in d.train],
        }
        for d in descents
    }
    figure = descent_figures.descent_paths(
        alphas,
        betas,
        costs,
        plane.variance,
        paths,
        epochs,
        steps,
        f"The careful man and the drunk man: gradient descent and SGD from the same start, "
        f"η = {learning_rate:g}",
    )
    written = write_figures({"descent_paths": figure}, run_dir, 0)
    print(
        f"written: {written['descent_paths']}, descend.md, the paths as trajectory_b<batch>.pt, "
        f"and the figure in TensorBoard (tensorboard --logdir {run_dir})",
        file=out,
    )
    return run_dir, descents


def comparison(descents: list[Descent], epochs: int, steps: int, count: int) -> list[str]:
    """The table of the costs reached at equal epochs and at equal steps, the verdicts, and each
    path's cost at every power of 10 steps."""
    lines = [
        f"{'':<18}{'batch':>7}  | at {epochs} epoch(s): {'steps':>6} {'cost':>8} {'test acc':>8}"
        f"  | at {steps:,} steps: {'epochs':>7} {'cost':>8} {'test acc':>8}"
    ]
    at_epochs, at_steps = {}, {}
    for d in descents:
        same_compute = epochs * d.steps_per_epoch
        (train_e, test_e), (train_s, test_s) = d.at(same_compute), d.at(steps)
        at_epochs[d.name], at_steps[d.name] = train_e.cost, train_s.cost
        lines.append(
            f"{d.name:<18}{d.batch_size:>7,}  | {'':>14}{same_compute:>6,} {train_e.cost:>8.4f} "
            f"{100 * test_e.accuracy:>7.2f}%  | {'':>14}{steps / d.steps_per_epoch:>7.3g} "
            f"{train_s.cost:>8.4f} {100 * test_s.accuracy:>7.2f}%"
        )
    for label, reached in (
        (f"at {epochs} epoch(s), the same compute", at_epochs),
        (f"at {steps:,} steps", at_steps),
    ):
        best = min(reached, key=reached.get)
        lines.append(f"{label}: the lowest training cost is {best}'s, {reached[best]:.4f}")
    lines.append(
        f"the paths (training cost over all {count:,} training digits, at step 0, 1, 10, ...):"
    )
    powers = {0} | {10**k for k in range(len(str(max(d.trajectory.steps[-1] for d in descents))))}
    for d in descents:
        decades = [s for s in d.trajectory.steps if s in powers]
        costs = ", ".join(
            f"{s:,}: {d.train[d.trajectory.steps.index(s)].cost:.4f}" for s in decades
        )
        lines.append(f"  {d.name:<18} {costs}; {d.trajectory.steps[-1]:,}: {d.train[-1].cost:.4f}")
    return lines
