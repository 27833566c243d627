import math

import pytest
import torch

from gd_torch.core.model import INITIALIZATIONS, Network


def test_default_network_is_784_16_16_10_with_13002_parameters():
    network = Network()
    assert network.sizes == (784, 16, 16, 10)
    assert network.num_parameters == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 == 13_002


def test_every_layer_is_a_sigmoid_of_an_affine_map():
    network = Network((784, 5, 3), generator=torch.Generator().manual_seed(1))
    x = torch.rand(4, 784)
    expected = x
    for layer in network.layers:
        expected = torch.sigmoid(expected @ layer.weight.T + layer.bias)
    torch.testing.assert_close(network(x), expected)
    assert network(x).shape == (4, 3)


@pytest.mark.parametrize("init", INITIALIZATIONS)
def test_same_seed_same_weights(init):
    a = Network(init=init, generator=torch.Generator().manual_seed(5))
    b = Network(init=init, generator=torch.Generator().manual_seed(5))
    c = Network(init=init, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


def _layer0_stats(init, n_in=784):
    network = Network((n_in, 4000, 10), init, torch.Generator().manual_seed(0))
    return network.layers[0].weight, network.layers[0].bias


def test_nielsen_init_is_standard_normal():
    weight, bias = _layer0_stats("nielsen")
    assert weight.mean().item() == pytest.approx(
        0, abs=0.01
    ) and weight.std().item() == pytest.approx(1, rel=0.01)
    assert bias.std().item() == pytest.approx(1, rel=0.05)


def test_nielsen_improved_init_scales_weights_by_one_over_root_n_in():
    weight, bias = _layer0_stats("nielsen-improved")
    assert weight.std().item() == pytest.approx(1 / math.sqrt(784), rel=0.01)
    assert bias.std().item() == pytest.approx(1, rel=0.05)


def test_pytorch_init_is_uniform_within_one_over_root_n_in():
    weight, bias = _layer0_stats("pytorch")
    bound = 1 / math.sqrt(784)
    assert weight.abs().max().item() <= bound and weight.abs().max().item() > 0.99 * bound
    assert weight.std().item() == pytest.approx(
        bound / math.sqrt(3), rel=0.01
    )  # U(-b, b) has std b/√3
    assert bias.abs().max().item() <= bound
