"""The fast path of --compile: the SGD steps of ``train_one_epoch``, 16 to one compiled call.

It is the same math as the reference loop (gd_torch.core.loop.train_one_epoch), with one
difference of form: the update is inside the graph, as the functional ``torch.optim.sgd.sgd``
that ``SGD.step()`` itself calls, not as a call of ``optimizer.step()``. So it implements plain
torch.optim.SGD (η and weight decay, one parameter group) and refuses anything else (momentum,
Nesterov, another optimizer): those run on the reference loop.

``STEPS_PER_CALL`` (16) whole steps, gather, forward, backward and update each, are one
``torch.compile`` graph: the engine's gradient pass as a pure function (BP1-BP4 of
gd_torch.core.manual, or ``torch.func.grad``) followed by the update, unrolled 16 times. At
batch 10 the arithmetic of a step is a fraction of a percent of its time; the rest is the
overhead of ~35 small operations, which Inductor fuses into a dozen kernels, and the compiled
function's own cost per call (~60 µs of guards and wrappers), which 16 steps share; the code
that calls the kernels is C++ (``cpp_wrapper``). The mini-batches are gathered from MNIST's
uint8 pixels (4x fewer bytes than float images) and become activations inside the graph. The
mini-batches an epoch has left over after its calls of 16 (and a smaller last batch) take one
step per call. The first calls compile (about 30 s per engine, network shape and batch shape in
a process; Inductor's on-disk cache makes later processes faster); η enters as a tensor, so a
learning-rate schedule does not recompile. The graph also returns each step's cost and ‖∇C‖
for the log, and leaves the last step's gradients in ``.grad``. Compiled steps equal the eager
ones to float32 rounding (fused kernels round differently), not bit for bit.
"""

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import functional_call
from torch.optim.sgd import sgd

from gd_torch.core import manual
from gd_torch.core.cost import cost
from gd_torch.core.data import activations
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import Network
from gd_torch.core.run import Run, gradient_norm

STEPS_PER_CALL = 16  # compiled steps per call: more share the per-call cost, and compile longer


def manual_pass(network: Network, images: Tensor, targets: Tensor, convention: str):
    """([(∂C/∂W^l, ∂C/∂b^l) for each layer], C) by the manual twin (gd_torch.core.manual)."""
    zs, activations_ = manual.forward(network, images)
    return manual.backward(network, activations_, targets, convention), cost(
        zs[-1], targets, convention
    )


def autograd_pass(network: Network, images: Tensor, targets: Tensor, convention: str):
    """The same pair by autograd's functional form: ∇ of C(θ) = cost(network with parameters θ);
    ``C.backward()`` cannot be captured in a graph."""

    def batch_cost(parameters):
        weighted_output = functional_call(network, parameters, (images,), {"weighted_output": True})
        value = cost(weighted_output, targets, convention)
        return value, value.detach()

    parameters = {name: parameter.detach() for name, parameter in network.named_parameters()}
    gradients, value = torch.func.grad(batch_cost, has_aux=True)(parameters)
    layers = range(len(network.layers))
    return [(gradients[f"layers.{l}.weight"], gradients[f"layers.{l}.bias"]) for l in layers], value


GRADIENT_PASSES = {"manual": manual_pass, "autograd": autograd_pass}


def plain_sgd_group(optimizer: torch.optim.Optimizer) -> dict:
    """The one parameter group of a plain torch.optim.SGD: what the compiled update computes."""
    if type(optimizer) is not torch.optim.SGD:
        raise GdTorchError(
            f"--compile implements torch.optim.SGD, not {type(optimizer).__name__}: "
            "train without --compile"
        )
    if len(optimizer.param_groups) != 1:
        raise GdTorchError(
            f"--compile implements torch.optim.SGD with one parameter group, not "
            f"{len(optimizer.param_groups)} (--weight-decay-on weights makes two): "
            "train without --compile"
        )
    (group,) = optimizer.param_groups
    if group["momentum"] or group["nesterov"] or group["maximize"] or group["dampening"]:
        raise GdTorchError(
            "--compile implements plain SGD: train with --momentum or "
            "--nesterov without --compile (the reference loop)"
        )
    return group


def chunks(batches: Sequence[Tensor], size: int) -> list[Tensor]:
    """The mini-batches (index tensors) in stacks of ``size`` as (size, B); the ones left over,
    and a smaller last batch, one at a time as (1, B): at most three shapes per batch size."""
    if not batches:  # a run stopped after the last step of an epoch resumes with none left
        return []
    full = len(batches) if len(batches[-1]) == len(batches[0]) else len(batches) - 1
    stacked = full // size * size
    return [torch.stack(batches[i : i + size]) for i in range(0, stacked, size)] + [
        batch.unsqueeze(0) for batch in batches[stacked:]
    ]


def epoch_function(run: Run) -> Callable[[Sequence[Tensor]], None]:
    """``train_one_epoch`` for ``run``, compiled: batches -> None, calling ``run.finish_step``
    once per step (after each call of up to 16 steps)."""
    group = plain_sgd_group(run.optimizer)
    whole_steps = _whole_steps(run.settings.engine)
    split, network = run.data.train, run.network
    inputs = split.images if split.pixels is None else split.pixels  # 4x fewer bytes to gather
    learning_rate = torch.tensor(0.0, device=run.device, dtype=run.settings.torch_dtype)

    @torch.no_grad()
    def train_one_epoch(batches: Sequence[Tensor]) -> None:
        learning_rate.fill_(group["lr"])  # η of this epoch (a tensor: no recompiling)
        for chunk in chunks(batches, STEPS_PER_CALL):
            gradients, batch_costs, norms = whole_steps(
                network,
                inputs,
                split.targets,
                chunk.to(run.device, non_blocking=True),
                run.settings.cost,
                learning_rate,
                group["weight_decay"],
            )
            for parameter, gradient in zip(group["params"], gradients):
                parameter.grad = gradient
            stop = False
            for batch_cost, norm in zip(batch_costs, norms):  # every step of the call is counted
                stop = run.finish_step(batch_cost, norm) or stop
            if stop:
                return

    return train_one_epoch


def whole_steps_function(engine: str):
    """The steps that --compile compiles, as a plain function: for each mini-batch, gather, the
    engine's gradient pass, update."""
    gradient_pass = GRADIENT_PASSES[engine]

    def whole_steps(network, inputs, targets, chunk, convention, learning_rate, weight_decay):
        """``inputs``: the images as activations (N, 784), or as uint8 pixels, made activations
        after the gather."""
        parameters = list(network.parameters())
        batch_costs, gradient_norms = [], []
        for indices in chunk.unbind():  # unrolled into the graph: one step per mini-batch
            images = inputs.index_select(0, indices)
            if images.dtype == torch.uint8:
                images = activations(images, targets.dtype)  # as Split.images holds them
            layer_gradients, batch_cost = gradient_pass(
                network, images, targets.index_select(0, indices), convention
            )
            gradients = [
                gradient for pair in layer_gradients for gradient in pair
            ]  # ∂C/∂W^1, ∂C/∂b^1, ...
            sgd(
                parameters,
                gradients,
                [None] * len(parameters),
                foreach=False,
                weight_decay=weight_decay,
                momentum=0.0,
                lr=learning_rate,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )  # SGD.step()'s update
            batch_costs.append(batch_cost)
            gradient_norms.append(gradient_norm(gradients))
        return gradients, torch.stack(batch_costs), torch.stack(gradient_norms)

    return whole_steps


@functools.cache  # one compiled function per engine, reused by every run in the process
def _whole_steps(engine: str):
    # It compiles to one graph (tests/test_compile.py checks). Not fullgraph=True: past
    # torch._dynamo's recompile limit (8 network, batch or setting shapes in one process) that
    # would raise, where this falls back to eager steps. cpp_wrapper: the code that calls the
    # few hundred kernels of 16 steps is C++, not Python (-11% per step at batch 100, -25% at 10).
    return torch.compile(whole_steps_function(engine), dynamic=False, options={"cpp_wrapper": True})
