"""One step of plain stochastic gradient descent, w ← w − η (∇C + λw), for every weight and bias.

It runs ``torch.optim.SGD``'s own update, the functional ``torch.optim.sgd.sgd`` that
``SGD.step()`` calls, with η and λ from the optimizer's parameter groups (so the learning-rate
schedule and checkpoints keep working through the optimizer), and the same bits. It skips
``step()``'s per-call bookkeeping (hooks, profiler record, state grouping), which for this small
network costs more than the update itself.
"""

import torch
from torch import Tensor
from torch.optim.sgd import sgd


def sgd_update(parameters: list[Tensor], gradients: list[Tensor], learning_rate: float | Tensor, weight_decay: float) -> None:
    """w ← w − η (∇C + λw) for each parameter w and its gradient ∇C, in place: ``SGD.step()``'s update, without momentum."""
    sgd(parameters, gradients, [None] * len(parameters), foreach=False, weight_decay=weight_decay,
        momentum=0.0, lr=learning_rate, dampening=0.0, nesterov=False, maximize=False)


def plain_sgd(group: dict) -> dict:
    """An optimizer's parameter group, checked to be plain SGD (what ``sgd_update`` computes)."""
    if group["momentum"] or group["maximize"] or group["nesterov"]:
        raise ValueError("sgd_step is plain SGD: call optimizer.step() for momentum, nesterov or maximize")
    return group


@torch.no_grad()
def sgd_step(optimizer: torch.optim.SGD) -> None:
    """The update of ``optimizer.step()`` from each parameter's ``.grad``, with each group's η and λ."""
    for group in map(plain_sgd, optimizer.param_groups):
        parameters = group["params"]
        sgd_update(parameters, [parameter.grad for parameter in parameters], group["lr"], group["weight_decay"])
