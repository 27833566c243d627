"""One example's nudges from the manual twin's BP lines, and their averages: −∇C of the batch, and
over every training example −∇C itself, by both engines."""

import pytest
import torch

from gd_torch.analysis.nudges import nudges
from gd_torch.analysis.sensitivity import full_gradient
from gd_torch.core.cost import COST_SCALES, cost
from gd_torch.core.model import Network
from tests.fakes import synthetic_mnist

SIZES = (784, 12, 9, 10)  # hidden widths unlike each other and the batch sizes below


@pytest.fixture(scope="module")
def network():
    network = Network(SIZES, "nielsen", torch.Generator().manual_seed(3), torch.float64)
    return network  # N(0, 1) weights: large, non-trivial nudges


@pytest.fixture(scope="module")
def train():
    return synthetic_mnist(300, 10).train.to("cpu", torch.float64)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("engine", ["manual", "autograd"])
@pytest.mark.parametrize("convention", ["quadratic", "nielsen"])
def test_every_examples_nudges_averaged_are_minus_the_gradient(network, train, engine, convention):
    one_by_one = [
        nudges(network, train.images[i : i + 1], train.targets[i : i + 1], convention)
        for i in range(len(train))
    ]
    gradient = full_gradient(network, train, convention, engine)  # ∇C over all 300 examples
    for l, (nabla_w, nabla_b) in enumerate(gradient):
        average_w = torch.stack([n.weights[l] for n in one_by_one]).mean(0)
        average_b = torch.stack([n.biases[l] for n in one_by_one]).mean(0)
        assert relative_error(average_w, -nabla_w) <= 1e-10
        assert relative_error(average_b, -nabla_b) <= 1e-10
    together = nudges(network, train.images, train.targets, convention)  # BP4's own sum
    for l, (nabla_w, _) in enumerate(gradient):
        assert relative_error(together.weights[l], -nabla_w) <= 1e-10
        for average, one in (
            (together.activations[l], torch.stack([n.activations[l] for n in one_by_one]).mean(0)),
        ):
            assert relative_error(average, one) <= 1e-10


@pytest.mark.parametrize("convention", list(COST_SCALES))
def test_one_examples_output_nudges_are_its_distance_to_the_target_scaled_by_the_cost(
    network, train, convention
):
    image, target = train.images[7:8], train.targets[7:8]
    output = network(image)[0].detach()
    wished = nudges(network, image, target, convention).activations[-1]
    expected = -2 * COST_SCALES[convention] * (output - target[0])  # −∂C_x/∂a^L
    torch.testing.assert_close(wished, expected, rtol=1e-12, atol=0)
    right = target[0].argmax()
    assert wished[right] > 0 and (wished[torch.arange(10) != right] < 0).all()


def test_hidden_activation_nudges_are_minus_the_cost_gradient_by_autograd(network, train):
    """−∂C/∂a^l of a mini-batch of 25, against autograd through Network.forward's own layers."""
    images, targets = train.images[:25], train.targets[:25]
    wished = nudges(network, images, targets, "quadratic")
    activations, a = [], images
    for layer in network.layers:
        a = torch.sigmoid(layer(a))
        a.retain_grad()
        activations.append(a)
    network.zero_grad()
    cost(torch.logit(a), targets, "quadratic").backward()  # C of z^L, here through a^L = σ(z^L)
    for l, activation in enumerate(activations):
        torch.testing.assert_close(
            wished.activations[l], -activation.grad.sum(0), rtol=1e-10, atol=0
        )
    for l, layer in enumerate(network.layers):
        torch.testing.assert_close(wished.weights[l], -layer.weight.grad, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(wished.biases[l], -layer.bias.grad, rtol=1e-12, atol=1e-15)


def test_one_examples_first_layer_nudges_are_the_digit_weighted_by_each_neurons_delta(
    network, train
):
    """−∂C_x/∂W^1 = −δ^1 x^T: every neuron's 784 nudges are the image itself, scaled."""
    image, target = train.images[3:4], train.targets[3:4]
    first = nudges(network, image, target, "quadratic").weights[0]  # (12, 784)
    for row in first:
        scale = row @ image[0] / (image[0] @ image[0])
        torch.testing.assert_close(row, scale * image[0], rtol=1e-10, atol=1e-14)
