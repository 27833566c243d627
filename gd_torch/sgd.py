"""One step of plain stochastic gradient descent, w ← w − η (∇C + λw), for every weight and bias.

It runs ``torch.optim.SGD``'s own update, the functional ``torch.optim.sgd.sgd`` that
``SGD.step()`` calls, with η and λ from the optimizer's parameter groups (so the learning-rate
schedule and checkpoints keep working through the optimizer), and the same bits. It skips
``step()``'s per-call bookkeeping (hooks, profiler record, state grouping), which for this small
network costs more than the update itself.
"""

import torch
from torch.optim.sgd import sgd


@torch.no_grad()
def sgd_step(optimizer: torch.optim.SGD) -> None:
    for group in optimizer.param_groups:
        if group["momentum"] or group["maximize"] or group["nesterov"]:
            raise ValueError("sgd_step is plain SGD: call optimizer.step() for momentum, nesterov or maximize")
        parameters = group["params"]
        sgd(parameters, [parameter.grad for parameter in parameters], [None] * len(parameters), foreach=False,
            weight_decay=group["weight_decay"], momentum=0.0, lr=group["lr"], dampening=0.0, nesterov=False, maximize=False)
