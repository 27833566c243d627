"""The fast path takes the reference loop's steps: an epoch of whole steps in one compiled loop
(Inductor's), or in the native C++ steps (gd_torch.core.native)."""

import io

import pytest
import torch
from torch._dynamo.utils import counters
from torch.fx.experimental.proxy_tensor import make_fx

from gd_torch import Callback, train
from gd_torch.core import compiled, native
from gd_torch.core.compiled import choose, epoch_steps_function
from gd_torch.core.data import Mnist
from gd_torch.core.errors import GdTorchError
from gd_torch.core.guard import Diverged, RunGuard
from gd_torch.core.inline_products import INLINE_PRODUCT_LIMIT, InlineSmallProducts
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.run import Run
from gd_torch.core.sgd import sgd
from tests.configs import split
from tests.events import scalars
from tests.fakes import synthetic_mnist

PATHS = [("manual", "native"), ("manual", "inductor"), ("autograd", "inductor")]


@pytest.fixture
def take(monkeypatch):
    """take(path): the fast path's steps are ``path``'s, whatever ``compiled.fast_path`` would
    choose (the manual engine's Inductor loop is otherwise taken only off the CPU)."""
    return lambda path: monkeypatch.setattr(compiled, "fast_path", lambda run: path)


class RecordSteps(Callback):
    def __init__(self, stop_at: int | None = None):
        self.steps, self.costs, self.norms, self.stop_at = [], [], [], stop_at

    def on_step_end(self, run):
        self.steps.append(run.step)
        self.costs.append(float(run.batch_cost))
        self.norms.append(float(run.gradient_norm()))
        if run.step == self.stop_at:
            run.stop("asked")


@pytest.mark.parametrize("engine, path", PATHS)
def test_compiled_steps_take_the_eager_steps(engine, path, monkeypatch, take):
    """Three calls of 16 steps: the same costs and ‖∇C‖ at every step, the same weights, and the
    last ∇C in .grad."""
    monkeypatch.setattr(compiled, "STEPS_PER_CALL", 16)
    take(path)
    full = synthetic_mnist()
    data = Mnist(full.train[: 3 * 16 * 10], full.test)
    results = {}
    counters.clear()
    for compile in (False, True):
        settings, options = split(
            engine=engine,
            compile=compile,
            epochs=1,
            learning_rate=3.0,
            weight_decay=1e-3,
            lr_schedule="constant",
            runs_dir=None,
        )
        record = RecordSteps()
        results[compile] = (
            record,
            train(settings, options, data=data, callbacks=[record], out=io.StringIO()).network,
        )
    (eager_steps, eager), (compiled_steps, fast) = results[False], results[True]
    assert compiled_steps.steps == eager_steps.steps == list(range(1, 3 * 16 + 1))
    assert compiled_steps.costs == pytest.approx(eager_steps.costs, rel=1e-5)
    assert compiled_steps.norms == pytest.approx(eager_steps.norms, rel=1e-4)
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], expected, msg=name)
    for mine, theirs in zip(fast.parameters(), eager.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad)  # the histograms and the guard read it
    initial = Network(generator=seeded_generators(0)[0])
    assert not torch.allclose(fast.layers[0].weight, initial.layers[0].weight)  # they did move
    # Inductor's FX graph cache holds what it compiled, for the next process; native steps
    # compile nothing with Inductor
    assert counters["inductor"]["fxgraph_cache_bypass"] == 0
    compiled_graphs = (
        counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"]
    )
    assert compiled_graphs > 0 if path == "inductor" else compiled_graphs == 0


@pytest.mark.parametrize("path", ["native", "inductor"])
def test_compiled_cross_entropy_steps_take_the_eager_steps(path, monkeypatch, take):
    """The cross-entropy through the fast path (manual engine: its BP1 has no σ'; autograd's
    pass differs from the quadratic one only in ``cost``): the same costs and weights."""
    monkeypatch.setattr(compiled, "STEPS_PER_CALL", 16)
    take(path)
    full = synthetic_mnist()
    data = Mnist(full.train[: 2 * 16 * 10], full.test)
    results = {}
    for compile in (False, True):
        settings, options = split(
            compile=compile,
            cost="cross-entropy",
            epochs=1,
            learning_rate=0.5,
            lr_schedule="constant",
            runs_dir=None,
        )
        record = RecordSteps()
        network = train(settings, options, data=data, callbacks=[record], out=io.StringIO()).network
        results[compile] = record, network
    (eager_steps, eager), (compiled_steps, fast) = results[False], results[True]
    assert compiled_steps.costs == pytest.approx(eager_steps.costs, rel=1e-5)
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], expected, msg=name)


@pytest.mark.parametrize("engine, path", PATHS)
def test_compiled_training_follows_the_eager_trajectory(engine, path, tmp_path, take):
    """Two epochs, each with a smaller last batch that the reference loop takes (with autograd's
    graph recorded, for that engine)."""
    take(path)
    results = {}
    for compile in (False, True):
        settings, options = split(
            engine=engine,
            epochs=2,
            learning_rate=3.0,
            lr_schedule="cosine",
            batch_size=7,
            compile=compile,
            runs_dir=str(tmp_path),
            image_every=0,
            log_every=3,
        )
        # 600 = 85·7 + 5 images: 85 compiled steps and a smaller last batch on the reference
        # loop per epoch; two rates
        results[compile] = train(settings, options, data=synthetic_mnist(), out=io.StringIO())
    for eager, fast in zip(results[False].network.parameters(), results[True].network.parameters()):
        torch.testing.assert_close(fast, eager)
    for metric in ("train_accuracy", "test_accuracy"):  # the native path measures natively too
        assert [epoch[metric] for epoch in results[True].history] == [
            epoch[metric] for epoch in results[False].history
        ]
    for metric in ("train_cost", "test_cost"):
        assert [epoch[metric] for epoch in results[True].history] == pytest.approx(
            [epoch[metric] for epoch in results[False].history], rel=1e-5
        )
    for tag in ("batch/train_cost", "batch/gradient_norm"):  # every 3 steps, from compiled calls
        (eager_steps, eager_values), (compiled_steps, compiled_values) = (
            zip(*scalars(results[compile].run_dir, tag)) for compile in (False, True)
        )
        assert list(compiled_steps) == list(eager_steps) == list(range(3, 2 * 86 + 1, 3))
        assert list(compiled_values) == pytest.approx(list(eager_values), rel=1e-4)


@pytest.mark.parametrize("path", ["native", "inductor"])
def test_a_compiled_run_stopped_mid_epoch_resumes_to_the_same_weights(
    path, tmp_path, monkeypatch, take
):
    """A stop asked at step 20 takes effect after its call (step 32); the resumed epoch takes
    the 53 batches left through the same steps, and ends where the run that never stopped does,
    bit for bit."""
    monkeypatch.setattr(compiled, "STEPS_PER_CALL", 16)
    take(path)
    values = dict(epochs=2, batch_size=7, compile=True, image_every=0)
    whole = train(*split(runs_dir=str(tmp_path / "whole"), **values), data=synthetic_mnist())
    record = RecordSteps(stop_at=20)
    stopped = train(
        *split(runs_dir=str(tmp_path / "parts"), **values),
        data=synthetic_mnist(),
        callbacks=[record],
        out=io.StringIO(),
    )
    assert stopped.stopped == "asked" and record.steps[-1] == 32 and not stopped.history
    resumed = train(
        *split(runs_dir=str(tmp_path / "parts"), **values),
        data=synthetic_mnist(),
        resume=stopped.run_dir,
        out=io.StringIO(),
    )
    for name, expected in whole.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], expected), name
    assert resumed.history[-1]["step"] == whole.history[-1]["step"] == 2 * 86


@pytest.mark.parametrize(
    "epochs, batch_size, values, fast, why",
    [
        (60, 10, {}, False, "3,600 SGD steps do not earn the compile; --compile to force it"),
        (30, 1, {"dry_run": False}, False, "18,000 SGD steps"),
        (40, 1, {}, True, "native C++ steps (24,000 SGD steps earn the compile; --no-compile"),
        (40, 1, {"engine": "autograd"}, False, "24,000 SGD steps do not earn the compile"),
        (200, 1, {"engine": "autograd"}, True, "compiled by Inductor (120,000 SGD steps earn"),
        (40, 1, {"dtype": "float64"}, True, "native C++ steps (24,000"),
        (200, 1, {"compile": False}, False, "reference loop (--no-compile)"),
        (1, 10, {"compile": True}, True, "native C++ steps (--compile)"),
        (1, 10, {"compile": True, "engine": "autograd"}, True, "compiled by Inductor (--compile)"),
        (200, 1, {"momentum": 0.9}, False, "the fast path is for plain SGD in one process"),
        (200, 1, {"dry_run": True}, False, "do not earn the compile"),
        (200, 1, {"time_budget": 60.0}, False, "--time-budget counts the compile"),
        (200, 1, {"time_budget": 60.0, "compile": True}, True, "native C++ steps (--compile)"),
    ],
)
def test_the_fast_path_is_taken_when_the_run_earns_its_compile(
    epochs, batch_size, values, fast, why
):
    settings, options = split(epochs=epochs, batch_size=batch_size, runs_dir=None, **values)
    network = Network(settings.layer_sizes)
    guard = RunGuard(settings, options.log_every, torch.device("cpu"), None)
    data = synthetic_mnist()
    run = Run(
        settings, options, network, sgd(settings)(network), data, torch.device("cpu"), None, guard
    )
    taken, reason = choose(run)
    assert taken == fast and why in reason


def test_the_banner_says_which_loop_takes_the_steps():
    out = io.StringIO()
    train(*split(epochs=1, runs_dir=None), data=synthetic_mnist(), out=out)
    assert "SGD steps: reference loop (60 SGD steps do not earn the compile" in out.getvalue()
    assert "  compile          : auto" in out.getvalue()


class Steps(Callback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, run):
        self.seen.append((run.step, float(run.batch_cost), float(run.gradient_norm())))


def run_after_step_seven(callbacks):
    """A Run on the CPU, 7 steps taken, nothing written, with these step callbacks."""
    settings, options = split(runs_dir=None, log_every=4)
    network = Network(settings.layer_sizes)
    return Run(
        settings,
        options,
        network,
        sgd(settings)(network),
        synthetic_mnist(),
        torch.device("cpu"),
        None,
        RunGuard(settings, options.log_every, torch.device("cpu"), None),
        callbacks,
        step=7,
    )


def test_a_calls_steps_are_each_reported_with_their_own_cost_and_norm():
    steps = Steps()
    run = run_after_step_seven([steps])
    assert not run.finish_steps(torch.tensor([0.5, 0.4, 0.3]), torch.tensor([2.0, 1.0, 3.0]))
    assert steps.seen == [
        (8, 0.5, 2.0),
        (9, pytest.approx(0.4), 1.0),
        (10, pytest.approx(0.3), 3.0),
    ]
    assert run.step == 10 and float(run.batch_cost) == pytest.approx(0.3)


class EverySecondStep(Steps):
    """Reads only the even steps of a call, as TensorBoard reads the multiples of --log-every."""

    def on_steps_end(self, run, steps):
        self.calls = getattr(self, "calls", []) + [(steps, run.step)]
        for _ in run.replay(steps[steps.start % 2 :: 2]):
            self.on_step_end(run)


def test_a_callback_can_take_a_calls_steps_at_once_and_replay_some_of_them():
    some, every = EverySecondStep(), Steps()
    run = run_after_step_seven([some, every])
    costs, norms = torch.tensor([0.5, 0.4, 0.3, 0.2]), torch.tensor([2.0, 1.0, 3.0, 4.0])
    run.finish_steps(costs, norms)
    assert some.calls == [(range(8, 12), 11)]  # the call's steps, run at its last
    assert some.seen == [(8, 0.5, 2.0), (10, pytest.approx(0.3), 3.0)]
    assert [step for step, *_ in every.seen] == [8, 9, 10, 11]  # the default: each step
    assert run.step == 11 and float(run.batch_cost) == pytest.approx(0.2)
    run.finish_steps(costs[:2], norms[:2])  # a second call: its own steps and values
    assert some.calls[1] == (range(12, 14), 13) and some.seen[2:] == [(12, 0.5, 2.0)]


def test_the_first_compiled_step_whose_cost_is_not_finite_is_named_after_the_steps_before_it():
    settings, options = split(runs_dir=None, learning_rate=1.5, lr_schedule="constant")
    network = Network(settings.layer_sizes)
    steps = Steps()
    guard = RunGuard(settings, options.log_every, torch.device("cpu"), None)
    run = Run(
        settings,
        options,
        network,
        sgd(settings)(network),
        synthetic_mnist(),
        torch.device("cpu"),
        None,
        guard,
        [steps],
        step=100,
    )
    costs = torch.tensor([0.5, 0.4, float("inf"), float("nan"), 0.2])
    with pytest.raises(Diverged, match=r"diverged at step 103 .*: the batch cost is inf"):
        run.finish_steps(costs, torch.ones(5))
    assert [step for step, *_ in steps.seen] == [101, 102]  # the log has the steps before it


def test_weights_gone_wrong_inside_a_call_are_caught_after_it():
    settings, options = split(runs_dir=None, log_every=10)
    network = Network(settings.layer_sizes)
    guard = RunGuard(settings, options.log_every, torch.device("cpu"), None)
    run = Run(
        settings,
        options,
        network,
        sgd(settings)(network),
        synthetic_mnist(),
        torch.device("cpu"),
        None,
        guard,
        step=5,
    )
    with torch.no_grad():
        network.layers[1].weight[0, 0] = float("inf")
    assert not run.finish_steps(torch.ones(4), torch.ones(4))  # steps 6-9: no check due
    with pytest.raises(Diverged, match="diverged at step 10 .*not finite"):
        run.finish_steps(torch.ones(4), torch.ones(4))  # steps 10-13


def products(a, b, bias):
    return a @ b, torch.addmm(bias, a, b), torch.addmm(bias, a, b, beta=0.5, alpha=2.0)


def products_after_the_pass(a, b, bias):
    """The graph of ``products`` after the fast path's Inductor pass, and the operators left."""
    graph_module = make_fx(products, tracing_mode="fake")(a, b, bias)
    InlineSmallProducts()(graph_module.graph)
    graph_module.recompile()
    return graph_module, {node.target for node in graph_module.graph.nodes}


@pytest.mark.parametrize("m, k, n", [(10, 784, 16), (10, 16, 16), (16, 10, 784), (7, 3, 5)])
def test_small_products_written_as_sums_are_the_products(m, k, n):
    generator = torch.Generator().manual_seed(m * k * n)
    a, b, bias = (
        torch.randn(*shape, generator=generator, dtype=torch.float64)
        for shape in ((m, k), (k, n), (n,))
    )
    assert m * k * n <= INLINE_PRODUCT_LIMIT
    inlined, operators = products_after_the_pass(a, b, bias)
    assert not operators & {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}
    for mine, expected in zip(inlined(a, b, bias), products(a, b, bias)):
        torch.testing.assert_close(mine, expected)


def test_large_products_stay_with_blas():
    a, b, bias = torch.zeros(100, 784), torch.zeros(784, 16), torch.zeros(16)
    _, operators = products_after_the_pass(a, b, bias)
    assert {torch.ops.aten.mm.default, torch.ops.aten.addmm.default} <= operators


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_the_whole_loop_of_steps_is_one_graph(engine):
    """No graph break: the while loop and its steps, gather, gradient and update, compile
    together (the point of the fast path)."""
    data = synthetic_mnist()
    network = Network(generator=seeded_generators(0)[0])
    with torch.no_grad():
        explanation = torch._dynamo.explain(epoch_steps_function(engine))(
            network,
            data.train.images,
            data.train.targets,
            torch.arange(20).view(2, 10),
            torch.tensor(0),
            torch.tensor(2),
            torch.zeros(2),
            torch.zeros(2),
            "quadratic",
            torch.tensor(0.5),
            6e-5,
        )
    assert (explanation.graph_count, len(explanation.break_reasons)) == (1, 0), (
        explanation.break_reasons
    )


@pytest.mark.parametrize(
    "values, optimizer, message",
    [
        (dict(momentum=0.9), None, "--compile implements plain SGD"),
        (dict(weight_decay_on="weights"), None, "one parameter group, not 2"),
        (dict(momentum=0.9, nesterov=True), None, "--compile implements plain SGD"),
        (
            {},
            lambda network: torch.optim.Adam(network.parameters()),
            "not Adam: train without --compile",
        ),
        (
            {},
            lambda network: torch.optim.SGD(list(network.parameters())[::-1], lr=1.0),
            "over all of the network's weights and biases, in their order",
        ),
        (
            {},
            lambda network: torch.optim.SGD(network.layers[0].parameters(), lr=1.0),
            "over all of the network's weights and biases",
        ),
    ],
)
def test_the_fast_path_refuses_what_it_does_not_implement(values, optimizer, message):
    settings, options = split(compile=True, epochs=1, runs_dir=None, **values)
    with pytest.raises(GdTorchError, match=message):
        train(settings, options, data=synthetic_mnist(), optimizer=optimizer, out=io.StringIO())


def test_left_to_choose_only_the_cpu_takes_the_fast_path():
    settings, options = split(epochs=200, batch_size=1, runs_dir=None)
    network = Network(settings.layer_sizes)
    guard = RunGuard(settings, options.log_every, torch.device("cpu"), None)
    cuda = torch.device("cuda")  # choose reads its type only: no GPU needed
    data = synthetic_mnist()
    run = Run(settings, options, network, sgd(settings)(network), data, cuda, None, guard)
    assert choose(run) == (
        False,
        "reference loop (the fast path is measured on the CPU only; --compile: try it)",
    )


def _no_compiler(*arguments):
    raise RuntimeError("no C++ compiler found\n(the rest of a long message)")


@pytest.fixture
def no_compiler(monkeypatch):
    """Neither fast path can compile: Inductor's raises, and the native library cannot be built."""
    monkeypatch.setattr(compiled, "_compiled_epoch_steps", lambda engine: _no_compiler)
    monkeypatch.setattr(native, "library", _no_compiler)


@pytest.mark.parametrize(
    "engine, banner", [("manual", "native C++ steps"), ("autograd", "compiled by Inductor")]
)
def test_a_failed_compile_falls_back_to_the_reference_loop_when_left_to_choose(
    engine, banner, monkeypatch, no_compiler
):
    """The same weights, bit for bit, as a run that never tried, and a banner line that says so."""
    monkeypatch.setattr(compiled, "AUTO_STEPS", 1)
    monkeypatch.setattr(compiled, "NATIVE_AUTO_STEPS", 1)
    values = dict(epochs=2, batch_size=7, runs_dir=None, image_every=0, engine=engine)
    out = io.StringIO()
    fallen_back = train(*split(**values), data=synthetic_mnist(), out=out)
    eager = train(*split(compile=False, **values), data=synthetic_mnist(), out=io.StringIO())
    lines = out.getvalue().splitlines()
    assert (
        f"SGD steps: {banner} (172 SGD steps earn the compile; --no-compile for the reference)"
        in lines
    )
    assert (
        "SGD steps: reference loop after all (the fast path failed to compile: "
        "RuntimeError: no C++ compiler found)"
    ) in lines
    for name, expected in eager.network.state_dict().items():
        assert torch.equal(fallen_back.network.state_dict()[name], expected), name
    assert fallen_back.history[-1]["step"] == eager.history[-1]["step"] == 2 * 86


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_a_failed_compile_asked_for_is_a_one_line_error(engine, no_compiler):
    settings, options = split(compile=True, epochs=1, runs_dir=None, engine=engine)
    with pytest.raises(GdTorchError) as error:
        train(settings, options, data=synthetic_mnist(), out=io.StringIO())
    assert str(error.value) == (
        "--compile: the fast path failed to compile (RuntimeError: no C++ compiler found); "
        "train with --no-compile"
    )
