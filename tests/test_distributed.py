"""torchrun with 2 CPU processes (gloo, localhost only): one loop for every rank.

The same ``train`` runs on every rank; only rank 0 prints, logs and checkpoints. Stopping,
resuming, the time budget and divergence behave as they do in one process.
"""

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, settings_of
from gd_torch.core.errors import GdTorchError
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from tests.configs import split
from tests.fakes import synthetic_mnist, write_mnist_files

REPOSITORY = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun_command(*options) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "gd_torch",
        "train",
        *map(str, options),
    ]


ENVIRONMENT = os.environ | {"PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}


def torchrun(*options, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun_command(*options),
        cwd=REPOSITORY,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def equal_to_one_process(run_dir: Path, tmp_path: Path) -> None:
    """The weights of the torchrun run equal one process's on the same global batches (to float32
    rounding)."""
    state = load_checkpoint(run_dir / "last.pt")
    parallel, settings = network_from_checkpoint(state)
    _, options = settings_of(state, run_dir)
    single = train(
        settings, dataclasses.replace(options, runs_dir=str(tmp_path / "single")), out=io.StringIO()
    )
    for name, expected in single.network.state_dict().items():
        torch.testing.assert_close(
            parallel.state_dict()[name], expected, rtol=1e-4, atol=1e-5, msg=name
        )
    initial = Network(settings.layer_sizes, settings.init, seeded_generators(settings.seed)[0])
    assert not torch.allclose(
        parallel.layers[0].weight, initial.layers[0].weight
    )  # the steps did move the weights


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_two_processes_take_the_single_process_steps(engine, fake_mnist_root, tmp_path):
    """598 training images in batches of 3: every batch splits unevenly (2 + 1) and the last one,
    of a single image, leaves rank 1 an empty shard; 200 steps must still match one process."""
    launched = torchrun(
        "--data-root",
        fake_mnist_root,
        "--no-download",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--validation-size",
        "2",
        "--engine",
        engine,
        "--log-every",
        "50",
        "--runs-dir",
        tmp_path / "torchrun",
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("final test accuracy") == 1  # only rank 0 prints
    (run_dir,) = (tmp_path / "torchrun").iterdir()  # only rank 0 writes a run
    assert load_checkpoint(run_dir / "last.pt")["step"] == 200
    equal_to_one_process(run_dir, tmp_path)


def test_sigterm_stops_every_rank_after_the_same_step_and_the_run_resumes_under_torchrun(tmp_path):
    """SIGTERM to torchrun reaches every worker; they agree on the step to stop after, rank 0
    saves last.pt mid-epoch, and ``--resume`` under torchrun finishes the run as one process
    would have."""
    data_root = write_mnist_files(tmp_path / "data", train_count=2000, test_count=200)
    options = [
        "--data-root",
        data_root,
        "--no-download",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--log-every",
        "20",
        "--learning-rate",
        "0.5",
        "--runs-dir",
        tmp_path / "runs",
        "--run-name",
        "stopped",
        "--image-every",
        "0",
    ]
    process = subprocess.Popen(
        torchrun_command(*options),
        cwd=REPOSITORY,
        env=ENVIRONMENT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # epoch 1 done: the signal lands in epoch 2, 1,000 steps long
        if line.startswith("epoch 1/2"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "gd_torch/" not in stderr, stderr[
        -3000:
    ]  # no traceback from our code (torchrun's agent prints its own)
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = load_checkpoint(run_dir / "last.pt")
    assert (
        state["epoch"] == 1 and 0 < state["batches_done"] < 1000 and state["step"] % 20 == 0
    )  # agreed step
    assert stderr.count("stopped by SIGTERM") == 1  # one line, from rank 0

    resumed = torchrun("--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch 1, step {state['step']}" in resumed.stdout
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2 * 1000
    equal_to_one_process(run_dir, tmp_path)


def test_time_budget_stops_every_rank_after_the_same_epoch(fake_mnist_root, tmp_path):
    launched = torchrun(
        "--data-root",
        fake_mnist_root,
        "--no-download",
        "--epochs",
        "50",
        "--time-budget",
        "0.001",
        "--runs-dir",
        tmp_path / "runs",
        "--image-every",
        "0",
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "stopped early (the time budget)" in launched.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1


def test_a_diverging_run_stops_on_every_rank_with_one_message(fake_mnist_root, tmp_path):
    launched = torchrun(
        "--data-root",
        fake_mnist_root,
        "--no-download",
        "--epochs",
        "1",
        "--learning-rate",
        "1",
        "--weight-decay",
        "10",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert launched.returncode != 0
    assert launched.stderr.count("diverged at step") == 1, launched.stderr[-3000:]


def test_compile_is_refused_under_torchrun(tmp_path, monkeypatch):
    """A compiled step holds the update, where data parallelism needs the all-reduce between
    backward and update."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    settings, options = split(runs_dir=str(tmp_path), data_root=str(tmp_path), compile=True)
    with pytest.raises(GdTorchError, match="--compile is not supported under torchrun"):
        train(settings, options, data=synthetic_mnist())
