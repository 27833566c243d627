"""L2 weight decay (Nielsen ch. 3) reaches both engines through the same torch.optim.SGD.

SGD adds λw to each .grad before the step; the manual engine writes .grad like autograd, so
both must take the same steps, w ← w − η(∇C + λw), in float64.
"""

import torch

from gd_torch.config import TrainConfig
from gd_torch.data import Mnist, Split
from gd_torch.model import Network
from gd_torch.train import train_one_epoch
from tests.fakes import synthetic_mnist


def trained_parameters(engine: str, weight_decay: float) -> list[torch.Tensor]:
    """Two epochs (120 SGD steps, batch 10) on 600 synthetic digits in float64."""
    digits = synthetic_mnist().train
    data = Mnist(Split(digits.images.double(), digits.labels), None)
    config = TrainConfig(engine=engine, weight_decay=weight_decay, batch_size=10, learning_rate=1.5)
    network = Network(config.layer_sizes, "nielsen-improved", torch.Generator().manual_seed(3)).double()
    optimizer = torch.optim.SGD(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    order, step = torch.Generator().manual_seed(4), 0
    for _ in range(2):
        step = train_one_epoch(network, optimizer, config, data, order, step)
    return [p.detach() for p in network.parameters()]


def test_manual_and_autograd_agree_with_weight_decay():
    manual, autograd = trained_parameters("manual", 1e-3), trained_parameters("autograd", 1e-3)
    for m, a in zip(manual, autograd):
        torch.testing.assert_close(m, a, rtol=0, atol=1e-12)


def test_weight_decay_shrinks_the_weights():
    decayed, plain = trained_parameters("manual", 1e-2), trained_parameters("manual", 0.0)
    norm = lambda parameters: torch.stack([p.norm() for p in parameters]).norm()  # noqa: E731
    assert norm(decayed) < 0.9 * norm(plain)
