"""The sensitivity numbers (∂C/∂w over the whole training set) against a hand calculation and
autograd."""

import pytest
import torch

from gd_torch.analysis.sensitivity import full_gradient, most_sensitive
from gd_torch.core.cost import cost
from gd_torch.core.data import Split
from gd_torch.core.model import Network


def by_hand_network() -> tuple[Network, Split]:
    """A 3-input, 10-output network with every weight and bias 0, so every activation is σ(0) = ½.

    For two digits x = (1, 0, 4) and (3, 0, 2), both labelled 0, C = ½ Σ_x Σ_j (½ − y_j)² and
    ∂C/∂b_j = mean_x 2(½ − y_j) σ'(0) = ½(½ − y_j):    −¼ for j = 0, +¼ otherwise
    ∂C/∂W_jk = ∂C/∂b_j · mean_x x_k, with mean x = (2, 0, 3)
    so |∂C/∂W| is 0.5 in column 0, 0 in column 1 and 0.75 in column 2: median 0.5, top 0.75 (1.5x).
    """
    network = Network((3, 10)).double()
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
    return network, Split(
        torch.tensor([[1.0, 0.0, 4.0], [3.0, 0.0, 2.0]], dtype=torch.float64), torch.tensor([0, 0])
    )


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_gradient_matches_the_hand_calculation(engine):
    network, split = by_hand_network()
    ((nabla_w, nabla_b),) = full_gradient(network, split, "quadratic", engine)
    expected_b = torch.full((10,), 0.25, dtype=torch.float64)
    expected_b[0] = -0.25
    torch.testing.assert_close(nabla_b, expected_b)
    torch.testing.assert_close(
        nabla_w, expected_b[:, None] * torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64)
    )


def test_most_sensitive_matches_the_hand_calculation():
    network, split = by_hand_network()
    weights, biases = most_sensitive(full_gradient(network, split, "quadratic"), k=3)
    for s in weights:
        assert s.name.startswith("W1[") and s.name.endswith(
            ", 2]"
        )  # column 2 is where |∂C/∂W| = 0.75
        assert abs(s.slope) == pytest.approx(0.75)
        assert s.ratio_to_median == pytest.approx(1.5)
    assert (
        weights[0]
        .sentence()
        .startswith(
            f"the cost is 1.5x more sensitive to {weights[0].name} than to the median weight"
        )
    )
    assert [s.ratio_to_median for s in biases] == [pytest.approx(1.0)] * 3  # every |∂C/∂b| is ¼


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_gradient_over_a_split_matches_autograd_in_float64(engine):
    torch.manual_seed(0)
    network = Network((6, 5, 4, 10), "nielsen", torch.Generator().manual_seed(3)).double()
    split = Split(torch.rand(13, 6, dtype=torch.float64), torch.randint(0, 10, (13,)))
    expected = torch.autograd.grad(
        cost(network(split.images, weighted_output=True), split.targets),
        list(network.parameters()),
    )
    gradient = full_gradient(network, split, "quadratic", engine)
    for got, want in zip([g for pair in gradient for g in pair], expected):
        torch.testing.assert_close(got, want)


def test_ranking_names_the_right_entries_largest_first():
    generator = torch.Generator().manual_seed(1)
    gradients = [
        (torch.randn(5, 6, generator=generator), torch.randn(5, generator=generator)),
        (torch.randn(10, 5, generator=generator) * 3, torch.randn(10, generator=generator)),
    ]
    weights, biases = most_sensitive(gradients, k=7)
    all_weights = torch.cat([w.flatten() for w, _ in gradients]).abs()
    assert [abs(s.slope) for s in weights] == all_weights.sort(descending=True).values[:7].tolist()
    for s in weights + biases:
        layer, index = int(s.name[1]), tuple(int(i) for i in s.name[3:-1].split(", "))
        assert gradients[layer - 1][0 if s.name[0] == "W" else 1][index].item() == s.slope
    median = all_weights.sort().values[
        (all_weights.numel() - 1) // 2
    ]  # the lower middle value, as torch.median
    assert weights[0].ratio_to_median == pytest.approx(all_weights.max().item() / median.item())
