"""One SGD step on one mini-batch: gather it, ∇C by the engine, then w ← w − η (∇C + λw).

    take_step = sgd_step_function(config, optimizer)   # once per epoch: η is fixed within one
    batch_cost = take_step(network, data.train, indices)

Eager (the default) the step is the math in three calls: ``index_select`` gathers the
mini-batch, the engine (``gd_torch.engines``) writes ∇C into each ``.grad``, and ``sgd_step``
applies ``torch.optim.SGD``'s update.

With ``--compile`` the whole step, gather, forward, backward and update, is one
``torch.compile`` graph: the engine's gradient pass as a pure function
(``GRADIENT_PASSES``: BP1-BP4 of ``gd_torch.manual``, or ``torch.func.grad``) followed by the
same functional SGD update (``sgd_update``). At batch 10 the arithmetic of a step is a fraction
of a percent of its time; the rest is the overhead of ~35 small operations, which Inductor
fuses into a dozen kernels called from one wrapper. The first steps compile (seconds, once per
engine, network shape and batch shape in a process); η enters as a tensor, so a learning-rate
schedule does not recompile. The gradients still land in ``.grad`` for the log and the
divergence checks. The compiled step equals the eager one to float32 rounding (fused kernels
round differently), not bit for bit.

Under torchrun the gradients are all-reduced between the backward pass and the update
(``gd_torch.distributed``), so the step stays eager there and ``train`` refuses --compile.
"""

import functools

import torch

from gd_torch import distributed
from gd_torch.config import TrainConfig
from gd_torch.data import Split
from gd_torch.engines import ENGINES, GRADIENT_PASSES
from gd_torch.sgd import plain_sgd, sgd_step, sgd_update


def sgd_step_function(config: TrainConfig, optimizer: torch.optim.SGD):
    """(network, split, indices) -> batch cost: one SGD step on the examples ``indices`` of ``split``."""
    if config.compile:
        return _compiled_step(config, optimizer)
    compute_gradients = distributed.data_parallel(ENGINES[config.engine])  # unchanged unless launched by torchrun

    def eager_step(network, split: Split, indices):
        batch_cost = compute_gradients(network, split.images.index_select(0, indices), split.targets.index_select(0, indices), config.cost)
        sgd_step(optimizer)  # w ← w − η (∇C + λw)
        return batch_cost

    return eager_step


def _compiled_step(config: TrainConfig, optimizer: torch.optim.SGD):
    (group,) = map(plain_sgd, optimizer.param_groups)
    whole_step = _whole_step(config.engine)
    learning_rate = torch.tensor(group["lr"], device=group["params"][0].device)

    @torch.no_grad()
    def compiled_step(network, split: Split, indices):
        gradients, batch_cost = whole_step(network, split.images, split.targets, indices, config.cost, learning_rate, group["weight_decay"])
        for parameter, gradient in zip(group["params"], gradients):
            parameter.grad = gradient
        return batch_cost

    return compiled_step


def whole_step_function(engine: str):
    """The step that --compile compiles, as a plain function: gather, the engine's gradient pass, update."""
    gradient_pass = GRADIENT_PASSES[engine]

    def whole_step(network, images, targets, indices, convention, learning_rate, weight_decay):
        layer_gradients, batch_cost = gradient_pass(network, images.index_select(0, indices), targets.index_select(0, indices), convention)
        gradients = [gradient for pair in layer_gradients for gradient in pair]  # ∂C/∂W^1, ∂C/∂b^1, ∂C/∂W^2, ...
        sgd_update(list(network.parameters()), gradients, learning_rate, weight_decay)  # w ← w − η (∇C + λw)
        return gradients, batch_cost

    return whole_step


@functools.cache  # one compiled function per engine, reused by every run in the process
def _whole_step(engine: str):
    # It compiles to one graph (tests/test_compile.py checks). Not fullgraph=True: past torch._dynamo's recompile limit
    # (8 network, batch or setting shapes in one process) that would raise, where this falls back to eager steps.
    return torch.compile(whole_step_function(engine), dynamic=False)
