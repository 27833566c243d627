"""The fast path: the SGD steps of ``train_one_epoch``, a whole epoch in one compiled loop.

It is the same math as the reference loop (gd_torch.core.loop.train_one_epoch), with one
difference of form: the update is inside the graph, as the functional ``torch.optim.sgd.sgd``
that ``SGD.step()`` itself calls, not as a call of ``optimizer.step()``. So it implements plain
torch.optim.SGD (η and weight decay, one parameter group) and refuses anything else (momentum,
Nesterov, another optimizer): those run on the reference loop.

One step, gather, forward, backward and update, is the body of a ``torch.while_loop``: the
engine's gradient pass as a pure function (BP1-BP4 of gd_torch.core.manual, or
``torch.func.grad``), then the update. The loop runs in the compiled code (a C++ ``while``,
``cpp_wrapper``), up to ``STEPS_PER_CALL`` steps a call, so the ~60 µs that a compiled call
costs in guards and wrappers is shared by a thousand steps, and one graph serves every number of
steps: it compiles once per engine, network and batch shape (a whole step, not 16 unrolled
ones as before: about a fifth of the compile). The loop also writes each step's cost and ‖∇C‖
into two buffers, for the log and the divergence checks, and returns the last step's gradients
for ``.grad``. A smaller last batch takes the reference loop's step.

Matrix products small enough (all of batch 10's) are written as sums by an Inductor pass
(gd_torch.core.inline_products), so that a step becomes about one kernel. Compiled steps
equal the eager ones to float32 rounding (products and fused kernels add up in another order),
not bit for bit.

The manual engine on the CPU takes the same loop through native steps instead
(gd_torch.core.native: BP1-BP4 and the update in a small C++ file, built once per machine in
about 4 s): they serve every shape without compiling, and cost less a step. The autograd engine
(and any other device) keeps Inductor, so that its gradients still come from autograd.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import IO, Any

import torch
from torch import Tensor
from torch.func import functional_call
from torch.optim.sgd import sgd

from gd_torch.core import distributed, manual, native
from gd_torch.core.cost import cost
from gd_torch.core.data import Split, mini_batches
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import Metrics, evaluate
from gd_torch.core.model import Network
from gd_torch.core.run import Run, gradient_norm
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import OptimizerOrPlan, optimizer_class

STEPS_PER_CALL = 1_000  # the steps of one compiled call: a Ctrl-C or a callback's stop waits for it
# --compile left to choose (RunOptions.compile None) takes the fast path for runs of at least this
# many SGD steps: a compiled step saves ~100 µs of eager overhead at batch 10 (more at larger
# batches), so 100,000 of them save ~10 s, what a first compile costs.
AUTO_STEPS = 100_000
# ... and the native steps for runs of at least this many: 20,000 steps save ~2 s (~100 µs a
# step), in every run; their build (about 4 s) is paid once per machine, not per run
NATIVE_AUTO_STEPS = 20_000


LayerGradients = list[tuple[Tensor, Tensor]]  # [(∂C/∂W^l, ∂C/∂b^l) for l = 1..L]


def manual_pass(
    network: Network, images: Tensor, targets: Tensor, convention: str
) -> tuple[LayerGradients, Tensor]:
    """([(∂C/∂W^l, ∂C/∂b^l) for each layer], C) by the manual twin (gd_torch.core.manual)."""
    zs, activations_ = manual.forward(network, images)
    return manual.backward(network, activations_, targets, convention), cost(
        zs[-1], targets, convention
    )


def autograd_pass(
    network: Network, images: Tensor, targets: Tensor, convention: str
) -> tuple[LayerGradients, Tensor]:
    """The same pair by autograd's functional form: ∇ of C(θ) = cost(network with parameters θ);
    ``C.backward()`` cannot be captured in a graph."""

    def batch_cost(parameters: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        weighted_output = functional_call(network, parameters, (images,), {"weighted_output": True})
        value = cost(weighted_output, targets, convention)
        return value, value.detach()

    parameters = {name: parameter.detach() for name, parameter in network.named_parameters()}
    gradients, value = torch.func.grad(batch_cost, has_aux=True)(parameters)
    layers = range(len(network.layers))
    return [(gradients[f"layers.{l}.weight"], gradients[f"layers.{l}.bias"]) for l in layers], value


GRADIENT_PASSES = {"manual": manual_pass, "autograd": autograd_pass}


def plain_sgd_group(optimizer: OptimizerOrPlan, network: Network) -> dict:
    """The one parameter group of a plain torch.optim.SGD (or its plan) over all of
    ``network``'s parameters, in their order: what the compiled update computes (it updates
    every parameter, and hands the gradients back in that order)."""
    if optimizer_class(optimizer) is not torch.optim.SGD:
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
    if [id(p) for p in group["params"]] != [id(p) for p in network.parameters()]:
        raise GdTorchError(
            "--compile implements torch.optim.SGD over all of the network's weights and biases, "
            "in their order: train without --compile"
        )
    if group["momentum"] or group["nesterov"] or group["maximize"] or group["dampening"]:
        raise GdTorchError(
            "--compile implements plain SGD: train with --momentum or "
            "--nesterov without --compile (the reference loop)"
        )
    return group


def choose(run: Run) -> tuple[bool, str]:
    """Whether ``run`` takes the fast path, and why, for the banner. ``--compile`` asks for it
    (and fails on what it does not implement), ``--no-compile`` refuses it; left to choose, a
    run on the CPU takes it when it can and its SGD steps are enough to earn the compile."""
    if run.options.compile is False:
        return False, "reference loop (--no-compile)"
    try:
        plain_sgd_group(run.optimizer_or_plan, run.network)
        if distributed.world_size() > 1:
            raise GdTorchError("data parallelism all-reduces ∇C before the update")
    except GdTorchError as refusal:
        if run.options.compile:
            raise
        return False, f"reference loop (the fast path is for plain SGD in one process: {refusal})"
    steps = (run.settings.epochs - run.epoch) * math.ceil(
        len(run.data.train) / run.settings.batch_size
    )
    return choose_by_settings(run.settings, run.options, run.device, steps)


def choose_by_settings(
    settings: TrainingSettings, options: RunOptions, device: torch.device, steps: int
) -> tuple[bool, str]:
    """``choose`` for an SGD that the fast path implements, from the settings and the ``steps``
    left: what a run knows before its optimizer is made."""
    path = steps_path(settings, device)
    name = PATH_NAMES[path]
    if options.compile:
        return True, f"{name} (--compile)"
    if device.type != "cpu":  # Inductor's code for it is untested here
        return (
            False,
            "reference loop (the fast path is measured on the CPU only; --compile: try it)",
        )
    if options.snapshot_every:  # a compiled call holds no weights between its steps
        return False, "reference loop (--snapshot-every keeps the weights between steps)"
    if options.time_budget:  # the compile would take its seconds out of the budget
        return False, "reference loop (--time-budget counts the compile; --compile to force it)"
    if options.dry_run or steps < (NATIVE_AUTO_STEPS if path == "native" else AUTO_STEPS):
        return False, (
            f"reference loop ({steps:,} SGD steps do not earn the compile; --compile to force it)"
        )
    return True, f"{name} ({steps:,} SGD steps earn the compile; --no-compile for the reference)"


def build_ahead(
    settings: TrainingSettings, options: RunOptions, device: torch.device, steps: int
) -> None:
    """Start the native library's build (seconds, once per machine) when a run of these
    settings will take the native steps, as soon as it knows: the compiler then works on
    another core while the run makes its optimizer and starts TensorBoard."""
    plain = not settings.momentum and distributed.world_size() == 1  # as ``choose`` requires
    fast, _ = choose_by_settings(settings, options, device, steps)
    if plain and fast and steps_path(settings, device) == "native":
        native.build_ahead()


PATH_NAMES = {"native": "native C++ steps", "inductor": "compiled by Inductor"}  # for the banner


def fast_path(run: Run) -> str:
    """Which steps the fast path takes: ``native`` (gd_torch.core.native) for the manual engine
    on the CPU in float32 or float64, else ``inductor`` (this file's compiled loop)."""
    return steps_path(run.settings, run.device)


def steps_path(settings: TrainingSettings, device: torch.device) -> str:
    """``fast_path`` from the settings and the device alone."""
    takes = native.takes(settings.engine, settings.torch_dtype, device)
    return "native" if takes else "inductor"


def evaluation_function(run: Run, fast: bool) -> Callable[[Split], Metrics]:
    """How the run measures each epoch: ``evaluate``, or, when the fast path takes the native
    steps, ``native_evaluation``."""
    network, convention = run.network, run.settings.cost
    if not fast or fast_path(run) != "native":
        return lambda split: evaluate(network, split, convention)
    return native_evaluation(network, convention)


def native_evaluation(network: Network, convention: str) -> Callable[[Split], Metrics]:
    """``evaluate`` by the native steps' forward pass from each split's nonzero pixels
    (compressed once per split, the training set's shared with the steps): the same cost and
    accuracy, to rounding, in a fraction of the time. Should the library not build, the
    reference evaluates."""

    @functools.cache
    def built() -> bool:  # the library (the steps' first call built it, or failed to)
        try:
            native.library()
        except Exception:  # as the fast path's fallback: any failure to build
            return False
        return True

    def native_evaluate(split: Split) -> Metrics:
        if not built():
            return evaluate(network, split, convention)
        total_cost, correct = native.evaluate(
            [layer.weight.detach() for layer in network.layers],
            [layer.bias.detach() for layer in network.layers],
            native.nonzero_inputs(split.images),
            split.targets,
            split.labels,
            convention,
        )
        return Metrics.of(total_cost, correct, len(split))

    return native_evaluate


def epoch_function(
    run: Run,
    reference_epoch: Callable[[Sequence[Tensor]], None],
    out: IO[str],
    path: str | None = None,
) -> Callable[[Tensor], None]:
    """The fast path's epoch: order (this epoch's examples not yet trained on, in SGD's order)
    -> None. Its full mini-batches take compiled calls of up to STEPS_PER_CALL steps, after each
    of which ``run.finish_steps`` counts, checks and logs them; a smaller last batch takes
    ``reference_epoch`` (the reference loop, with ``optimizer.step()``). ``path``: ``native`` or
    ``inductor`` (default: ``fast_path(run)``).

    The first call compiles. Should compiling fail (no C++ compiler, a PyTorch limitation), a
    run that left the choice to gd_torch says so on ``out`` and takes the reference loop from
    there on, the weights untouched (a compile fails before any step runs); with --compile it
    is an error."""
    group = plain_sgd_group(run.optimizer_or_plan, run.network)
    # the steps below run without autograd; the reference loop's autograd engine needs it
    reference_epoch = torch.enable_grad()(reference_epoch)
    split, network, batch_size = run.data.train, run.network, run.settings.batch_size
    device, dtype = run.device, run.settings.torch_dtype
    full_batches = len(split) // batch_size
    # one shape for every epoch, resumed ones too: the graph depends on it, not on the steps left
    batches = torch.zeros(full_batches, batch_size, dtype=torch.int64, device=device)
    batch_costs = torch.zeros(full_batches, device=device, dtype=dtype)
    gradient_norms = torch.zeros_like(batch_costs)
    learning_rate = torch.tensor(0.0, device=device, dtype=dtype)
    compiled_once = False

    def inductor_steps(start: int, stop: int) -> list[Tensor]:
        return _compiled_epoch_steps(run.settings.engine)(
            network,
            split.images,
            split.targets,
            batches,
            torch.tensor(start, device=device),
            torch.tensor(stop, device=device),
            batch_costs,
            gradient_norms,
            run.settings.cost,
            learning_rate,
            group["weight_decay"],
        )

    def native_steps(start: int, stop: int) -> list[Tensor]:
        layers = run.network.layers
        gradients = [torch.empty_like(parameter) for parameter in group["params"]]
        native.sgd_steps(
            [layer.weight.detach().unsqueeze(0) for layer in layers],  # one copy: K = 1
            [layer.bias.detach().unsqueeze(0) for layer in layers],
            [gradient.unsqueeze(0) for gradient in gradients[0::2]],
            [gradient.unsqueeze(0) for gradient in gradients[1::2]],
            native.nonzero_inputs(split.images),  # the images by their nonzero pixels
            split.targets,
            batches.view(1, -1),
            batch_size,
            start,
            stop,
            learning_rate.view(1),
            group["weight_decay"],
            run.settings.cost,
            batch_costs.view(-1, 1),
            gradient_norms.view(-1, 1),
        )
        return gradients

    path = path or fast_path(run)
    if path == "native":
        native.build_ahead()  # when the run did not start it earlier
    epoch_steps: Callable[[int, int], list[Tensor]] | None = {
        "native": native_steps,
        "inductor": inductor_steps,
    }[path]

    @torch.no_grad()
    def train_one_epoch(order: Tensor) -> None:
        nonlocal epoch_steps, compiled_once
        if epoch_steps is None:  # compiling failed: the reference loop, from then on
            reference_epoch(mini_batches(order, batch_size))
            return
        learning_rate.fill_(group["lr"])  # η of this epoch (a tensor: no recompiling)
        steps = len(order) // batch_size
        batches[:steps] = order[: steps * batch_size].view(steps, batch_size)
        for start in range(0, steps, STEPS_PER_CALL):
            stop = min(start + STEPS_PER_CALL, steps)
            try:
                gradients = epoch_steps(start, stop)
            except Exception as failure:  # any failure to compile: see the docstring
                if compiled_once or isinstance(failure, GdTorchError):
                    raise
                _compile_failed(run, failure, out)  # raises under --compile
                epoch_steps = None
                reference_epoch(mini_batches(order, batch_size))
                return
            compiled_once = True
            for parameter, gradient in zip(group["params"], gradients):
                parameter.grad = gradient
            if run.finish_steps(batch_costs[start:stop], gradient_norms[start:stop]):
                return
        if len(order) > steps * batch_size:
            reference_epoch([order[steps * batch_size :]])

    return train_one_epoch


def _compile_failed(run: Run, failure: Exception, out: IO[str]) -> None:
    """--compile: a one-line error; left to choose: a banner line, and the reference loop."""
    first_line = (str(failure).strip().splitlines() or [""])[0]
    reason = f"{type(failure).__name__}: {first_line}"
    if run.options.compile:
        raise GdTorchError(
            f"--compile: the fast path failed to compile ({reason}); train with --no-compile"
        ) from failure
    print(
        f"SGD steps: reference loop after all (the fast path failed to compile: {reason})",
        file=out,
        flush=True,
    )


def epoch_steps_function(engine: str) -> Callable[..., list[Tensor]]:
    """The steps that the fast path compiles, as a plain function: for each mini-batch, gather,
    the engine's gradient pass, update."""
    gradient_pass = GRADIENT_PASSES[engine]

    def epoch_steps(
        network: Network,
        images: Tensor,
        targets: Tensor,
        batches: Tensor,
        start: Tensor,
        stop: Tensor,
        batch_costs: Tensor,
        gradient_norms: Tensor,
        convention: str,
        learning_rate: float,
        weight_decay: float,
    ) -> list[Tensor]:
        """Steps start, ..., stop - 1 (0-d tensors) on the mini-batches ``batches[i]`` (rows of
        example indices); writes each one's C and ‖∇C‖ into ``batch_costs[i]`` and
        ``gradient_norms[i]``, and returns the last one's gradients."""
        parameters: list[Tensor] = list(network.parameters())

        def step(i: Tensor, *_: Tensor) -> tuple[Tensor, ...]:
            indices = batches.index_select(0, i.view(1)).squeeze(0)  # mini-batch i, (B,)
            layer_gradients, batch_cost = gradient_pass(
                network,
                images.index_select(0, indices),
                targets.index_select(0, indices),
                convention,
            )
            gradients = [gradient for pair in layer_gradients for gradient in pair]  # ∂C/∂W^1, ...
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
            )  # SGD.step()'s update, in place
            batch_costs.index_put_((i.view(1),), batch_cost.view(1))
            gradient_norms.index_put_((i.view(1),), gradient_norm(gradients).view(1))
            return (i + 1, *gradients)

        zeros = [torch.zeros_like(parameter) for parameter in parameters]
        _, *gradients = torch.while_loop(lambda i, *_: i < stop, step, (start, *zeros))
        return gradients

    return epoch_steps


def _inductor(graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Any:
    """Inductor, with the small products inlined (gd_torch.core.inline_products), and the code
    that calls the kernels (and runs the while loop) in C++: ``cpp_wrapper``. Imported here, when
    a run compiles: importing Inductor takes seconds that no other command should wait for."""
    from torch._inductor.compile_fx import compile_fx

    from gd_torch.core.inline_products import InlineSmallProducts

    return compile_fx(
        graph,
        example_inputs,
        config_patches={"cpp_wrapper": True, "post_grad_custom_pre_pass": InlineSmallProducts()},
    )


@functools.cache  # one compiled function per engine, reused by every run in the process
def _compiled_epoch_steps(engine: str) -> Callable[..., list[Tensor]]:
    # It compiles to one graph (tests/test_compile.py checks). Not fullgraph=True: past
    # torch._dynamo's recompile limit (8 network, batch or setting shapes in one process) that
    # would raise, where this falls back to eager steps.
    return torch.compile(epoch_steps_function(engine), backend=_inductor, dynamic=False)
