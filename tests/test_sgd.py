"""The lean SGD step does exactly what torch.optim.SGD.step does."""

import pytest
import torch

from gd_torch.engines import ENGINES
from gd_torch.sgd import sgd_step
from tests.gradients import random_problem



@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgd_step_equals_torch_optim_sgd_bit_for_bit(weight_decay, dtype):
    stepped = []
    for step in (torch.optim.SGD.step, sgd_step):
        network, images, targets = random_problem((16, 16), 11, dtype=dtype, seed=5)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.7, weight_decay=weight_decay)
        for _ in range(3):
            ENGINES["manual"](network, images, targets, "quadratic")
            step(optimizer)
        stepped.append([p.detach().clone() for p in network.parameters()])
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(*stepped))
    assert not torch.equal(stepped[0][0], random_problem((16, 16), 11, dtype=dtype, seed=5)[0].layers[0].weight)


def test_sgd_step_refuses_momentum():
    network, images, targets = random_problem((4,), 3)
    ENGINES["manual"](network, images, targets, "quadratic")
    with pytest.raises(ValueError, match="momentum"):
        sgd_step(torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9))
