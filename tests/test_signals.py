"""Ctrl-C and SIGTERM sent to a real ``python -m gd_torch train`` in the middle of an epoch."""

import io
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from gd_torch import train
from gd_torch.core.checkpoint import load_checkpoint
from tests.configs import split
from tests.events import scalars
from tests.fakes import write_mnist_files

REPOSITORY = Path(__file__).resolve().parents[1]
# in batches of 1: an epoch is 3,000 steps (seconds), long enough to be signalled in its middle
TRAIN_IMAGES = 3000
EPOCHS = 3
WAIT_SECONDS = 180


def gd_torch(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gd_torch", *arguments],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, start: str) -> list[str]:
    """The stdout lines up to the first that starts with ``start``; fails after WAIT_SECONDS."""
    lines = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    seen, deadline = [], time.monotonic() + WAIT_SECONDS
    while not seen or not seen[-1].startswith(start):
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            process.kill()
            pytest.fail(f"no line starting with {start!r} within {WAIT_SECONDS} s; got {seen}")
    return seen


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes_bit_for_bit(
    tmp_path, signal_number, exit_code
):
    data_root = write_mnist_files(tmp_path / "data", train_count=TRAIN_IMAGES, test_count=200)
    config = split(
        epochs=EPOCHS,
        batch_size=1,
        learning_rate=0.5,
        log_every=50,
        data_root=str(data_root),
        download=False,
        runs_dir=str(tmp_path / "runs"),
        run_name="signalled",
        image_every=0,
    )
    options = [
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "1",
        "--learning-rate",
        "0.5",
        "--log-every",
        "50",
        "--data-root",
        str(data_root),
        "--no-download",
        "--runs-dir",
        config[1].runs_dir,
        "--run-name",
        "signalled",
        "--image-every",
        "0",
    ]
    process = gd_torch("train", *options)
    wait_for_line(process, f"epoch 1/{EPOCHS}")
    time.sleep(
        1.0
    )  # past epoch 1's checkpoint (a signal there stops at the epoch's end): into epoch 2's steps
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=WAIT_SECONDS)

    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (
        f"stopped by {signal.Signals(signal_number).name}" in stderr
        and f"--resume {run_dir}" in stderr
    )
    state = load_checkpoint(run_dir / "last.pt")  # weights_only=True
    assert (
        state["epoch"] in (1, 2) and 0 < state["batches_done"] < TRAIN_IMAGES
    )  # stopped mid-epoch
    assert state["step"] == state["epoch"] * TRAIN_IMAGES + state["batches_done"]
    epoch_ends = [
        TRAIN_IMAGES * epoch for epoch in range(0, state["epoch"] + 1)
    ]  # x: SGD step (batch size 1); step 0 is the untrained network
    assert [step for step, _ in scalars(run_dir, "epoch/test_accuracy")] == epoch_ends
    assert [step for step, _ in scalars(run_dir, "batch/train_cost")] == list(
        range(50, state["step"] + 1, 50)
    )

    resumed = gd_torch("train", "--resume", str(run_dir))
    stdout, stderr = resumed.communicate(timeout=WAIT_SECONDS)
    assert resumed.returncode == 0, stderr
    assert f"resuming after epoch {state['epoch']}, step {state['step']}" in stdout
    whole = train(*config, out=io.StringIO())
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(load_checkpoint(run_dir / "last.pt")["model"][name], tensor), name
