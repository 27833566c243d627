"""How much a batched sweep saves: ``gd-torch bench --sweep``.

K seeds of the default run trained one after another (``train``, K times) versus as one
batched sweep (``sweep``), both with their full per-epoch evaluation, TensorBoard logs and
checkpoints, on the first --train-images training images and a sixth as many test images (the
6:1 of MNIST, so evaluation weighs as much as in a default epoch) to keep it short; also the
largest weight and test-accuracy differences between the two (rounding level for ~1,000 steps;
SGD is chaotic, so over many thousands of steps any rounding difference grows). What a second
process adds is ``gd-torch bench --parallel`` (gd_torch.tools.bench_parallel).
"""

import dataclasses
import io
import os
import sys
import tempfile
import time

import torch

from gd_torch.api import train
from gd_torch.core.data import Mnist, load_mnist
from gd_torch.core.errors import GdTorchError
from gd_torch.core.memory import require_network_memory
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.tools.sweep import sweep


def time_sequential_and_sweep(
    base: TrainingSettings, options: RunOptions, data: Mnist, copies: int
) -> tuple[float, float, float, float]:
    """(seconds for ``copies`` seeds one after another, seconds for one sweep of them,
    max |w_sweep − w_alone| over all weights, max |test accuracy difference|)."""
    started = time.perf_counter()
    alone = [
        train(dataclasses.replace(base, seed=seed), options, data=data, out=io.StringIO())
        for seed in range(copies)
    ]
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    swept = sweep(base, options, range(copies), data=data, out=io.StringIO())
    batched = time.perf_counter() - started
    weights = max(
        (a - b).abs().max().item()
        for x, y in zip(alone, swept.networks)
        for a, b in zip(x.network.parameters(), y.parameters())
    )
    accuracy = max(
        abs(x.final["test_accuracy"] - final["test_accuracy"])
        for x, final in zip(alone, swept.finals)
    )
    return sequential, batched, weights, accuracy


def bench_sweep(
    data_root: str,
    copies=(1, 4, 16, 64),
    train_images: int = 10_000,
    epochs: int = 1,
    out=sys.stdout,
) -> None:
    for name, values in (
        ("--copies", copies),
        ("--train-images", [train_images]),
        ("--epochs", [epochs]),
    ):
        if min(values) < 1:
            raise GdTorchError(f"{name} must be positive integers, not {min(values)}")
    require_network_memory(
        TrainingSettings().layer_sizes, torch.float32, torch.device("cpu"), copies=max(copies)
    )
    torch.set_num_threads(1)
    full = load_mnist(data_root, download=False)
    if train_images > len(full.train):
        raise GdTorchError(
            f"--train-images {train_images} is more than the {len(full.train):,} training images"
        )
    data = Mnist(
        full.train[:train_images], full.test[: train_images // 6]
    )  # MNIST's 6:1, as in a default epoch
    print(
        f"gd-torch bench --sweep: default 784-16-16-10 network, manual engine, batch 10, "
        f"{epochs} epoch(s) on the first "
        f"{train_images:,} training and {train_images // 6:,} test images "
        f"(both evaluated each epoch; TensorBoard images off in "
        f"both, a fixed cost per copy that batching cannot share), 1 thread, "
        f"{os.cpu_count()} CPU cores",
        file=out,
        flush=True,
    )
    print(
        "\n| K seeds | one after another | one batched sweep | speed-up "
        "| max weight difference | max test accuracy difference |\n"
        "|---:|---:|---:|---:|---:|---:|",
        file=out,
        flush=True,
    )
    with tempfile.TemporaryDirectory() as runs_dir:
        base = TrainingSettings(epochs=epochs)
        options = RunOptions(data_root=data_root, download=False, runs_dir=runs_dir, image_every=0)
        for count in copies:
            sequential, batched, weights, accuracy = time_sequential_and_sweep(
                base, options, data, count
            )
            print(
                f"| {count} | {sequential:.1f} s | {batched:.1f} s | "
                f"{sequential / batched:.1f}x | {weights:.1e} | {100 * accuracy:.2f}% |",
                file=out,
                flush=True,
            )
