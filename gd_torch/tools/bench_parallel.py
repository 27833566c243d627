"""Where a second process pays: ``gd-torch bench --parallel``.

1. A sharded sweep: the same K copies (default 16, one epoch of all 60,000 images) trained by
   ``gd-torch sweep`` in one process and by ``torchrun --nproc_per_node=2 -m gd_torch sweep``,
   every process on 1 thread. Wall time of the whole command (interpreter, imports and torchrun's
   agent included), and of the sweep itself as it reports it (``SweepResult.seconds``: from
   joining the processes to the summary, data loading, evaluation, logs and checkpoints included).
   Beside them, the machine's ceiling for that speed-up: two one-process sweeps of half the
   copies each, started at once with nothing shared (``halves_seconds``). On a VM whose two cores
   do not give twice the work of one, no sharding beats that row.
2. Data parallelism of one network (``torchrun ... -m gd_torch train``): seconds per SGD step on 1
   and on 2 processes at each batch size, from 10 to 60,000 (full-batch gradient descent: every
   step a pass over the training set). A step's time is that of the run's SGD steps after its
   first epoch (``sgd_seconds``: warm-up and the per-epoch evaluation left out), in a torchrun
   worker of this module that trains every batch size in turn with nothing written.

Rounds alternate the order of 1 and 2 processes and the ceiling's halves (ABBA), so a drift of
the machine's speed hits them alike; the tables show the medians over ``repeats`` rounds, and
the load before and after.
"""

import contextlib
import io
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gd_torch.core.errors import GdTorchError

MEASURED_STEPS = 5  # at least this many steps after the first epoch, at every batch size
REPORT = "bench_parallel:"  # the worker's line of results


def torchrun(processes: int, *command: str) -> list[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        *command,
    ]


def timed(*commands: list[str]) -> tuple[float, list[str]]:
    """(wall seconds until the last ended, the stdout of each) of the commands, all started at
    once, each from the package's parent with 1 thread."""
    with contextlib.ExitStack() as files:
        outputs = [  # (stdout, stderr) of each, in files: a full pipe would stall a command
            (
                files.enter_context(tempfile.TemporaryFile("w+")),
                files.enter_context(tempfile.TemporaryFile("w+")),
            )
            for _ in commands
        ]
        started = time.perf_counter()
        running = [
            subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                text=True,
                env=os.environ | {"OMP_NUM_THREADS": "1"},
                cwd=Path(__file__).resolve().parents[2],
            )
            for command, (stdout, stderr) in zip(commands, outputs)
        ]
        codes = [process.wait() for process in running]
        wall = time.perf_counter() - started
        texts = []
        for stdout, stderr in outputs:
            stdout.seek(0)
            stderr.seek(0)
            texts.append((stdout.read(), stderr.read()))
    for command, code, (_, stderr) in zip(commands, codes, texts):
        if code != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return wall, [stdout for stdout, _ in texts]


def sweep_command(processes: int, copies: int, epochs: int, data_root: str, runs_dir: str):
    sweep = ["-m", "gd_torch", "sweep", "--num-seeds", str(copies), "--epochs", str(epochs)]
    sweep += ["--data-root", data_root, "--no-download", "--runs-dir", runs_dir]
    return [sys.executable, *sweep] if processes == 1 else torchrun(processes, *sweep)


def reported_seconds(stdout: str) -> float:
    """The seconds of the sweep itself, from its last line."""
    return float(re.search(r"copies in ([\d.]+) s", stdout).group(1))


def sweep_seconds(processes: int, copies: int, epochs: int, data_root: str, runs_dir: str):
    """(wall seconds of the command, seconds of the sweep as it reports them)."""
    wall, (stdout,) = timed(sweep_command(processes, copies, epochs, data_root, runs_dir))
    return wall, reported_seconds(stdout)


def shares(copies: int) -> tuple[int, int]:  # the copies of each half, the first the larger
    return copies - copies // 2, copies // 2


def halves_seconds(copies: int, epochs: int, data_root: str, runs_dir: str):
    """The machine's ceiling for a sharded sweep: two one-process sweeps of half the copies each,
    started at once with no torchrun (nothing shared, nothing gathered). (wall seconds until both
    ended, the sweep itself of the slower); what two ranks would take if sharding cost nothing."""
    halves = [
        sweep_command(1, share, epochs, data_root, str(Path(runs_dir) / f"half{half}"))
        for half, share in enumerate(shares(copies))
    ]
    wall, stdouts = timed(*halves)
    return wall, max(map(reported_seconds, stdouts))


def epochs_for(batch_size: int, train_images: int) -> int:
    """One epoch of warm-up, then enough epochs for MEASURED_STEPS steps."""
    steps_per_epoch = math.ceil(train_images / batch_size)
    return 1 + math.ceil(MEASURED_STEPS / steps_per_epoch)


def step_seconds(processes: int, batch_sizes, data_root: str) -> tuple[int, dict[int, float]]:
    """(training images, seconds per SGD step at each batch size), from one torchrun launch."""
    command = ["-m", "gd_torch.tools.bench_parallel", data_root, *map(str, batch_sizes)]
    _, (stdout,) = timed(torchrun(processes, *command))
    line = next(line for line in stdout.splitlines() if line.startswith(REPORT))
    report = json.loads(line[len(REPORT) :])
    return report["train_images"], {int(b): seconds for b, seconds in report["seconds"].items()}


def seconds_per_step(history: list[dict]) -> float:
    """Seconds of one SGD step after the first epoch: Δ sgd_seconds / Δ step between the ends of
    the first and the last epoch (the first epoch warms up; evaluation is not in sgd_seconds)."""
    first, last = history[0], history[-1]
    return (last["sgd_seconds"] - first["sgd_seconds"]) / (last["step"] - first["step"])


def worker(data_root: str, batch_sizes: list[int]) -> None:
    """In each torchrun process: train at each batch size; rank 0 prints the seconds per step."""
    from gd_torch.api import train
    from gd_torch.core.data import load_mnist
    from gd_torch.core.distributed import is_leader
    from gd_torch.core.settings import RunOptions, TrainingSettings

    data = load_mnist(data_root, download=False)
    options = RunOptions(data_root=data_root, download=False, runs_dir=None)
    seconds = {}
    for batch_size in batch_sizes:
        epochs = epochs_for(batch_size, len(data.train))
        settings = TrainingSettings(epochs=epochs, batch_size=batch_size)
        seconds[batch_size] = seconds_per_step(
            train(settings, options, data=data, out=io.StringIO()).history
        )
    if is_leader():
        print(REPORT, json.dumps({"train_images": len(data.train), "seconds": seconds}), flush=True)


def load_average() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench_parallel(
    data_root: str,
    copies: int = 16,
    epochs: int = 1,
    batch_sizes=(10, 100, 1_000, 10_000, 60_000),
    repeats: int = 3,
    out=sys.stdout,
) -> None:
    for flag, values in (
        ("--parallel-copies", [copies]),
        ("--epochs", [epochs]),
        ("--parallel-batch-sizes", list(batch_sizes)),
        ("--rounds", [repeats]),
    ):
        if not values or min(values) < 1:
            shown = " ".join(map(str, values))
            raise GdTorchError(f"{flag} must be positive integers (got {shown or 'none'})")
    print(
        f"gd-torch bench --parallel: 1 against 2 processes (torchrun, gloo), 1 thread each, "
        f"{os.cpu_count()} CPU cores, {load_average()}; medians of {repeats} rounds",
        file=out,
        flush=True,
    )
    sweeps, steps, halves = {1: [], 2: []}, {1: [], 2: []}, []
    with tempfile.TemporaryDirectory() as runs_dir:
        kinds = [1, 2, "halves"] if copies > 1 else [1, 2]  # processes, or the ceiling's halves
        for round_ in range(repeats):
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                if kind == "halves":
                    halves.append(halves_seconds(copies, epochs, data_root, runs_dir))
                    continue
                sweeps[kind].append(sweep_seconds(kind, copies, epochs, data_root, runs_dir))
                train_images, seconds = step_seconds(kind, batch_sizes, data_root)
                steps[kind].append(seconds)

    def median(values) -> float:
        return statistics.median(values)

    print(
        f"\nA sweep of {copies} copies, {epochs} epoch(s) (`gd-torch sweep --num-seeds {copies} "
        f"--epochs {epochs}`; each rank trains its share):\n\n"
        "| wall time | 1 process | 2 processes | speed-up |\n|---|---:|---:|---:|",
        file=out,
    )
    rows = [("whole command, start-up included", 0, sweeps[2]), ("the sweep itself", 1, sweeps[2])]
    if halves:
        ceiling = (
            "the machine's ceiling: two `gd-torch sweep` of {} and {} copies at once, no torchrun "
            "(the slower's sweep itself)".format(*shares(copies))
        )
        rows.append((ceiling, 1, halves))
    for name, index, two_processes in rows:
        one = median(seconds[index] for seconds in sweeps[1])
        two = median(seconds[index] for seconds in two_processes)
        print(f"| {name} | {one:.1f} s | {two:.1f} s | {one / two:.2f}x |", file=out)
    print(
        "\nData parallelism of one network (`torchrun ... -m gd_torch train --batch-size B`), "
        "milliseconds per SGD step:\n\n"
        "| batch size | steps per epoch | 1 process | 2 processes | speed-up |\n"
        "|---:|---:|---:|---:|---:|",
        file=out,
    )
    for batch_size in batch_sizes:
        one = median(round_[batch_size] for round_ in steps[1])
        two = median(round_[batch_size] for round_ in steps[2])
        print(
            f"| {batch_size:,} | {math.ceil(train_images / batch_size):,} | {1e3 * one:.3f} | "
            f"{1e3 * two:.3f} | {one / two:.2f}x |",
            file=out,
        )
    print(f"\nafterwards: {load_average()}", file=out, flush=True)


if __name__ == "__main__":
    worker(sys.argv[1], [int(batch) for batch in sys.argv[2:]])
