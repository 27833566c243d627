"""The plane of the cost surface (PCA of the path, through the trained weights), the grid
evaluated as a batch of networks, and the line from the initial to the trained weights."""

import io

import pytest
import torch

from gd_torch import train
from gd_torch.analysis.surface import (
    LINE_TIMES,
    MARGIN,
    cost_on_plane,
    grid_axes,
    line_points,
    metrics_at,
    path_plane,
)
from gd_torch.core.evaluate import evaluate
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.trajectory import FILE_NAME, Trajectory
from gd_torch.core.weight_space import network_at, point_of
from tests.configs import split
from tests.fakes import synthetic_mnist

SIZES = (784, 16, 16, 10)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of the default network in float64 on 600 synthetic digits, with a snapshot every
    20 of its 120 steps."""
    data = synthetic_mnist(600, 200).to("cpu", torch.float64)
    config = split(
        epochs=2,
        dtype="float64",
        snapshot_every=20,
        runs_dir=str(tmp_path_factory.mktemp("runs")),
    )
    result = train(*config, data=data, out=io.StringIO())
    return result, Trajectory.load(result.run_dir / FILE_NAME), data


def generator():
    return torch.Generator().manual_seed(0)


def test_the_grid_centre_is_the_trained_weights_and_its_cost_is_theirs(run):
    result, trajectory, data = run
    trained = point_of(result.network)
    plane = path_plane(trajectory.points, trained, generator())
    alphas, betas = grid_axes(plane.coordinates(trajectory.points), 5)
    assert alphas[2] == 0 and betas[2] == 0
    costs = cost_on_plane(plane, alphas, betas, SIZES, data.train, "quadratic")
    assert costs.shape == (5, 5)
    assert torch.equal(plane.points(torch.zeros(1, 2))[0], trained)
    assert costs[2, 2].item() == pytest.approx(
        evaluate(result.network, data.train, "quadratic").cost, rel=1e-12
    )
    assert costs[2, 2] < costs[0, 0] and costs[2, 2] < costs[4, 4]  # the trained point lies low


def test_each_grid_point_costs_what_its_network_costs_alone(run):
    result, trajectory, data = run
    plane = path_plane(trajectory.points, point_of(result.network), generator())
    alphas, betas = grid_axes(plane.coordinates(trajectory.points), 5)
    costs = cost_on_plane(plane, alphas, betas, SIZES, data.train, "nielsen")
    for row, column in [(0, 0), (1, 3), (4, 2)]:
        point = plane.points(torch.stack([alphas[column], betas[row]])[None])[0]
        alone = evaluate(network_at(point, SIZES), data.train, "nielsen").cost
        assert costs[row, column].item() == pytest.approx(alone, rel=1e-12)


def test_a_trajectory_of_two_snapshots_lies_in_its_plane_exactly(run):
    result, trajectory, _ = run
    for dtype, tolerance in ((torch.float64, 1e-13), (torch.float32, 1e-6)):
        start, end = trajectory.points[0].to(dtype), trajectory.points[-1].to(dtype)
        points = torch.stack([start, end])
        plane = path_plane(points, end, generator())
        assert plane.variance == (1.0, 0.0)
        gram = plane.directions.double() @ plane.directions.double().T
        torch.testing.assert_close(gram, torch.eye(2, dtype=torch.float64), rtol=0, atol=tolerance)
        assert (plane.distances(points) / (start - end).norm()).max() < tolerance
        (alpha, beta), _ = plane.coordinates(points).tolist()
        assert alpha == pytest.approx(-(start - end).norm().item(), rel=tolerance)
        assert beta == pytest.approx(0, abs=tolerance * abs(alpha))


def test_the_directions_are_the_principal_components_about_the_trained_weights(run):
    result, trajectory, _ = run
    trained = point_of(result.network)
    plane = path_plane(trajectory.points, trained, generator())
    spread = trajectory.points - trained  # M, (S, P)
    eigenvalues = torch.linalg.eigvalsh(spread @ spread.T).flip(0)  # σ², largest first
    assert plane.variance == pytest.approx((eigenvalues[:2] / eigenvalues.sum()).tolist())
    assert 0.5 < sum(plane.variance) <= 1
    # no other plane through θ* lies closer to the path: the squared distances left are Σ_{k>2} σ²
    left = (plane.distances(trajectory.points) ** 2).sum()
    assert left.item() == pytest.approx(eigenvalues[2:].sum().item(), rel=1e-9)
    start = plane.coordinates(trajectory.points[:1])[0]
    assert (start <= 0).all()  # signs chosen so that the path comes from α ≤ 0, β ≤ 0


def test_three_snapshots_lie_in_their_plane_and_hold_all_of_the_spread(run):
    result, trajectory, _ = run
    points = trajectory.points[[0, 3, -1]]
    plane = path_plane(points, points[-1], generator())
    assert sum(plane.variance) == pytest.approx(1, rel=1e-12)
    assert plane.distances(points).max() < 1e-12 * (points[0] - points[-1]).norm()


def test_the_grid_reaches_beyond_the_path_along_each_direction():
    coordinates = torch.tensor([[-4.0, -1.0], [-2.0, 0.5], [0.0, 0.0]])
    alphas, betas = grid_axes(coordinates, 41)
    assert len(alphas) == len(betas) == 41 and alphas[20] == betas[20] == 0
    assert alphas[0] == -MARGIN * 4 and alphas[-1] == MARGIN * 4 and betas[-1] == MARGIN * 1
    flat = grid_axes(torch.tensor([[-3.0, 0.0], [0.0, 0.0]]), 41)[1]
    assert flat[-1] == MARGIN * 3  # a path with no spread along d_2: the grid takes d_1's reach


def test_the_line_ends_cost_what_the_initial_and_trained_networks_cost(run):
    result, trajectory, data = run
    initial = Network(SIZES, "nielsen-improved", seeded_generators(0)[0], torch.float64)
    start, end = point_of(initial), point_of(result.network)
    assert torch.equal(start, trajectory.points[0])  # the trajectory starts at the run's start
    points = line_points(start, end, LINE_TIMES)
    assert LINE_TIMES[0] == -0.5 and LINE_TIMES[-1] == 1.5 and len(LINE_TIMES) == 41
    at_start, at_end = (LINE_TIMES == 0).nonzero().item(), (LINE_TIMES == 1).nonzero().item()
    assert torch.equal(points[at_start], start) and torch.equal(points[at_end], end)
    line = metrics_at(points, SIZES, data.train, "quadratic")
    for index, network in ((at_start, initial), (at_end, result.network)):
        alone = evaluate(network, data.train, "quadratic")
        assert line[index].cost == pytest.approx(alone.cost, rel=1e-12)
        assert line[index].accuracy == alone.accuracy
    halfway = network_at((start + end) / 2, SIZES)
    assert line[(LINE_TIMES == 0.5).nonzero().item()].cost == pytest.approx(
        evaluate(halfway, data.train, "quadratic").cost, rel=1e-12
    )
