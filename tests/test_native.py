"""The native steps (gd_torch.core.native) take the manual twin's steps with torch.optim.SGD."""

import os
import time
from dataclasses import dataclass

import pytest
import torch

from gd_torch.core import native
from gd_torch.core.cost import one_hot
from gd_torch.core.data import Split
from gd_torch.core.evaluate import evaluate
from gd_torch.core.manual import manual_gradients
from gd_torch.core.model import Network
from gd_torch.core.stacked import StackedNetworks


def examples(count: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as sparse as MNIST's, four in five pixels black; the first all black, the
    second with no black pixel."""
    generator = torch.Generator().manual_seed(seed)
    lit = torch.rand(count, 784, generator=generator) < 0.2
    lit[0], lit[1] = False, True
    images = torch.rand(count, 784, generator=generator, dtype=dtype) * lit
    return images, one_hot(torch.randint(0, 10, (count,), generator=generator), dtype)


@dataclass
class Steps:
    """What both loops below take: the examples, and the SGD settings the copies share."""

    images: torch.Tensor
    targets: torch.Tensor
    batch_size: int
    steps: int
    weight_decay: float = 0.0
    convention: str = "quadratic"
    decay_biases: bool = True


def native_steps(stacked: StackedNetworks, orders, rates, run: Steps, calls=None):
    """``run.steps`` native steps of every copy of ``stacked`` (copy k: ``orders[k]``,
    ``rates[k]``), in one call or the ``calls`` given, (start, stop) pairs; returns the (steps,
    K) costs and norms, and the last step's gradients."""
    layers = stacked.layers
    gradients = [torch.empty_like(p) for p in stacked.parameters()]
    costs = torch.zeros(run.steps, len(stacked), dtype=run.images.dtype)
    norms = torch.zeros_like(costs)
    with torch.no_grad():
        for start, stop in calls or [(0, run.steps)]:
            native.sgd_steps(
                [layer.weight for layer in layers],
                [layer.bias for layer in layers],
                gradients[0::2],
                gradients[1::2],
                native.nonzero_inputs(run.images),
                run.targets,
                orders,
                run.batch_size,
                start,
                stop,
                rates,
                run.weight_decay,
                run.convention,
                costs,
                norms,
                run.decay_biases,
            )
    return costs, norms, gradients


def eager_steps(network: Network, order, rate: float, run: Steps):
    """The reference: the manual engine and torch.optim.SGD, step by step; returns the costs
    and ‖∇C‖ of the steps."""
    weights = [layer.weight for layer in network.layers]
    biases = [layer.bias for layer in network.layers]
    bias_decay = run.weight_decay * run.decay_biases
    groups = [{"params": weights}, {"params": biases, "weight_decay": bias_decay}]
    optimizer = torch.optim.SGD(groups, lr=rate, weight_decay=run.weight_decay)
    costs, norms = [], []
    for step in range(run.steps):
        batch = order[step * run.batch_size : (step + 1) * run.batch_size]
        images, targets = run.images[batch], run.targets[batch]
        costs.append(manual_gradients(network, images, targets, run.convention).item())
        grads = [p.grad for p in network.parameters()]
        norms.append(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item())
        optimizer.step()
    return costs, norms


@pytest.mark.parametrize("convention", ["quadratic", "nielsen", "mse", "cross-entropy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 70, 130])
def test_native_steps_take_the_manual_engines_steps_with_sgd(convention, dtype, batch_size):
    """Every cost, both types and batches of every shape the loops take (groups of four rows,
    two, one; one block of 64 examples, and more than one): the same costs, norms, gradients
    and weights as the eager steps, to rounding; two copies with their own rates and orders."""
    steps = 6
    images, targets = examples(steps * batch_size + 5, dtype)
    sizes = (784, 15, 9, 10)  # odd widths: a neuron left after the pairs
    networks = [
        Network(sizes, generator=torch.Generator().manual_seed(k), dtype=dtype) for k in range(2)
    ]
    stacked = StackedNetworks(networks)
    orders = torch.stack(
        [torch.randperm(len(images), generator=torch.Generator().manual_seed(k)) for k in range(2)]
    )
    rates = torch.tensor([0.5, 2.0], dtype=dtype)
    run = Steps(images, targets, batch_size, steps, 1e-3, convention)
    costs, norms, gradients = native_steps(stacked, orders, rates, run)
    # float64: a gradient that sums to near 0 keeps only its absolute error, about 1e-18
    double = dict(rtol=1e-9, atol=1e-15)
    tolerance = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else double
    for k, network in enumerate(networks):
        eager_costs, eager_norms = eager_steps(network, orders[k], rates[k].item(), run)
        torch.testing.assert_close(costs[:, k], torch.tensor(eager_costs, dtype=dtype), **tolerance)
        torch.testing.assert_close(norms[:, k], torch.tensor(eager_norms, dtype=dtype), **tolerance)
        for mine, gradient, parameter in zip(stacked.parameters(), gradients, network.parameters()):
            torch.testing.assert_close(mine[k], parameter.detach(), **tolerance)
            torch.testing.assert_close(gradient[k], parameter.grad, **tolerance)


@pytest.mark.parametrize("batch_size, calls", [(250, [(0, 2), (2, 11)]), (1100, [(0, 1), (1, 3)])])
def test_steps_past_the_examples_gathered_at_a_time(batch_size, calls):
    """The steps copy their examples side by side GATHERED = 1024 at a time: calls that start
    past step 0 and take several such copies (4 steps of 250 each, the last one short), or one
    step each (1100 examples), take the eager steps, for two copies with their own orders."""
    steps = calls[-1][1]
    images, targets = examples(steps * batch_size + 7, torch.float32, seed=3)
    networks = [Network((784, 16, 10), generator=torch.Generator().manual_seed(k)) for k in (0, 1)]
    stacked = StackedNetworks(networks)
    orders = torch.stack([torch.randperm(len(images)) for _ in networks])
    rates = torch.tensor([0.5, 2.0])
    run = Steps(images, targets, batch_size, steps, 1e-3)
    costs, norms, gradients = native_steps(stacked, orders, rates, run, calls)
    for k, network in enumerate(networks):
        eager_costs, eager_norms = eager_steps(network, orders[k], rates[k].item(), run)
        torch.testing.assert_close(costs[:, k], torch.tensor(eager_costs), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(norms[:, k], torch.tensor(eager_norms), rtol=1e-4, atol=1e-6)
        for mine, gradient, parameter in zip(stacked.parameters(), gradients, network.parameters()):
            torch.testing.assert_close(mine[k], parameter.detach(), rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(gradient[k], parameter.grad, rtol=1e-4, atol=1e-6)


def test_nonzero_inputs_hold_every_nonzero_pixel_in_its_place():
    images, _ = examples(30, torch.float64)
    inputs = native.nonzero_inputs(images)
    rebuilt = torch.zeros_like(images)
    for e in range(len(images)):
        span = slice(inputs.starts[e], inputs.starts[e + 1])
        rebuilt[e, inputs.columns[span].long()] = inputs.values[span]
    assert torch.equal(rebuilt, images) and inputs.starts[1] == 0 and inputs.pixels == 784
    assert inputs.columns.dtype == torch.int32 and len(inputs.values) == images.count_nonzero()


def test_a_tensor_is_compressed_once_until_it_changes_in_place():
    images, _ = examples(30, torch.float32)
    inputs = native.nonzero_inputs(images)
    assert native.nonzero_inputs(images) is inputs  # the steps' and the evaluation's one copy
    assert native.nonzero_inputs(images.clone()) is not inputs  # another tensor: its own
    images[0, 5] = 0.5  # row 0 was all black
    changed = native.nonzero_inputs(images)
    assert changed is not inputs and changed.starts[1] == 1 and changed.columns[0] == 5
    key = id(images)
    del images, inputs, changed
    assert key not in native._compressed  # forgotten with its tensor


@pytest.mark.parametrize("first_layer", [16, 37])
def test_a_first_layer_of_one_or_more_vectors_of_neurons(first_layer):
    """The first layer's neurons go LANES = 16 at a time: exactly one vector, and three with
    the last one padded."""
    images, targets = examples(60, torch.float64)
    network = Network((784, first_layer, 10), dtype=torch.float64)
    stacked = StackedNetworks([network])
    order = torch.randperm(60).view(1, -1)
    rate = torch.tensor([1.0], dtype=torch.float64)
    run = Steps(images, targets, 10, 5, weight_decay=1e-3)
    costs, norms, _ = native_steps(stacked, order, rate, run)
    eager_costs, eager_norms = eager_steps(network, order[0], 1.0, run)
    torch.testing.assert_close(costs[:, 0], torch.tensor(eager_costs, dtype=torch.float64))
    torch.testing.assert_close(norms[:, 0], torch.tensor(eager_norms, dtype=torch.float64))
    for mine, parameter in zip(stacked.parameters(), network.parameters()):
        torch.testing.assert_close(mine[0], parameter.detach(), rtol=1e-9, atol=0)


@pytest.mark.parametrize("convention", ["quadratic", "nielsen", "mse", "cross-entropy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(784, 10), (784, 15, 9, 10), (784, 37, 10)])
def test_native_evaluation_gives_evaluates_cost_and_accuracy(convention, dtype, sizes):
    images, targets = examples(500, dtype)
    labels = targets.argmax(dim=1)
    network = Network(sizes, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():  # outputs far from 0.5, so that accuracy and cost vary by digit
        for parameter in network.parameters():
            parameter.mul_(4)
    expected = evaluate(network, Split(images, labels), convention)
    total_cost, correct = native.evaluate(
        [layer.weight.detach() for layer in network.layers],
        [layer.bias.detach() for layer in network.layers],
        native.nonzero_inputs(images),
        targets,
        labels,
        convention,
    )
    assert correct == expected.correct and 0 < correct < 500
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    assert total_cost / 500 == pytest.approx(expected.cost, rel=tolerance)


@pytest.mark.parametrize("dtype, within", [(torch.float32, 2), (torch.float64, 4)])
def test_the_libraries_sigmoid_is_within_a_few_rounding_steps_of_torchs(dtype, within):
    """In float32 the library computes σ by its own vectorised e^x, not the C library's: over the
    whole range where σ(z) is a normal float its relative error from σ in float64 stays within
    2 ε, as torch.sigmoid's own does. In float64 (the C library's e^x, against torch.sigmoid's
    float64, itself rounded) within 4 ε. NaN stays NaN and both saturated ends stay in [0, 1]."""
    z = torch.linspace(-87, 88, 1_000_001, dtype=dtype)
    reference = torch.sigmoid(z.double())
    error = ((native.sigmoid(z).double() - reference).abs() / reference).max().item()
    assert error <= within * torch.finfo(dtype).eps
    ends = native.sigmoid(
        torch.tensor([float("nan"), -float("inf"), -1e4, 1e4, float("inf")], dtype=dtype)
    )
    assert ends[0].isnan() and ends[-2:].tolist() == [1.0, 1.0]
    assert 0 <= ends[1].item() < 1e-37 and 0 <= ends[2].item() < 1e-37


def test_native_evaluation_refuses_layers_that_do_not_fit_together():
    images, targets = examples(20, torch.float32)
    network = Network((784, 16, 10))
    weights = [layer.weight.detach() for layer in network.layers]
    biases = [layer.bias.detach() for layer in network.layers]
    inputs, labels = native.nonzero_inputs(images), targets.argmax(dim=1)
    with pytest.raises(ValueError, match=r"layer 2: weights \(10, 16\) and biases \(9,\)"):
        native.evaluate(weights, [biases[0], biases[1][:9]], inputs, targets, labels, "quadratic")
    narrow = [weights[0], weights[1][:, :15].contiguous()]
    with pytest.raises(ValueError, match=r"layer 2: weights \(10, 15\) .* not \(10, 16\)"):
        native.evaluate(narrow, biases, inputs, targets, labels, "quadratic")


def test_native_steps_refuse_layers_or_gradients_that_do_not_fit_together():
    images, targets = examples(20, torch.float32)
    stacked = StackedNetworks([Network((784, 16, 10))])
    order, rate = torch.randperm(20).view(1, -1), torch.tensor([1.0])
    with torch.no_grad():
        stacked.layers[1].bias = torch.nn.Parameter(stacked.layers[1].bias[:, :9].contiguous())
    with pytest.raises(ValueError, match=r"layer 2: weights \(1, 10, 16\) and biases \(1, 9\)"):
        native_steps(stacked, order, rate, Steps(images, targets, 10, 2))
    weights = [layer.weight.detach() for layer in StackedNetworks([Network((784, 16, 10))]).layers]
    biases = [torch.zeros(1, 16), torch.zeros(1, 10)]
    costs = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="the gradients' shapes are not those"):
        native.sgd_steps(
            weights,
            biases,
            [torch.empty_like(weights[0]), torch.empty(1, 10, 15)],
            [torch.empty_like(bias) for bias in biases],
            native.nonzero_inputs(images),
            targets,
            order,
            10,
            0,
            2,
            rate,
            0.0,
            "quadratic",
            costs,
            costs.clone(),
        )


def test_without_bias_decay_only_the_weights_decay():
    images, targets = examples(40, torch.float64)
    network = Network((784, 8, 10), dtype=torch.float64)
    stacked = StackedNetworks([network])
    order = torch.randperm(40).view(1, -1)
    rate = torch.tensor([1.0], dtype=torch.float64)
    run = Steps(images, targets, 10, 4, weight_decay=0.05, decay_biases=False)
    native_steps(stacked, order, rate, run)
    eager_steps(network, order[0], 1.0, run)
    for mine, parameter in zip(stacked.parameters(), network.parameters()):
        torch.testing.assert_close(mine[0], parameter.detach(), rtol=1e-9, atol=0)


def test_a_copy_in_a_stack_takes_the_steps_it_takes_alone_bit_for_bit():
    """Copies never mix: the same arithmetic in the same order, whatever the stack."""
    images, targets = examples(200, torch.float32)
    networks = [Network(generator=torch.Generator().manual_seed(k)) for k in range(3)]
    orders = torch.stack([torch.randperm(200) for _ in range(3)])
    rates = torch.tensor([0.5, 1.0, 3.0])
    together = StackedNetworks(networks)
    run = Steps(images, targets, 10, 20)
    native_steps(together, orders, rates, run)
    alone = StackedNetworks([networks[2]])
    native_steps(alone, orders[2:].contiguous(), rates[2:], run)
    for mine, theirs in zip(together.parameters(), alone.parameters()):
        assert torch.equal(mine[2], theirs[0])


def test_the_library_is_built_once_and_then_found_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GD_TORCH_CACHE", str(tmp_path))
    native.library.cache_clear()
    try:
        native.library()
        (built,) = tmp_path.glob("native_steps_*.so")
        first = built.stat().st_mtime_ns
        native.library.cache_clear()
        native.library()
        assert built.stat().st_mtime_ns == first and list(tmp_path.iterdir()) == [built]
    finally:
        native.library.cache_clear()


def test_no_compiler_is_a_one_line_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("GD_TORCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    native.library.cache_clear()
    try:
        with pytest.raises(
            native.NativeUnavailable, match=r"^no C\+\+ compiler 'no-such-compiler'"
        ):
            native.library()
    finally:
        native.library.cache_clear()
    assert not os.listdir(tmp_path)


def test_a_failed_build_says_the_compilers_first_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GD_TORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "FLAGS", ("-no-such-flag",))
    native.library.cache_clear()
    try:
        with pytest.raises(native.NativeUnavailable, match="failed: .*no-such-flag"):
            native.library()
    finally:
        native.library.cache_clear()
    assert not os.listdir(tmp_path)


def test_a_build_removes_what_killed_builds_left_and_not_a_build_in_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("GD_TORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "FLAGS", ("-no-such-flag",))  # the build fails at once
    dead, running = tmp_path / "dead.so.partial", tmp_path / "running.so.partial"
    dead.touch()
    running.touch()
    long_ago = time.time() - native.BUILD_TIMEOUT - 60
    os.utime(dead, (long_ago, long_ago))
    native.library.cache_clear()
    try:
        with pytest.raises(native.NativeUnavailable):
            native.library()
    finally:
        native.library.cache_clear()
    assert os.listdir(tmp_path) == ["running.so.partial"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(inputs=native.nonzero_inputs(torch.ones(50, 784, dtype=torch.float64))),
            "examples, rates",
        ),
        (
            dict(inputs=native.nonzero_inputs(torch.ones(40, 784))),
            "inputs: 40 examples of 784 pixels, for 50 targets",
        ),
        (dict(indices=torch.zeros(1, 50, dtype=torch.int32)), "indices: int64"),
        (dict(stop=6), "steps 0..6 of 10 go past 50 indices"),
        (dict(costs=torch.zeros(2, 1)), "costs and norms need rows for steps up to 5"),
    ],
)
def test_bad_arguments_are_refused_before_any_step(change, message):
    network = Network((784, 8, 10))
    before = [p.detach().clone() for p in network.parameters()]
    images, targets = examples(50, torch.float32)
    arguments = (
        dict(
            weights=[layer.weight.detach().unsqueeze(0) for layer in network.layers],
            biases=[layer.bias.detach().unsqueeze(0) for layer in network.layers],
            weight_gradients=[torch.zeros(1, 8, 784), torch.zeros(1, 10, 8)],
            bias_gradients=[torch.zeros(1, 8), torch.zeros(1, 10)],
            inputs=native.nonzero_inputs(images),
            targets=targets,
            indices=torch.arange(50).view(1, -1),
            batch_size=10,
            start=0,
            stop=5,
            learning_rates=torch.tensor([1.0]),
            weight_decay=0.0,
            convention="quadratic",
            costs=torch.zeros(5, 1),
            norms=torch.zeros(5, 1),
        )
        | change
    )
    with pytest.raises(ValueError, match=message):
        native.sgd_steps(**arguments)
    for parameter, kept in zip(network.parameters(), before):
        assert torch.equal(parameter, kept)
