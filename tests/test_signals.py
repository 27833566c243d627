"""Ctrl-C and SIGTERM sent to a real ``python -m gd_torch train`` in the middle of an epoch."""

import io
import queue
import re
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
# in batches of 1: an epoch is 6,000 steps (0.8 s on a quiet 2-core VM, seconds under load),
# long enough to be signalled in its middle; 3 epochs, 18,000 steps, stay on the reference loop
TRAIN_IMAGES = 6000
EPOCHS = 3
WAIT_SECONDS = 180


def gd_torch(*arguments: str) -> subprocess.Popen:
    """gd-torch in a new process, SIGHUP at its default: a suite started under ``nohup`` would
    hand down an ignored SIGHUP, which gd-torch rightly leaves ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "gd_torch", *arguments],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )


def long_run(tmp_path: Path) -> list[str]:
    """A train command line of EPOCHS epochs in batches of 1, on synthetic MNIST in tmp_path."""
    data_root = write_mnist_files(tmp_path / "data", train_count=TRAIN_IMAGES, test_count=200)
    return [
        *("train", "--data-root", str(data_root), "--no-download"),
        *("--runs-dir", str(tmp_path / "runs"), "--batch-size", "1"),
        *("--epochs", str(EPOCHS), "--image-every", "0"),
    ]


def into_epoch_two(process: subprocess.Popen) -> None:
    """Once epoch 1's line is printed, wait half as long as that epoch took: past its checkpoint
    (a signal there stops at the epoch's end), in the middle of epoch 2's steps, however fast
    the machine is."""
    line = wait_for_line(process, f"epoch 1/{EPOCHS}")[-1]
    time.sleep(float(re.search(r"([0-9.]+) s$", line.strip()).group(1)) / 2)


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
    into_epoch_two(process)
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


def test_ctrl_c_while_torch_is_still_importing_is_a_clean_stop(tmp_path):
    data_root = write_mnist_files(tmp_path / "data")
    process = gd_torch(
        "train",
        "--data-root",
        str(data_root),
        "--no-download",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    time.sleep(0.3)  # importing torch takes seconds: the signal lands in the imports
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 130, stderr
    assert stderr == "gd-torch: error: stopped by SIGINT; nothing was written\n"
    assert not (tmp_path / "runs").exists()


def test_two_ctrl_c_2_ms_apart_with_a_progress_bar_end_in_one_clean_line(tmp_path):
    """With a terminal, tqdm draws a bar; a signal handler that raised would land in tqdm's
    finaliser and print "Exception ignored ... SystemExit" instead of stopping."""
    import os
    import pty

    terminal, stderr = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "gd_torch", *long_run(tmp_path)],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    os.close(stderr)
    into_epoch_two(process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=WAIT_SECONDS)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the terminal's other end is closed: all was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    text = shown.decode(errors="replace")
    assert process.returncode == 130, text
    assert "Traceback" not in text and "Exception ignored" not in text
    assert text.count("error:") == 1 and "stopped" in text.split("error:")[1]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] >= 1  # a whole, resumable checkpoint


@pytest.mark.parametrize("epoch_signalled", [1, 2])
def test_a_signal_during_an_epochs_checkpoint_is_not_swallowed(
    tmp_path, monkeypatch, epoch_signalled
):
    """During a checkpoint the signal is only recorded; at that epoch's end the run stops (exit
    130, resumable), or, after its last epoch, finishes and says that the signal came too late
    to stop anything."""
    import os

    from gd_torch.core import loop
    from gd_torch.core.guard import Interrupted
    from tests.fakes import synthetic_mnist

    save = loop.save_checkpoint

    def save_while_signalled(path, state, also=()):
        if path.name == "last.pt" and state["epoch"] == epoch_signalled:
            os.kill(os.getpid(), signal.SIGINT)
        save(path, state, also)

    monkeypatch.setattr(loop, "save_checkpoint", save_while_signalled)
    out = io.StringIO()
    settings, options = split(epochs=2, runs_dir=str(tmp_path), image_every=0)
    if epoch_signalled == 1:
        with pytest.raises(Interrupted, match=r"stopped by SIGINT after step 60") as stopped:
            train(settings, options, data=synthetic_mnist(600, 200), out=out)
        assert stopped.value.exit_code == 130
        (run_dir,) = tmp_path.iterdir()
        assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    else:
        result = train(settings, options, data=synthetic_mnist(600, 200), out=out)
        assert len(result.history) == 2
        assert "SIGINT arrived as the run was ending, with nothing left to stop" in out.getvalue()


@pytest.mark.parametrize("signal_number", [signal.SIGHUP, signal.SIGUSR1])
def test_a_closed_terminal_or_a_batch_systems_warning_stops_the_run_resumably(
    tmp_path, signal_number
):
    process = gd_torch(*long_run(tmp_path))
    into_epoch_two(process)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 128 + signal_number, stderr
    assert f"stopped by {signal.Signals(signal_number).name} after step" in stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run_dir / "last.pt")["batches_done"] > 0  # mid-epoch, resumable
