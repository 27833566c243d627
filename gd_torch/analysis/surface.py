"""The cost surface around the trained weights, the path training took across it, and the
straight line from the initial to the trained weights.

The cost C(θ) is a function of P = 13,002 numbers; a picture shows two. Following Li et al. 2018,
"Visualizing the loss landscape of neural nets", §7, the two directions are the first two
principal components of the path: with the trained point θ* and the snapshots θ_i of
``trajectory.bin``, M = [θ_0 − θ*; θ_1 − θ*; ...] (S, P) and the directions d_1, d_2 are its top
two right singular vectors. M is not centred on the path's mean: the plane must pass through θ*,
and the plane through θ* closest to the path (least squares) is spanned by those two vectors.
σ_k² / Σ_j σ_j² is the share of the path's spread about θ* that d_k holds.

The surface is C on the grid θ* + α d_1 + β d_2 (41 x 41 by default, θ* at its centre), every
grid row evaluated as one batch of networks (``gd_torch.core.stacked``).

The line θ(t) = (1 − t) θ_0 + t θ*, from t = −0.5 to 1.5, is Goodfellow, Vinyals and Saxe 2015
("Qualitatively characterizing neural network optimization problems"): is there a hill on the
way from the start to the end?
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from gd_torch.core.data import Split
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import Metrics
from gd_torch.core.stacked import StackedNetworks, evaluate_copies

MARGIN = 1.25  # the grid reaches 25% beyond the farthest snapshot along each direction
LINE_TIMES = torch.arange(-10, 31, dtype=torch.float64) / 20  # t = −0.5 .. 1.5; 0 and 1 exact


@dataclass(frozen=True)
class Plane:
    """The plane θ = origin + α d_1 + β d_2 through weight space, with orthonormal directions."""

    origin: Tensor  # θ* (P,)
    directions: Tensor  # (2, P): d_1, d_2
    variance: tuple[float, float]  # the share of the path's spread about θ* along d_1 and d_2

    def coordinates(self, points: Tensor) -> Tensor:
        """(α, β) of the points' projections onto the plane: (S, 2) for points (S, P)."""
        return (points - self.origin) @ self.directions.T

    def points(self, coordinates: Tensor) -> Tensor:
        """θ = origin + α d_1 + β d_2 for coordinates (K, 2): (K, P)."""
        return self.origin + coordinates.to(self.origin.dtype) @ self.directions

    def distances(self, points: Tensor) -> Tensor:
        """‖θ − its projection onto the plane‖ for each point (S,)."""
        return (points - self.points(self.coordinates(points))).norm(dim=1)


def path_plane(points: Tensor, origin: Tensor, generator: torch.Generator) -> Plane:
    """The plane through ``origin`` spanned by the first two principal components of ``points``
    (S, P) about it. A path that spans fewer than two directions (two snapshots: the start and
    θ*) is completed by random directions drawn from ``generator`` and orthogonalised."""
    differences = (points - origin).double()  # M, (S, P); float64 for the decomposition
    _, singular_values, right = torch.linalg.svd(differences, full_matrices=False)
    tolerance = max(differences.shape) * torch.finfo(points.dtype).eps * singular_values.max()
    rank = int((singular_values > tolerance).sum()) if len(singular_values) else 0
    directions = list(right[: min(rank, 2)])
    while len(directions) < 2:  # Gram-Schmidt on a random direction
        random = torch.randn(points.shape[1], generator=generator, dtype=torch.float64)
        for direction in directions:
            random -= (random @ direction) * direction
        directions.append(random / random.norm())
    directions = torch.stack(directions)  # (2, P)
    # a sign for each direction that puts the start at α ≤ 0, β ≤ 0 (the SVD leaves signs free)
    signs = torch.where(differences[0] @ directions.T > 0, -1.0, 1.0).double()
    directions = directions * signs[:, None]
    spread = (singular_values**2).sum()
    shares = [
        float(singular_values[k] ** 2 / spread) if k < rank else 0.0 for k in range(2)
    ]  # σ_k² / Σσ²
    return Plane(origin, directions.to(points.dtype), (shares[0], shares[1]))


def check_grid(grid_size: int, surface_digits: int) -> None:
    """The grid must have a centre (odd size); the surface's digits are a count, 0 for all."""
    if not (isinstance(grid_size, int) and grid_size >= 3 and grid_size % 2 == 1):
        raise GdTorchError(
            f"--grid-size must be an odd integer >= 3 (the centre is the point the plane is "
            f"drawn around), not {grid_size}"
        )
    if not (isinstance(surface_digits, int) and surface_digits >= 0):
        raise GdTorchError(
            f"--surface-digits must be an integer >= 0 (0: all), not {surface_digits}"
        )


def fixed_subset(split: Split, count: int) -> Split:
    """``count`` digits of the split chosen at random once and for all (``torch.randperm`` with
    seed 0, whatever the run's seed), or all of them for count 0 or ≥ N.

    Measured on the default run's surface (21 x 21 grid): 10,000 such digits cost within 0.4% of
    all 60,000 at the median grid point and within 2.6% at the worst, a fifth of one of the
    figure's contour bands. A random choice, not the first 10,000 (2.6% at the median) nor every
    6th digit (20%): MNIST's training file alternates between two sets of writers, and the
    trained network's cost is 0.071 on the even-numbered digits and 0.038 on the odd ones."""
    if not count or count >= len(split):
        return split
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:count]
    return split[chosen.sort().values]


def subset_words(subset: Split, split: Split) -> str:
    """'10,000 training digits (a fixed random choice)', or 'all 60,000 training digits'."""
    if len(subset) == len(split):
        return f"all {len(split):,} training digits"
    return f"{len(subset):,} training digits (a fixed random choice)"


def grid_axes(coordinates: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """α and β of a ``size`` x ``size`` grid centred on θ* (size odd: (0, 0) is a grid point,
    exactly), reaching ``MARGIN`` times the farthest coordinate of the path along each direction."""
    half = size // 2
    steps = torch.arange(-half, half + 1, dtype=torch.float64) / half  # exactly 0 at the centre
    reach = MARGIN * coordinates.double().abs().amax(dim=0)  # (2,)
    reach = torch.where(reach > 0, reach, reach.max() if reach.max() > 0 else torch.tensor(1.0))
    return reach[0] * steps, reach[1] * steps


def metrics_at(
    points: Tensor, sizes: tuple[int, ...], split: Split, convention: str, batch: int = 41
) -> list[Metrics]:
    """Cost and accuracy over ``split`` of the networks at the points θ_k (K, P), ``batch`` of
    them stacked into one computation at a time."""
    metrics = []
    for chunk in points.split(batch):
        metrics += evaluate_copies(StackedNetworks.at_points(chunk, sizes), split, convention)
    return metrics


def cost_on_plane(
    plane: Plane,
    alphas: Tensor,
    betas: Tensor,
    sizes: tuple[int, ...],
    split: Split,
    convention: str,
) -> Tensor:
    """C(θ* + α d_1 + β d_2) over ``split`` on the grid, (len(betas), len(alphas)): row j is β_j,
    column i is α_i. Each row is one batch of networks."""
    rows = []
    for beta in betas:
        coordinates = torch.stack([alphas, torch.full_like(alphas, beta)], dim=1)  # (n, 2)
        rows.append(
            [m.cost for m in metrics_at(plane.points(coordinates), sizes, split, convention)]
        )
    return torch.tensor(rows, dtype=torch.float64)


@dataclass(frozen=True)
class Surface:
    """The cost on a grid over a plane: ``costs[j, i]`` at α_i, β_j."""

    plane: Plane
    alphas: Tensor
    betas: Tensor
    costs: Tensor


def surface_through(
    points: Tensor,
    origin: Tensor,
    grid_size: int,
    sizes: tuple[int, ...],
    split: Split,
    convention: str,
    seed: int,
) -> Surface:
    """The plane through ``origin`` of the points' first two principal components about it, and
    the cost over ``split`` on a ``grid_size`` x ``grid_size`` grid reaching past the points."""
    plane = path_plane(points, origin, torch.Generator().manual_seed(seed))
    alphas, betas = grid_axes(plane.coordinates(points), grid_size)
    return Surface(
        plane, alphas, betas, cost_on_plane(plane, alphas, betas, sizes, split, convention)
    )


def line_points(start: Tensor, end: Tensor, times: Tensor) -> Tensor:
    """θ(t) = (1 − t) start + t end for each t, (T, P): ``torch.lerp``, exact at t = 0 and 1."""
    return torch.lerp(start.expand(len(times), -1), end, times[:, None].to(start.dtype))
