"""The README's chapter-3 figure: one saturated neuron learns slowly under the quadratic cost,
and fast under the cross-entropy, because BP1 loses its σ'."""

import math

import pytest

from gd_torch.analysis.learning_slowdown import START, descend, figure


def test_the_first_slopes_differ_by_sigma_prime():
    a = 1 / (1 + math.exp(-2 * START))  # σ(w x + b) with x = 1
    quadratic, cross_entropy = descend("nielsen", epochs=0), descend("cross-entropy", epochs=0)
    assert cross_entropy["slope"][0] == pytest.approx(a - 0)  # δ = a − y
    assert quadratic["slope"][0] == pytest.approx((a - 0) * a * (1 - a))  # δ = (a − y) σ'(z)


def test_the_saturated_neuron_is_stuck_under_the_quadratic_cost_only():
    quadratic, cross_entropy = descend("nielsen"), descend("cross-entropy")
    assert quadratic["output"][50] > 0.97 and cross_entropy["output"][50] < 0.15
    assert quadratic["output"][-1] < 0.5  # it does learn, once σ' has grown
    assert all(b <= a for a, b in zip(cross_entropy["cost"], cross_entropy["cost"][1:]))


def test_the_figure_draws_both_costs():
    fig = figure()
    assert [len(axis.get_lines()) for axis in fig.axes] == [2, 2]
