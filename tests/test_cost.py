import math

import pytest
import torch

from gd_torch.core.cost import COST_SCALES, cost, cost_gradient, one_hot


def logits(activations: torch.Tensor) -> torch.Tensor:
    """z^L with σ(z^L) = a^L: the cost is computed from the weighted output."""
    return torch.logit(activations.double())


def test_quadratic_cost_is_sum_over_outputs_averaged_over_examples():
    z = torch.tensor([[0.0] * 10, [-math.inf] * 10])  # a = 0.5 and a = 0
    target = one_hot(torch.tensor([3, 0]))
    # example 1: nine outputs at 0.5 (0.25 each) and (0.5 − 1)² = 0.25 -> 2.5;
    # example 2: (0 − 1)² = 1
    assert cost(z, target).item() == pytest.approx((2.5 + 1.0) / 2)


def test_one_hot_targets():
    assert one_hot(torch.tensor([2])).tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]


def test_mse_convention_is_nn_mse_loss_a_tenth_of_quadratic():
    generator = torch.Generator().manual_seed(0)
    z, target = (
        torch.randn(7, 10, generator=generator),
        one_hot(torch.randint(0, 10, (7,), generator=generator)),
    )
    torch.testing.assert_close(cost(z, target, "mse"), torch.nn.MSELoss()(torch.sigmoid(z), target))
    torch.testing.assert_close(cost(z, target, "mse"), cost(z, target) / 10)


def test_nielsen_convention_is_half_of_quadratic():
    generator = torch.Generator().manual_seed(1)
    output, target = (
        torch.rand(5, 10, generator=generator, dtype=torch.float64),
        one_hot(torch.randint(0, 10, (5,), generator=generator), torch.float64),
    )
    # Nielsen: C = 1/(2n) Σ_x ||y(x) − a(x)||²
    nielsen = sum(((target[i] - output[i]).norm() ** 2 for i in range(5))) / (2 * 5)
    torch.testing.assert_close(cost(logits(output), target, "nielsen"), nielsen)


def test_cross_entropy_is_nielsens_formula_by_hand():
    """Two examples, one output not 0.5 in each: C = −(1/n) Σ_x Σ_j [y ln a + (1−y) ln(1−a)]."""
    a = torch.full((2, 10), 0.5, dtype=torch.float64)
    a[0, 3], a[1, 0] = 0.9, 0.2
    target = one_hot(torch.tensor([3, 7]), torch.float64)
    # example 1: −ln 0.9 for the right digit, −ln 0.5 for the nine others;
    # example 2: −ln 0.5 for the right digit 7, −ln(1 − 0.2) for output 0, −ln 0.5 for eight others
    by_hand = (
        -math.log(0.9) - 9 * math.log(0.5) - math.log(0.5) - math.log(0.8) - 8 * math.log(0.5)
    ) / 2
    assert cost(logits(a), target, "cross-entropy").item() == pytest.approx(by_hand, rel=1e-12)


def test_cross_entropy_stays_exact_where_the_sigmoid_saturates():
    """In float32 σ(40) is exactly 1, so −ln(1 − a) would be inf; from z it is softplus(40) = 40."""
    z = torch.tensor([[40.0] + [-40.0] * 9, [-40.0] * 10])
    target = one_hot(torch.tensor([1, 0]))  # output 0 is wrong and saturated in the first example
    assert torch.sigmoid(z[0, 0]).item() == 1.0
    # example 1: output 0 costs 40 (wrong, z = 40), output 1 costs 40 (right, z = −40), the
    # rest e^−40; example 2: output 0 costs 40 (right, z = −40), the rest e^−40
    assert cost(z, target, "cross-entropy").item() == pytest.approx((80 + 40) / 2, rel=1e-6)


@pytest.mark.parametrize("convention", COST_SCALES)
def test_cost_gradient_is_the_derivative_of_the_cost(convention):
    output = torch.rand(6, 10, dtype=torch.float64, requires_grad=True)
    target = one_hot(torch.arange(6) % 10, torch.float64)
    (expected,) = torch.autograd.grad(cost(torch.logit(output), target, convention), output)
    torch.testing.assert_close(cost_gradient(output.detach(), target, convention), expected)


def test_cross_entropy_derivative_in_z_has_no_sigma_prime():
    """∂C/∂z^L = (a − y)/n: what the cross-entropy's BP1 writes."""
    z = (4 * torch.randn(6, 10, dtype=torch.float64)).requires_grad_()
    target = one_hot(torch.arange(6) % 10, torch.float64)
    (gradient,) = torch.autograd.grad(cost(z, target, "cross-entropy"), z)
    torch.testing.assert_close(gradient, (torch.sigmoid(z.detach()) - target) / 6)


def test_stacked_costs_are_each_networks_cost():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(3, 5, 10, generator=generator, dtype=torch.float64)
    target = one_hot(torch.randint(0, 10, (3, 5), generator=generator), torch.float64)
    for convention in (*COST_SCALES, "cross-entropy"):
        costs = cost(z, target, convention)
        assert costs.shape == (3,)
        for k in range(3):
            torch.testing.assert_close(costs[k], cost(z[k], target[k], convention))
