import pytest
import torch

from gd_torch.core.cost import COST_SCALES, cost, cost_gradient, one_hot


def test_quadratic_cost_is_sum_over_outputs_averaged_over_examples():
    output = torch.tensor([[0.5] * 10, [0.0] * 10])
    target = one_hot(torch.tensor([3, 0]))
    # example 1: nine outputs at 0.5 (0.25 each) and (0.5 − 1)² = 0.25 -> 2.5;
    # example 2: (0 − 1)² = 1
    assert cost(output, target).item() == pytest.approx((2.5 + 1.0) / 2)


def test_one_hot_targets():
    assert one_hot(torch.tensor([2])).tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]


def test_mse_convention_is_nn_mse_loss_a_tenth_of_quadratic():
    generator = torch.Generator().manual_seed(0)
    output, target = (
        torch.rand(7, 10, generator=generator),
        one_hot(torch.randint(0, 10, (7,), generator=generator)),
    )
    torch.testing.assert_close(cost(output, target, "mse"), torch.nn.MSELoss()(output, target))
    torch.testing.assert_close(cost(output, target, "mse"), cost(output, target) / 10)


def test_nielsen_convention_is_half_of_quadratic():
    generator = torch.Generator().manual_seed(1)
    output, target = (
        torch.rand(5, 10, generator=generator),
        one_hot(torch.randint(0, 10, (5,), generator=generator)),
    )
    # Nielsen: C = 1/(2n) Σ_x ||y(x) − a(x)||²
    nielsen = sum(((target[i] - output[i]).norm() ** 2 for i in range(5))) / (2 * 5)
    torch.testing.assert_close(cost(output, target, "nielsen"), nielsen)


@pytest.mark.parametrize("convention", COST_SCALES)
def test_cost_gradient_is_the_derivative_of_the_cost(convention):
    output = torch.rand(6, 10, dtype=torch.float64, requires_grad=True)
    target = one_hot(torch.arange(6) % 10, torch.float64)
    (expected,) = torch.autograd.grad(cost(output, target, convention), output)
    torch.testing.assert_close(cost_gradient(output.detach(), target, convention), expected)
