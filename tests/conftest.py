import os
import signal
from pathlib import Path

import pytest
import torch

from gd_torch.core.data import load_mnist
from tests.fakes import write_mnist_files

torch.set_num_threads(
    1
)  # the default of gd-torch too: fastest for this net, and safe on a busy machine

# The signal tests send SIGINT and expect it heard. A shell starting the suite in the background
# (`pytest &` in a script) has it ignored, which gd_torch rightly keeps, as nohup's SIGHUP: give
# the tests (and the commands they start) Python's own Ctrl-C instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# A relative $GD_TORCH_DATA is the shell's folder's: made whole once, so that the tests that change
# folder (and the commands they start there) find the same MNIST.
if os.environ.get("GD_TORCH_DATA"):
    os.environ["GD_TORCH_DATA"] = str(Path(os.environ["GD_TORCH_DATA"]).resolve())


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST folder from $GD_TORCH_DATA; tests that need it skip with the reason when it
    is absent."""
    root = os.environ.get("GD_TORCH_DATA")
    if not root or not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(
            "real MNIST not found: set GD_TORCH_DATA to a folder holding MNIST/raw/*-ubyte "
            "(see README)"
        )
    return Path(root)


@pytest.fixture(scope="session")
def mnist(mnist_root):
    return load_mnist(str(mnist_root), download=False)


@pytest.fixture
def fake_mnist_root(tmp_path) -> Path:
    """A data root with small synthetic IDX files (600 training, 200 test digits)."""
    return write_mnist_files(tmp_path / "data")
