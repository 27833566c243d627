"""The real thing: the default network trained on all of MNIST (needs GD_TORCH_DATA)."""

import os

import pytest

from gd_torch import train
from tests.configs import split


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_default_network_learns_mnist_in_a_few_epochs(mnist, mnist_root, tmp_path, engine):
    config = split(epochs=3, engine=engine, data_root=str(mnist_root), runs_dir=str(tmp_path))
    result = train(*config, data=mnist, out=open(os.devnull, "w"))
    assert result.final["test_accuracy"] >= 0.90
