"""The manual-backprop twin computes exactly the gradient autograd computes."""

import inspect
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gd_torch.core import manual
from gd_torch.core.cost import COST_SCALES, COSTS, cost
from gd_torch.core.engines import ENGINES
from gd_torch.core.model import INITIALIZATIONS
from tests.gradients import autograd_gradients, manual_gradients, max_relative_error, random_problem

CONVENTIONS = COSTS  # the quadratic cost's three conventions and the cross-entropy
INITS = tuple(INITIALIZATIONS)

# (hidden sizes, batch size): 1 to 4 hidden layers, widths 1 to 64, batch 1 to 128, never all equal.
TABLE = [
    ((16, 16), 7),
    ((1,), 3),
    ((64,), 1),
    ((30,), 128),
    ((5, 9, 2), 13),
    ((64, 1, 64, 3), 33),
    ((2, 3, 4, 5), 100),
]


@pytest.mark.parametrize("hidden_sizes,batch_size", TABLE)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("init", INITS)
def test_twin_equals_autograd_float64(hidden_sizes, batch_size, convention, init):
    network, images, targets = random_problem(hidden_sizes, batch_size, init)
    error = max_relative_error(
        manual_gradients(network, images, targets, convention),
        autograd_gradients(network, images, targets, convention),
    )
    assert error <= 1e-10


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_twin_equals_autograd_with_saturated_outputs(convention):
    """Nielsen's N(0, 1) weights scaled up so that most outputs are saturated (|z^L| up to ~40,
    σ'(z^L) down to 1e-17): where the cross-entropy's BP1 matters, the twin still agrees."""
    network, images, targets = random_problem((16, 16), 19, "nielsen")
    with torch.no_grad():
        network.layers[-1].weight.mul_(8)
        assert network(images, weighted_output=True).abs().max() > 30
    error = max_relative_error(
        manual_gradients(network, images, targets, convention),
        autograd_gradients(network, images, targets, convention),
    )
    assert error <= 1e-10


@pytest.mark.parametrize("hidden_sizes,batch_size", TABLE)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_twin_equals_autograd_float32(hidden_sizes, batch_size, convention):
    network, images, targets = random_problem(hidden_sizes, batch_size, dtype=torch.float32)
    for pair_manual, pair_autograd in zip(
        manual_gradients(network, images, targets, convention),
        autograd_gradients(network, images, targets, convention),
    ):
        torch.testing.assert_close(pair_manual, pair_autograd)


@settings(max_examples=40, deadline=None)
@given(
    hidden_sizes=st.lists(st.integers(1, 64), min_size=1, max_size=4),
    batch_size=st.integers(1, 128),
    convention=st.sampled_from(CONVENTIONS),
    init=st.sampled_from(INITS),
    seed=st.integers(0, 2**31 - 1),
)
def test_twin_equals_autograd_property(hidden_sizes, batch_size, convention, init, seed):
    network, images, targets = random_problem(hidden_sizes, batch_size, init, seed=seed)
    error = max_relative_error(
        manual_gradients(network, images, targets, convention),
        autograd_gradients(network, images, targets, convention),
    )
    assert error <= 1e-10


def test_autograd_itself_passes_gradcheck():
    """The oracle is checked too: autograd's ∂C/∂θ against finite differences of C(θ)."""
    network, images, targets = random_problem((5, 4), 6, "nielsen")
    shapes = [p.shape for p in network.parameters()]

    def cost_of(*parameters):
        a = images
        for l in range(0, len(parameters) - 2, 2):
            a = torch.sigmoid(a @ parameters[l].T + parameters[l + 1])
        return cost(a @ parameters[-2].T + parameters[-1], targets)  # C(z^L)

    assert torch.autograd.gradcheck(
        cost_of, tuple(p.detach().clone().requires_grad_() for p in network.parameters())
    )
    assert [p.shape for p in network.parameters()] == shapes


def test_twin_passes_gradcheck_against_finite_differences():
    """The twin's gradient against central differences of C(θ) directly, without autograd."""
    network, images, targets = random_problem((3,), 4, "nielsen")
    gradients = [
        g for pair in manual_gradients(network, images, targets, "quadratic") for g in pair
    ]
    h = 1e-6
    with torch.no_grad():
        for parameter, gradient in zip(network.parameters(), gradients):
            for index in [(0,) * parameter.dim(), tuple(s - 1 for s in parameter.shape)]:
                original = parameter[index].item()
                parameter[index] = original + h
                up = cost(network(images, weighted_output=True), targets).item()
                parameter[index] = original - h
                down = cost(network(images, weighted_output=True), targets).item()
                parameter[index] = original
                assert (up - down) / (2 * h) == pytest.approx(
                    gradient[index].item(), rel=1e-6, abs=1e-9
                )


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_one_sgd_step_is_the_same_with_either_engine(convention):
    stepped = {}
    for engine in ("manual", "autograd"):
        network, images, targets = random_problem((16, 16), 11, seed=3)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.7, weight_decay=1e-3)
        ENGINES[engine](network, images, targets, convention)
        optimizer.step()
        stepped[engine] = [p.detach().clone() for p in network.parameters()]
    for m, a in zip(stepped["manual"], stepped["autograd"]):
        torch.testing.assert_close(m, a, rtol=1e-12, atol=1e-14)


def test_engines_return_the_same_batch_cost():
    network, images, targets = random_problem((16, 16), 11, seed=4)
    costs = [
        ENGINES[engine](network, images, targets, "quadratic") for engine in ("manual", "autograd")
    ]
    torch.testing.assert_close(costs[0], costs[1], rtol=1e-14, atol=0)


def test_backward_leaves_the_cached_activations_unchanged():
    network, images, targets = random_problem((16, 8), 9)
    with torch.no_grad():
        _, activations = manual.forward(network, images)
        before = [a.clone() for a in activations]
        manual.backward(network, activations, targets, "quadratic")
    for a, b in zip(activations, before):
        assert torch.equal(a, b)


def test_manual_forward_matches_the_module():
    network, images, _ = random_problem((16, 8), 9)
    with torch.no_grad():
        zs, activations = manual.forward(network, images)
        torch.testing.assert_close(activations[-1], network(images), rtol=1e-15, atol=0)
        torch.testing.assert_close(
            zs[-1], network(images, weighted_output=True), rtol=1e-15, atol=0
        )
        for z, a in zip(zs, activations[1:], strict=True):
            assert torch.equal(torch.sigmoid(z), a)


def _sigma_prime_as_a(a):
    return a


def _cost_gradient_without_mean(output, target, convention="quadratic"):
    return 2 * COST_SCALES[convention] * (output - target)


@pytest.mark.parametrize(
    "name,replacement",
    [("sigmoid_prime", _sigma_prime_as_a), ("cost_gradient", _cost_gradient_without_mean)],
)
def test_plausible_wrong_derivatives_are_caught(monkeypatch, name, replacement):
    """Mutation check: the comparison above is sharp enough to catch a wrong backward pass."""
    network, images, targets = random_problem((16, 16), 7)
    monkeypatch.setattr(manual, name, replacement)
    error = max_relative_error(
        manual_gradients(network, images, targets, "quadratic"),
        autograd_gradients(network, images, targets, "quadratic"),
    )
    assert error > 1e-3


CROSS_ENTROPY_BP1 = "delta = (output - target) / output.shape[-2]"


def test_sigma_prime_left_in_the_cross_entropy_bp1_is_caught():
    """Mutation check on the real line: manual.py with σ'(z^L) left in the cross-entropy's BP1,
    δ^L = (a^L − y)/n ⊙ σ'(z^L), must fail the comparison the twin passes."""
    source = inspect.getsource(manual)
    assert source.count(CROSS_ENTROPY_BP1) == 1
    mutated = types.ModuleType("mutated_manual")
    exec(
        compile(
            source.replace(CROSS_ENTROPY_BP1, CROSS_ENTROPY_BP1 + " * sigmoid_prime(output)"),
            "mutated_manual",
            "exec",
        ),
        mutated.__dict__,
    )
    network, images, targets = random_problem((16, 16), 7)
    expected = autograd_gradients(network, images, targets, "cross-entropy")
    with torch.no_grad():
        _, activations = mutated.forward(network, images)
        right = manual.backward(network, activations, targets, "cross-entropy")
        wrong = mutated.backward(network, activations, targets, "cross-entropy")
    assert max_relative_error(right, expected) <= 1e-10
    assert max_relative_error(wrong, expected) > 1e-3
