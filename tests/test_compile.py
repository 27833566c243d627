"""--compile: the same engines, compiled with torch.compile, take the same steps."""

import torch

from gd_torch.engines import ENGINES, engine
from tests.gradients import random_problem


def test_compiled_engines_compute_the_eager_gradients():
    for name in ("manual", "autograd"):
        eager_network, images, targets = random_problem((16, 16), 10, dtype=torch.float32, seed=1)
        compiled_network, _, _ = random_problem((16, 16), 10, dtype=torch.float32, seed=1)
        eager_cost = ENGINES[name](eager_network, images, targets, "quadratic")
        compiled_cost = engine(name, compile=True)(compiled_network, images, targets, "quadratic")
        torch.testing.assert_close(compiled_cost, eager_cost)
        for eager, compiled in zip(eager_network.parameters(), compiled_network.parameters()):
            torch.testing.assert_close(compiled.grad, eager.grad)


def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    import os

    from gd_torch.config import TrainConfig
    from gd_torch.train import train
    from tests.fakes import synthetic_mnist

    results = {}
    for compile in (False, True):
        config = TrainConfig(epochs=1, learning_rate=3.0, batch_size=7, compile=compile, runs_dir=str(tmp_path), data_root=str(tmp_path), image_every=0)
        results[compile] = train(config, synthetic_mnist(), out=open(os.devnull, "w"))  # 600 = 85·7 + 5: two batch shapes
    for eager, compiled in zip(results[False].network.parameters(), results[True].network.parameters()):
        torch.testing.assert_close(compiled, eager)
    assert results[True].final["test_accuracy"] == results[False].final["test_accuracy"]
