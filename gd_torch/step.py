"""SGD steps on mini-batches: gather each one, ∇C by the engine, then w ← w − η (∇C + λw).

    take_steps = sgd_steps_function(config, optimizer)   # once per epoch: η is fixed within one
    for chunk in chunks(batches, take_steps.batches_per_call):
        done = take_steps(network, data.train, chunk)      # one step per row of chunk (k, B)
        done.batch_costs                                   # (k,): each mini-batch's C, before its update

Eager (the default) a step is the math in three calls: ``index_select`` gathers the
mini-batch, the engine (``gd_torch.engines``) writes ∇C into each ``.grad``, and ``sgd_step``
applies ``torch.optim.SGD``'s update. One step per call.

With ``--compile``, ``STEPS_PER_CALL`` (16) whole steps, gather, forward, backward and update
each, are one ``torch.compile`` graph: the engine's gradient pass as a pure function
(``GRADIENT_PASSES``: BP1-BP4 of ``gd_torch.manual``, or ``torch.func.grad``) followed by the
same functional SGD update (``sgd_update``), unrolled 16 times. At batch 10 the arithmetic of a
step is a fraction of a percent of its time; the rest is the overhead of ~35 small operations,
which Inductor fuses into a dozen kernels, and the compiled function's own cost per call (~60
µs of guards and wrappers), which 16 steps share; the code that calls the kernels is C++
(``cpp_wrapper``). The mini-batches are gathered from MNIST's uint8 pixels (4x fewer bytes than
float images) and become activations inside the graph. The mini-batches an epoch has left over
after its calls of 16 (and a smaller last batch) take one step per call. The first calls
compile (about 30 s per engine, network shape and batch shape in a process, and 5 s for single
steps; Inductor's on-disk cache makes later processes faster); η enters as a tensor, so a
learning-rate schedule does not recompile. The graph also returns each step's ‖∇C‖ for the log,
and leaves the last step's gradients in ``.grad`` for the histograms and the divergence checks.
Compiled steps equal the eager ones to float32 rounding (fused kernels round differently), not
bit for bit.

Under torchrun the gradients are all-reduced between the backward pass and the update
(``gd_torch.distributed``), so the step stays eager there and ``train`` refuses --compile.
"""

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gd_torch import distributed
from gd_torch.config import TrainConfig
from gd_torch.data import Split, activations
from gd_torch.engines import ENGINES, GRADIENT_PASSES
from gd_torch.sgd import plain_sgd, sgd_step, sgd_update
from gd_torch.tensorboard_log import gradient_norm

STEPS_PER_CALL = 16  # compiled steps per call: more share the per-call cost, and take longer to compile


class Steps(NamedTuple):
    """What one call of ``take_steps`` did: k SGD steps, one per mini-batch."""

    batch_costs: Tensor  # (k,): each mini-batch's cost C, at the weights before its update
    gradient_norms: Tensor | None  # (k,): each step's ‖∇C‖ (compiled); eager: None, ∇C of the last step is in .grad


def chunks(batches: Sequence[Tensor], size: int) -> list[Tensor]:
    """The mini-batches (index tensors) in stacks of ``size`` as (size, B); the ones left over, and a
    smaller last batch, one at a time as (1, B), so that at most three shapes per batch size reach the compiler."""
    if not batches:  # a run stopped after the last step of an epoch resumes with none left
        return []
    full = len(batches) if len(batches[-1]) == len(batches[0]) else len(batches) - 1
    stacked = full // size * size
    return [torch.stack(batches[i:i + size]) for i in range(0, stacked, size)] + [batch.unsqueeze(0) for batch in batches[stacked:]]


def sgd_steps_function(config: TrainConfig, optimizer: torch.optim.SGD):
    """(network, split, chunk) -> Steps: one SGD step on the examples of ``split`` in each row of ``chunk``.

    Its ``batches_per_call`` is how many rows a chunk should have: ``STEPS_PER_CALL`` compiled, 1 eager.
    """
    if config.compile:
        return _compiled_steps(config, optimizer)
    compute_gradients = distributed.data_parallel(ENGINES[config.engine])  # unchanged unless launched by torchrun

    def eager_steps(network, split: Split, chunk: Tensor) -> Steps:
        batch_costs = []
        for indices in chunk.unbind():
            batch_costs.append(compute_gradients(network, split.images.index_select(0, indices), split.targets.index_select(0, indices), config.cost))
            sgd_step(optimizer)  # w ← w − η (∇C + λw)
        return Steps(torch.stack(batch_costs), None)

    eager_steps.batches_per_call = 1
    return eager_steps


def _compiled_steps(config: TrainConfig, optimizer: torch.optim.SGD):
    (group,) = map(plain_sgd, optimizer.param_groups)
    whole_steps = _whole_steps(config.engine)
    learning_rate = torch.tensor(group["lr"], device=group["params"][0].device)

    @torch.no_grad()
    def compiled_steps(network, split: Split, chunk: Tensor) -> Steps:
        inputs = split.images if split.pixels is None else split.pixels  # as read from MNIST's files: 4x fewer bytes to gather
        gradients, batch_costs, gradient_norms = whole_steps(network, inputs, split.targets, chunk, config.cost, learning_rate, group["weight_decay"])
        for parameter, gradient in zip(group["params"], gradients):
            parameter.grad = gradient
        return Steps(batch_costs, gradient_norms)

    compiled_steps.batches_per_call = STEPS_PER_CALL
    return compiled_steps


def whole_steps_function(engine: str):
    """The steps that --compile compiles, as a plain function: for each mini-batch, gather, the engine's gradient pass, update."""
    gradient_pass = GRADIENT_PASSES[engine]

    def whole_steps(network, inputs, targets, chunk, convention, learning_rate, weight_decay):
        """``inputs``: the images as activations (N, 784), or as uint8 pixels, made activations after the gather."""
        parameters = list(network.parameters())
        batch_costs, gradient_norms = [], []
        for indices in chunk.unbind():  # unrolled into the graph: one step per mini-batch
            images = inputs.index_select(0, indices)
            if images.dtype == torch.uint8:
                images = activations(images)  # pixels 0..255 -> activations in [0, 1], as Split.images holds them
            layer_gradients, batch_cost = gradient_pass(network, images, targets.index_select(0, indices), convention)
            gradients = [gradient for pair in layer_gradients for gradient in pair]  # ∂C/∂W^1, ∂C/∂b^1, ∂C/∂W^2, ...
            sgd_update(parameters, gradients, learning_rate, weight_decay)  # w ← w − η (∇C + λw)
            batch_costs.append(batch_cost)
            gradient_norms.append(gradient_norm(gradients))
        return gradients, torch.stack(batch_costs), torch.stack(gradient_norms)

    return whole_steps


@functools.cache  # one compiled function per engine, reused by every run in the process
def _whole_steps(engine: str):
    # It compiles to one graph (tests/test_compile.py checks). Not fullgraph=True: past torch._dynamo's recompile limit
    # (8 network, batch or setting shapes in one process) that would raise, where this falls back to eager steps.
    # cpp_wrapper: the code that calls the few hundred kernels of 16 steps is C++, not Python (with 8 steps: -11% per step at batch 100, -25% at 10)
    return torch.compile(whole_steps_function(engine), dynamic=False, options={"cpp_wrapper": True})
