"""--compile: the whole SGD step (gather, forward, backward, update) as one compiled graph takes the eager steps."""

import os

import pytest
import torch

from gd_torch.config import TrainConfig
from gd_torch.step import sgd_step_function, whole_step_function
from gd_torch.train import network_and_optimizer, seeded_generators, train
from tests.fakes import synthetic_mnist


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_a_compiled_step_takes_the_eager_step(engine):
    data = synthetic_mnist()
    indices = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(3))[:10]
    stepped = {}
    for compile in (False, True):
        config = TrainConfig(engine=engine, compile=compile, learning_rate=3.0, weight_decay=1e-3, data_root="")
        network, optimizer = network_and_optimizer(config, torch.device("cpu"), seeded_generators(0)[0])
        take_step = sgd_step_function(config, optimizer)
        costs = [take_step(network, data.train, indices) for _ in range(3)]
        stepped[compile] = costs, network
    (eager_costs, eager), (compiled_costs, compiled) = stepped[False], stepped[True]
    torch.testing.assert_close(torch.stack(compiled_costs), torch.stack(eager_costs))
    for name, expected in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], expected, msg=name)
    for mine, theirs in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad)  # the log and the guard read .grad
    initial, _ = network_and_optimizer(TrainConfig(data_root=""), torch.device("cpu"), seeded_generators(0)[0])
    assert not torch.allclose(compiled.layers[0].weight, initial.layers[0].weight)  # the steps did move the weights


def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    results = {}
    for compile in (False, True):
        config = TrainConfig(epochs=2, learning_rate=3.0, lr_schedule="cosine", batch_size=7, compile=compile, runs_dir=str(tmp_path),
                             data_root=str(tmp_path), image_every=0)
        results[compile] = train(config, synthetic_mnist(), out=open(os.devnull, "w"))  # 600 = 85·7 + 5: two batch shapes, two rates
    for eager, compiled in zip(results[False].network.parameters(), results[True].network.parameters()):
        torch.testing.assert_close(compiled, eager)
    assert [epoch["test_accuracy"] for epoch in results[True].history] == [epoch["test_accuracy"] for epoch in results[False].history]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_the_whole_step_is_one_graph(engine):
    """No graph break: gather, gradient and update compile together (the point of --compile)."""
    data = synthetic_mnist()
    config = TrainConfig(engine=engine, data_root="")
    network, _ = network_and_optimizer(config, torch.device("cpu"), seeded_generators(0)[0])
    with torch.no_grad():
        explanation = torch._dynamo.explain(whole_step_function(engine))(
            network, data.train.images, data.train.targets, torch.arange(10), "quadratic", torch.tensor(0.5), 6e-5)
    assert (explanation.graph_count, len(explanation.break_reasons)) == (1, 0), explanation.break_reasons
