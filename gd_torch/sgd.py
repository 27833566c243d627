"""One step of plain stochastic gradient descent, w ← w − η (∇C + λw), for every weight and bias.

It does what ``torch.optim.SGD(momentum=0).step()`` does, with the same operations in the same
order (so the same bits), reading η and λ from the optimizer's parameter groups; the optimizer
stays the owner of the hyperparameters (learning-rate schedule, checkpoints). For this small
network SGD.step's Python bookkeeping costs several times the update itself: the update here is
one ``torch._foreach_add_`` over all parameters.
"""

import torch


@torch.no_grad()
def sgd_step(optimizer: torch.optim.SGD) -> None:
    for group in optimizer.param_groups:
        if group["momentum"] or group["maximize"]:
            raise ValueError("sgd_step is plain SGD: call optimizer.step() for momentum or maximize")
        parameters = group["params"]
        gradients = [parameter.grad for parameter in parameters]
        if group["weight_decay"]:
            gradients = torch._foreach_add(gradients, parameters, alpha=group["weight_decay"])  # ∇C + λw
        torch._foreach_add_(parameters, gradients, alpha=-group["lr"])  # w ← w − η (∇C + λw)
