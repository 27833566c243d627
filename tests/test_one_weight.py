"""One weight, one slope: gradient descent on a single weight, and the cost along it."""

import pytest
import torch

from gd_torch.analysis.one_weight import OneWeight, descend
from gd_torch.core.data import Split
from gd_torch.core.model import Network


def test_descent_on_a_quadratic_follows_the_update_step_by_step():
    # C(w) = 2(w − 3)², C'(w) = 4(w − 3); with η = 0.1 each step keeps 1 − 0.4 = 0.6 of the
    # distance to 3
    path = descend(lambda w: 4 * (w - 3), start=0.0, learning_rate=0.1, steps=10)
    assert len(path) == 11
    for k, (w, next_w) in enumerate(zip(path, path[1:])):
        assert next_w == w - 0.1 * 4 * (w - 3)
        assert w == pytest.approx(3 - 3 * 0.6**k)
    steps = [abs(b - a) for a, b in zip(path, path[1:])]
    assert all(
        later < earlier for earlier, later in zip(steps, steps[1:])
    )  # steps shrink as the slope flattens


@pytest.fixture
def weight():
    network = Network((6, 4, 10), "nielsen", torch.Generator().manual_seed(2)).double()
    generator = torch.Generator().manual_seed(5)
    split = Split(
        torch.rand(9, 6, generator=generator, dtype=torch.float64),
        torch.randint(0, 10, (9,), generator=generator),
    )
    return OneWeight(network, split, "quadratic", layer=1, row=2, column=3)


def test_slope_is_the_derivative_of_the_cost_along_the_weight(weight):
    for value in (-1.0, 0.3, 2.0):
        h = 1e-5
        numerical = (weight.cost(value + h) - weight.cost(value - h)) / (2 * h)
        assert weight.slope(value) == pytest.approx(numerical, rel=1e-6, abs=1e-9)


def test_the_network_keeps_its_trained_weight(weight):
    before = [p.detach().clone() for p in weight.network.parameters()]
    weight.cost(5.0)
    weight.slope(-5.0)
    for p, original in zip(weight.network.parameters(), before):
        assert torch.equal(p, original)
    assert weight.cost(weight.trained_value) != weight.cost(weight.trained_value + 1)
