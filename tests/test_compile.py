"""--compile: the fast path takes the reference loop's steps, 16 whole steps to a compiled call."""

import io

import pytest
import torch

from gd_torch import Callback, train
from gd_torch.core.compiled import STEPS_PER_CALL, chunks, whole_steps_function
from gd_torch.core.data import Mnist
from gd_torch.core.errors import GdTorchError
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from tests.configs import split
from tests.events import scalars
from tests.fakes import synthetic_mnist


class RecordSteps(Callback):
    def __init__(self):
        self.costs, self.norms = [], []

    def on_step_end(self, run):
        self.costs.append(float(run.batch_cost))
        self.norms.append(float(run.gradient_norm()))


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_compiled_steps_take_the_eager_steps(engine):
    """Three calls of STEPS_PER_CALL steps each: the same costs, ‖∇C‖ at every step, weights, and
    the last ∇C in .grad."""
    full = synthetic_mnist()
    data = Mnist(full.train[: 3 * STEPS_PER_CALL * 10], full.test)
    results = {}
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
    (eager_steps, eager), (compiled_steps, compiled) = results[False], results[True]
    assert len(compiled_steps.costs) == 3 * STEPS_PER_CALL
    assert compiled_steps.costs == pytest.approx(eager_steps.costs, rel=1e-5)
    assert compiled_steps.norms == pytest.approx(eager_steps.norms, rel=1e-4)
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], expected, msg=name)
    for mine, theirs in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(
            mine.grad, theirs.grad
        )  # the histograms and the guard read .grad
    initial = Network(generator=seeded_generators(0)[0])
    assert not torch.allclose(
        compiled.layers[0].weight, initial.layers[0].weight
    )  # the steps did move the weights


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_compiled_cross_entropy_steps_take_the_eager_steps(engine):
    """The cross-entropy through the compiled passes: C from z^L, BP1 without σ'."""
    full = synthetic_mnist()
    data = Mnist(full.train[: STEPS_PER_CALL * 10], full.test)
    results = {}
    for compile in (False, True):
        settings, options = split(
            engine=engine,
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
    (eager_steps, eager), (compiled_steps, compiled) = results[False], results[True]
    assert compiled_steps.costs == pytest.approx(eager_steps.costs, rel=1e-5)
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], expected, msg=name)


def test_chunks_stack_whole_groups_and_leave_the_rest_one_at_a_time():
    batches = torch.arange(23).split(3)  # 7 batches of 3 and one of 2
    stacked = chunks(batches, 3)
    assert [tuple(chunk.shape) for chunk in stacked] == [(3, 3), (3, 3), (1, 3), (1, 2)]
    assert torch.equal(
        torch.cat([chunk.flatten() for chunk in stacked]), torch.arange(23)
    )  # every example once, in order
    assert [tuple(chunk.shape) for chunk in chunks(torch.arange(12).split(3), 2)] == [
        (2, 3),
        (2, 3),
    ]
    assert chunks((), 8) == []  # resumed after the last step of an epoch


def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    results = {}
    for compile in (False, True):
        settings, options = split(
            epochs=2,
            learning_rate=3.0,
            lr_schedule="cosine",
            batch_size=7,
            compile=compile,
            runs_dir=str(tmp_path),
            image_every=0,
            log_every=3,
        )
        # 600 = 85·7 + 5 images: 5 calls of 16 steps, 5 single steps and a smaller last batch per
        # epoch; two rates
        results[compile] = train(settings, options, data=synthetic_mnist(), out=io.StringIO())
    for eager, compiled in zip(
        results[False].network.parameters(), results[True].network.parameters()
    ):
        torch.testing.assert_close(compiled, eager)
    assert [epoch["test_accuracy"] for epoch in results[True].history] == [
        epoch["test_accuracy"] for epoch in results[False].history
    ]
    for tag in (
        "batch/train_cost",
        "batch/gradient_norm",
    ):  # logged every 3 steps, from inside the compiled calls too
        (eager_steps, eager_values), (compiled_steps, compiled_values) = (
            zip(*scalars(results[compile].run_dir, tag)) for compile in (False, True)
        )
        assert list(compiled_steps) == list(eager_steps) == list(range(3, 2 * 86 + 1, 3))
        assert list(compiled_values) == pytest.approx(list(eager_values), rel=1e-4)


def test_steps_from_pixels_equal_steps_from_float_images():
    """--compile gathers uint8 pixels and makes them activations after the gather: the same
    numbers as Split.images."""
    data = synthetic_mnist()
    chunk = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(5))[:30].view(
        3, 10
    )
    results = []
    for inputs in (data.train.pixels, data.train.images):
        network = Network(generator=seeded_generators(0)[0])
        with torch.no_grad():
            _, costs, norms = whole_steps_function("manual")(
                network, inputs, data.train.targets, chunk, "quadratic", torch.tensor(0.5), 6e-5
            )
        results.append((costs, norms, [parameter.clone() for parameter in network.parameters()]))
    (pixel_costs, pixel_norms, pixel_weights), (image_costs, image_norms, image_weights) = results
    assert torch.equal(pixel_costs, image_costs) and torch.equal(pixel_norms, image_norms)
    assert all(map(torch.equal, pixel_weights, image_weights))


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_the_whole_step_is_one_graph(engine):
    """No graph break: gather, gradient and update of several steps compile together (the point
    of --compile)."""
    data = synthetic_mnist()
    network = Network(generator=seeded_generators(0)[0])
    with torch.no_grad():
        explanation = torch._dynamo.explain(whole_steps_function(engine))(
            network,
            data.train.images,
            data.train.targets,
            torch.arange(20).view(2, 10),
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
    ],
)
def test_the_fast_path_refuses_what_it_does_not_implement(values, optimizer, message):
    settings, options = split(compile=True, epochs=1, runs_dir=None, **values)
    with pytest.raises(GdTorchError, match=message):
        train(settings, options, data=synthetic_mnist(), optimizer=optimizer, out=io.StringIO())
