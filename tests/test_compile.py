"""--compile: several whole SGD steps (gather, forward, backward, update) as one compiled graph take the eager steps."""

import os

import pytest
import torch

from gd_torch.config import TrainConfig
from gd_torch.step import STEPS_PER_CALL, chunks, sgd_steps_function, whole_steps_function
from gd_torch.tensorboard_log import gradient_norm, gradients
from gd_torch.train import network_and_optimizer, seeded_generators, train
from tests.events import scalars
from tests.fakes import synthetic_mnist


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_compiled_steps_take_the_eager_steps(engine):
    """Three calls of STEPS_PER_CALL steps each: the same costs, ‖∇C‖ at every step, weights, and the last ∇C in .grad."""
    data = synthetic_mnist()
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(3))
    batches = order[:3 * STEPS_PER_CALL * 10].split(10)
    stepped = {}
    for compile in (False, True):
        config = TrainConfig(engine=engine, compile=compile, learning_rate=3.0, weight_decay=1e-3, data_root="")
        network, optimizer = network_and_optimizer(config, torch.device("cpu"), seeded_generators(0)[0])
        take_steps = sgd_steps_function(config, optimizer)
        costs, norms = [], []
        for chunk in chunks(batches, take_steps.batches_per_call):
            done = take_steps(network, data.train, chunk)
            costs.append(done.batch_costs)
            norms.append(gradient_norm(gradients(network)).reshape(1) if done.gradient_norms is None else done.gradient_norms)
        stepped[compile] = torch.cat(costs), torch.cat(norms), network
    (eager_costs, eager_norms, eager), (compiled_costs, compiled_norms, compiled) = stepped[False], stepped[True]
    assert compiled_costs.shape == (3 * STEPS_PER_CALL,)
    torch.testing.assert_close(compiled_costs, eager_costs)
    torch.testing.assert_close(compiled_norms, eager_norms)
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], expected, msg=name)
    for mine, theirs in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad)  # the histograms and the guard read .grad
    initial, _ = network_and_optimizer(TrainConfig(data_root=""), torch.device("cpu"), seeded_generators(0)[0])
    assert not torch.allclose(compiled.layers[0].weight, initial.layers[0].weight)  # the steps did move the weights


def test_chunks_stack_whole_groups_and_leave_the_rest_one_at_a_time():
    batches = torch.arange(23).split(3)  # 7 batches of 3 and one of 2
    stacked = chunks(batches, 3)
    assert [tuple(chunk.shape) for chunk in stacked] == [(3, 3), (3, 3), (1, 3), (1, 2)]
    assert torch.equal(torch.cat([chunk.flatten() for chunk in stacked]), torch.arange(23))  # every example once, in order
    assert [tuple(chunk.shape) for chunk in chunks(torch.arange(12).split(3), 2)] == [(2, 3), (2, 3)]
    assert chunks((), 8) == []  # resumed after the last step of an epoch


def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    results = {}
    for compile in (False, True):
        config = TrainConfig(epochs=2, learning_rate=3.0, lr_schedule="cosine", batch_size=7, compile=compile, runs_dir=str(tmp_path),
                             data_root=str(tmp_path), image_every=0, log_every=3)
        # 600 = 85·7 + 5 images: 5 calls of 16 steps, 5 single steps and a smaller last batch per epoch; two rates
        results[compile] = train(config, synthetic_mnist(), out=open(os.devnull, "w"))
    for eager, compiled in zip(results[False].network.parameters(), results[True].network.parameters()):
        torch.testing.assert_close(compiled, eager)
    assert [epoch["test_accuracy"] for epoch in results[True].history] == [epoch["test_accuracy"] for epoch in results[False].history]
    for tag in ("batch/train_cost", "batch/gradient_norm"):  # logged every 3 steps, from inside the compiled calls too
        (eager_steps, eager_values), (compiled_steps, compiled_values) = (zip(*scalars(results[compile].run_dir, tag)) for compile in (False, True))
        assert list(compiled_steps) == list(eager_steps) == list(range(3, 2 * 86 + 1, 3))
        assert list(compiled_values) == pytest.approx(list(eager_values), rel=1e-4)


def test_steps_from_pixels_equal_steps_from_float_images():
    """--compile gathers uint8 pixels and makes them activations after the gather: the same numbers as Split.images."""
    data = synthetic_mnist()
    chunk = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(5))[:30].view(3, 10)
    results = []
    for inputs in (data.train.pixels, data.train.images):
        network, _ = network_and_optimizer(TrainConfig(data_root=""), torch.device("cpu"), seeded_generators(0)[0])
        with torch.no_grad():
            _, costs, norms = whole_steps_function("manual")(network, inputs, data.train.targets, chunk, "quadratic", torch.tensor(0.5), 6e-5)
        results.append((costs, norms, [parameter.clone() for parameter in network.parameters()]))
    (pixel_costs, pixel_norms, pixel_weights), (image_costs, image_norms, image_weights) = results
    assert torch.equal(pixel_costs, image_costs) and torch.equal(pixel_norms, image_norms)
    assert all(map(torch.equal, pixel_weights, image_weights))


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_the_whole_step_is_one_graph(engine):
    """No graph break: gather, gradient and update of several steps compile together (the point of --compile)."""
    data = synthetic_mnist()
    config = TrainConfig(engine=engine, data_root="")
    network, _ = network_and_optimizer(config, torch.device("cpu"), seeded_generators(0)[0])
    with torch.no_grad():
        explanation = torch._dynamo.explain(whole_steps_function(engine))(
            network, data.train.images, data.train.targets, torch.arange(20).view(2, 10), "quadratic", torch.tensor(0.5), 6e-5)
    assert (explanation.graph_count, len(explanation.break_reasons)) == (1, 0), explanation.break_reasons
