"""How good a mini-batch gradient is: the cosine to the full gradient grows with the batch size and
is 1 for the whole training set; each draw is the gradient of its own mini-batch."""

import pytest
import torch

from gd_torch.analysis.gradient_quality import gradient_quality, gradient_vector, mini_batches
from gd_torch.core.cost import cost
from gd_torch.core.model import Network
from tests.fakes import synthetic_mnist

SIZES = (784, 12, 9, 10)


@pytest.fixture(scope="module")
def network():
    return Network(SIZES, "nielsen-improved", torch.Generator().manual_seed(5), torch.float64)


@pytest.fixture(scope="module")
def train():
    return synthetic_mnist(600, 10).train.to("cpu", torch.float64)


@pytest.fixture(scope="module")
def quality(network, train):
    return gradient_quality(
        network,
        train,
        "quadratic",
        "manual",
        torch.Generator().manual_seed(0),
        batch_sizes=(1, 10, 100, 60_000),
        draws=200,
    )


def test_at_the_whole_training_set_the_cosine_and_the_norm_ratio_are_one(quality, train):
    whole = quality[-1]
    assert whole.batch_size == len(train) == 600  # 60,000 is more than there are: all of them
    assert len(whole.cosines) == 1  # the one mini-batch of all 600 digits
    assert whole.cosines.item() == pytest.approx(1, abs=1e-12)
    assert whole.norm_ratios.item() == pytest.approx(1, abs=1e-12)


def test_the_cosine_grows_and_the_norm_ratio_falls_with_the_batch_size(quality):
    assert [q.batch_size for q in quality] == [1, 10, 100, 600]
    assert all(len(q.cosines) == 200 for q in quality[:-1])
    mean_cosines = [q.cosines.mean().item() for q in quality]
    mean_ratios = [q.norm_ratios.mean().item() for q in quality]
    assert mean_cosines == sorted(mean_cosines) and len(set(mean_cosines)) == 4
    assert mean_ratios == sorted(mean_ratios, reverse=True) and mean_ratios[0] > 1
    assert all(((q.cosines >= -1) & (q.cosines <= 1 + 1e-12)).all() for q in quality)


def test_each_draw_is_the_cosine_of_its_own_mini_batch_by_autograd(network, train, quality):
    batches = mini_batches(len(train), 1, 200, torch.Generator().manual_seed(0))
    full = gradient_vector(network, train, "quadratic", "autograd")
    for draw in (0, 57, 199):
        indices = batches[draw]
        network.zero_grad()
        cost(
            network(train.images[indices], weighted_output=True), train.targets[indices]
        ).backward()
        estimate = torch.cat([p.grad.flatten() for p in network.parameters()])
        cosine = estimate @ full / (estimate.norm() * full.norm())
        assert quality[0].cosines[draw].item() == pytest.approx(cosine.item(), rel=1e-12)
        ratio = (estimate.norm() / full.norm()).item()
        assert quality[0].norm_ratios[draw].item() == pytest.approx(ratio, rel=1e-12)


def test_mini_batches_are_drawn_as_sgd_draws_them_without_the_short_last_batch():
    batches = mini_batches(25, 10, 5, torch.Generator().manual_seed(1))
    assert [len(b) for b in batches] == [10] * 5
    first_epoch = torch.cat(batches[:2])
    assert len(set(first_epoch.tolist())) == 20  # within an epoch, no digit twice
