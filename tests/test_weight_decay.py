"""torch.optim.SGD's L2 weight decay reaches both engines through the same optimizer.

SGD adds λw to each .grad before the step, for every weight and bias; the manual engine writes
.grad like autograd, so both must take the same steps, w ← w − η(∇C + λw), in float64. (This is
not Nielsen's chapter-3 decay, which shrinks the weights only, by 1 − ηλ/n, and not the biases.)
"""

import torch

from gd_torch.core.data import Split, shuffled_batches
from gd_torch.core.engines import ENGINES
from gd_torch.core.loop import train_one_epoch
from gd_torch.core.model import Network
from tests.fakes import synthetic_mnist


def trained_parameters(engine: str, weight_decay: float) -> list[torch.Tensor]:
    """Two epochs (120 SGD steps, batch 10) on 600 synthetic digits in float64."""
    digits = synthetic_mnist().train
    train = Split(digits.images.double(), digits.labels)
    network = Network(
        init="nielsen-improved", generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    optimizer = torch.optim.SGD(network.parameters(), lr=1.5, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(4)
    for _ in range(2):
        train_one_epoch(
            network, optimizer, train, shuffled_batches(len(train), 10, order), ENGINES[engine]
        )
    return [p.detach() for p in network.parameters()]


def test_manual_and_autograd_agree_with_weight_decay():
    manual, autograd = trained_parameters("manual", 1e-3), trained_parameters("autograd", 1e-3)
    for m, a in zip(manual, autograd):
        torch.testing.assert_close(m, a, rtol=0, atol=1e-12)


def test_weight_decay_shrinks_the_weights():
    decayed, plain = trained_parameters("manual", 1e-2), trained_parameters("manual", 0.0)
    norm = lambda parameters: torch.stack([p.norm() for p in parameters]).norm()  # noqa: E731
    assert norm(decayed) < 0.9 * norm(plain)
