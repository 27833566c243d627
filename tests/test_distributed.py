"""torchrun with 2 CPU processes (gloo, localhost only) against one process on the same global batches."""

import dataclasses
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gd_torch.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.errors import GdTorchError
from gd_torch.model import Network
from gd_torch.train import seeded_generators, train
from tests.fakes import synthetic_mnist

REPOSITORY = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_two_processes_take_the_single_process_steps(engine, fake_mnist_root, tmp_path):
    """598 training images in batches of 3: every batch splits unevenly (2 + 1) and the last one,
    of a single image, leaves rank 1 an empty shard; 200 steps must still match one process."""
    options = ["--data-root", str(fake_mnist_root), "--no-download", "--epochs", "1", "--batch-size", "3",
               "--validation-size", "2", "--engine", engine, "--log-every", "50"]
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
         "-m", "gd_torch.train", *options, "--runs-dir", str(tmp_path / "torchrun")],
        cwd=REPOSITORY, env=os.environ | {"PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("final test accuracy") == 1  # only rank 0 prints
    (run_dir,) = (tmp_path / "torchrun").iterdir()  # only rank 0 writes a run
    state = load_checkpoint(run_dir / "last.pt")
    parallel, config = network_from_checkpoint(state)
    assert state["step"] == 200

    single = train(dataclasses.replace(config, runs_dir=str(tmp_path / "single")), out=io.StringIO())
    for name, expected in single.network.state_dict().items():
        torch.testing.assert_close(parallel.state_dict()[name], expected, rtol=1e-4, atol=1e-5, msg=name)
    initial = Network(config.layer_sizes, config.init, seeded_generators(config.seed)[0])
    assert not torch.allclose(parallel.layers[0].weight, initial.layers[0].weight)  # the steps did move the weights


@pytest.mark.parametrize("options, refused", [(dict(resume="runs/some-run"), "--resume"), (dict(time_budget=5.0), "--time-budget"),
                                               (dict(compile=True), "--compile")])
def test_options_the_other_ranks_cannot_follow_are_refused_under_torchrun(tmp_path, monkeypatch, options, refused):
    """Ranks other than 0 only repeat the epochs: a run that rank 0 alone would stop early or resume would hang them.
    And a compiled step holds the update, where data parallelism needs the all-reduce between backward and update."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    config_options = {k: v for k, v in options.items() if k != "resume"}
    config = TrainConfig(runs_dir=str(tmp_path), data_root=str(tmp_path), **config_options)
    with pytest.raises(GdTorchError, match=f"{refused} is not supported under torchrun"):
        train(config, synthetic_mnist(), resume=options.get("resume"))
