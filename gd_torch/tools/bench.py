"""How fast one epoch of SGD runs, against the common tutorial pipeline and the arithmetic floor.

    gd-torch bench                          # the table: CPU (and CUDA when present), 1 thread
    gd-torch bench --json > bench.json      # the same numbers as JSON, to track over time
    gd-torch bench --no-end-to-end          # the epochs only, without the runs in new processes

Every row is one pass of SGD over the training set (60,000 images), timed with the same epoch
that ``gd-torch train`` runs (``epoch_function``: the reference loop, or the compiled one), with
its per-step checks. Each row is warmed up once, then timed in
``--repeats`` rounds that visit every row in turn, and the matmul throughput behind the floor,
so that a burst of load from other processes hits all rows alike; the table shows the median.

The floor is FLOPs per epoch / matmul throughput, the throughput measured in the same rounds on
a large square float32 matmul. Per example the network costs 2 Σ_l n_{l-1} n_l FLOPs forward, the
same again for ∂C/∂W (BP4) and 2 Σ_{l≥2} n_{l-1} n_l to carry δ back (BP2); the elementwise
work (σ, σ', the cost) is left out, so no real step reaches the floor.

The logging overhead is counted where it is spent, in one row that trains with the default
``TensorBoard`` callback: the seconds inside its calls (every --log-every steps, and per epoch,
which ends waiting for its writer thread to put the events on disk), as a share of the rest of
that epoch, plus what a default run of ``RUN_EPOCHS`` logs less often, each timed in a row of
its own and amortised over the run: the histograms (every other epoch), the images (every
--image-every epochs), and the start and end of the run (settings, graph, the untrained
network at step 0 with its histograms and images; the PR curves and the projector). The
difference between epochs with and without the log would drown in this machine's noise
(epochs vary by ±30%).

After the epochs, on the CPU, the figures of a run as a user lives it, each in new processes
(gd_torch.tools.bench_run): the whole default ``gd-torch train``, first with an empty compile
cache and again with the one it left, and the fast path's compile per engine and batch size,
cold and cached (and Inductor's first compile on a new machine); in seconds and in floor-epochs
(seconds ÷ the floor's seconds per epoch).
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gd_torch.core import compiled, native
from gd_torch.core.cost import one_hot
from gd_torch.core.data import Mnist, shuffled_order
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import evaluate
from gd_torch.core.guard import RunGuard
from gd_torch.core.loop import prepare_data, resolve_device, set_threads
from gd_torch.core.model import Network
from gd_torch.core.run import Run
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import sgd
from gd_torch.dashboard.tensorboard import (
    GRADIENT_SAMPLE,
    TensorBoard,
    TrainingLog,
    histograms_due,
)
from gd_torch.tools import bench_run

MATMUL_SIZE = 1024
RUN_EPOCHS = TrainingSettings().epochs  # the default run, over which the rarer logging is shared


class CountedTensorBoard(TensorBoard):
    """The ``TensorBoard`` callback, counting the seconds spent in its calls."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0

    def on_step_end(self, run: Run) -> None:
        self._counted(super().on_step_end, run)

    def on_steps_end(self, run: Run, steps: range) -> None:
        self._counted(super().on_steps_end, run, steps)

    def on_epoch_end(self, run: Run) -> None:
        self._counted(super().on_epoch_end, run)

    def _counted(self, method, *arguments) -> None:
        started = time.perf_counter()
        method(*arguments)
        self.seconds += time.perf_counter() - started


@dataclass
class Row:
    name: str
    batch_size: int | None
    epoch: Callable[[], float]  # runs (part of) one epoch, returns the seconds a whole epoch takes
    examples: int  # examples in one epoch
    seconds: list[float] = field(default_factory=list)
    log: CountedTensorBoard | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def flops_per_example(layer_sizes: tuple[int, ...]) -> int:
    """Matmul FLOPs of one example's forward and backward pass (see the module docstring)."""
    products = [n_in * n_out for n_in, n_out in zip(layer_sizes, layer_sizes[1:])]
    return 2 * sum(products) + 2 * sum(products) + 2 * sum(products[1:])


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock measures it (CPU work is already done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device: torch.device, repeats: int = 5) -> float:
    """This machine's float32 matmul throughput: median over ``repeats`` n×n @ n×n products."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(MATMUL_SIZE, MATMUL_SIZE, generator=generator).to(device) for _ in range(2))
    seconds = []
    for _ in range(repeats + 1):  # the first one warms up
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return 2 * MATMUL_SIZE**3 / statistics.median(seconds[1:])


def timed(run: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def engine_row(
    engine: str,
    batch_size: int,
    data: Mnist,
    device: torch.device,
    log_dir: str | None = None,
    compile: bool = False,
    path: str | None = None,
) -> Row:
    """Our engine exactly as ``gd-torch train`` runs it: its epoch, per-step checks (and the
    TensorBoard callback at its defaults, images aside: they have their own row); with
    ``compile``, on the fast path, whose steps are ``path``'s (``native``, ``inductor``)."""
    log = CountedTensorBoard() if log_dir else None
    run, run_epoch, order_generator = bench_run.prepared_run(
        engine, batch_size, data, device, compile, log, log_dir, path
    )

    def epoch() -> None:
        run_epoch(shuffled_order(len(data.train), order_generator))
        run.history = [{"seconds": 0.0, "test_accuracy": 0.0}]
        run.notify("on_epoch_end")  # the per-epoch scalars of a real run (epoch 1: no histograms)

    steps = {"native": ", native steps", "inductor": ", compiled by Inductor"}
    name = (
        engine
        + (steps[path or "inductor"] if compile else "")
        + (", TensorBoard log on" if log else "")
    )
    return Row(name, batch_size, lambda: timed(epoch, device), len(data.train), log=log)


def tutorial_row(options: RunOptions, batch_size: int, examples: int, device: torch.device) -> Row:
    """The common tutorial pipeline, timed on its first ``examples`` images and scaled to a whole
    epoch:

    MNIST(transform=ToTensor()) + DataLoader(shuffle=True) + nn.Sequential + nn.MSELoss +
    autograd + SGD.
    """
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(
        options.data_root, train=True, download=options.download, transform=transforms.ToTensor()
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    settings = TrainingSettings()
    layers = [nn.Flatten()]
    for n_in, n_out in zip(settings.layer_sizes, settings.layer_sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    model = nn.Sequential(*layers).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate)
    loss_function = nn.MSELoss()
    steps = max(1, min(len(loader), examples // batch_size))

    def part_of_epoch() -> None:
        for step, (images, labels) in enumerate(loader, start=1):
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = loss_function(model(images), one_hot(labels))
            loss.backward()
            optimizer.step()
            if step == steps:
                break

    return Row(
        f"tutorial pipeline ({steps * batch_size:,} images, scaled)",
        batch_size,
        lambda: timed(part_of_epoch, device) * len(loader) / steps,
        len(dataset),
    )


def images_row(data: Mnist, device: torch.device, log_dir: str) -> Row:
    """What ``--image-every`` adds when it draws: the first-layer weights (two scalings) and the
    confusion matrix."""
    network = Network().to(device)
    log = TrainingLog(log_dir)
    return Row(
        "TensorBoard images (one drawing)",
        None,
        lambda: timed(lambda: (log.images(1, 1, network, data.test), log.wait()), device),
        len(data.test),
    )


def histograms_row(data: Mnist, device: torch.device, log_dir: str) -> Row:
    """One set of histograms: each layer's weights and biases, and the gradient of the cost
    over the first GRADIENT_SAMPLE training digits."""
    network = Network().to(device)
    log = TrainingLog(log_dir)
    sample = data.train[:GRADIENT_SAMPLE]
    return Row(
        "TensorBoard histograms (one set)",
        None,
        lambda: timed(
            lambda: (log.histograms(1, network, sample, "quadratic"), log.wait()), device
        ),
        len(sample),
    )


def run_ends_row(data: Mnist, device: torch.device, log_dir: str) -> Row:
    """What the log writes once per run, each time into a new run directory: at its start
    (experiment, settings, graph, step 0) and at its end (PR curves, projector)."""
    settings = TrainingSettings()
    options = RunOptions()  # the data is given; the default --image-every: step 0 draws its images
    network = Network().to(device)
    runs = iter(range(1_000_000))

    def once() -> None:
        run = Run(
            settings,
            options,
            network,
            sgd(settings)(network),
            data,
            device,
            Path(log_dir) / f"run{next(runs)}",
            RunGuard(settings, options.log_every, device, None),
            [TensorBoard()],
            outcome="finished",
        )
        run.notify("on_run_start")
        run.history = [{"epoch": 1, "step": 0, "test_accuracy": 0.0}]
        run.notify("on_run_end")

    return Row(
        "TensorBoard start and end of a run (once)",
        None,
        lambda: timed(once, device),
        len(data.test),
    )


def evaluation_row(data: Mnist, device: torch.device) -> Row:
    """What ``gd-torch train`` adds per epoch: cost and accuracy on the training and test sets,
    as a default run measures them (the native forward pass where a default run takes the native
    steps, the reference ``evaluate`` elsewhere)."""
    network = Network().to(device)
    measure = (
        compiled.native_evaluation(network, "quadratic")
        if native.takes("manual", torch.float32, device)
        else lambda split: evaluate(network, split, "quadratic")
    )

    def epoch() -> None:
        for split in (data.train, data.test):
            measure(split)

    return Row(
        "evaluation, train + test sets",
        None,
        lambda: timed(epoch, device),
        len(data.train) + len(data.test),
    )


def bench_device(
    options: RunOptions,
    device: torch.device,
    batch_sizes: list[int],
    repeats: int,
    tutorial_examples: int,
    log_dir: str,
    progress,
    compile: bool = True,
) -> dict:
    """The rows for one device, timed; returns the JSON-ready report."""
    settings = TrainingSettings()
    data = prepare_data(settings, options, device)
    if not all(1 <= batch_size <= len(data.train) for batch_size in batch_sizes):
        raise GdTorchError(
            f"--batch-sizes must lie between 1 and the {len(data.train):,} training images"
        )
    rows = []
    for batch_size in batch_sizes:
        rows.append(tutorial_row(options, batch_size, tutorial_examples, device))
        rows += [engine_row(engine, batch_size, data, device) for engine in ("autograd", "manual")]
        if compile:  # compiling happens in the warm-up round
            rows += [
                engine_row(engine, batch_size, data, device, compile=True, path=path)
                for engine, path in bench_run.COMPILED
                if device.type == "cpu" or path == "inductor"
            ]
    logged = engine_row(settings.engine, batch_sizes[0], data, device, log_dir)
    rows.append(logged)
    images = images_row(data, device, log_dir)
    histograms = histograms_row(data, device, log_dir)
    run_ends = run_ends_row(data, device, log_dir)
    rows += [images, histograms, run_ends, evaluation_row(data, device)]
    throughputs = []
    for number in range(repeats + 1):  # round 0 warms up
        for row in rows:
            seconds = row.epoch()
            if number:
                row.seconds.append(seconds)
            elif row.log:
                row.log.seconds = 0.0  # count the timed rounds only
        throughputs.append(matmul_flops_per_second(device))
        progress(f"round {number}/{repeats} done" if number else "warm-up done")

    throughput = statistics.median(throughputs[1:])
    logging = logged.log.seconds / repeats
    # a default run's epochs 1..RUN_EPOCHS: how many draw histograms and images
    histogram_epochs = sum(histograms_due(e, RUN_EPOCHS) for e in range(1, RUN_EPOCHS + 1))
    image_epochs = sum(
        options.image_every and (e % options.image_every == 0 or e == RUN_EPOCHS)
        for e in range(1, RUN_EPOCHS + 1)
    )
    rarer = (
        histograms.median * histogram_epochs + images.median * image_epochs + run_ends.median
    ) / RUN_EPOCHS
    flops = flops_per_example(settings.layer_sizes) * len(data.train)
    floor = flops / throughput
    tutorial = {row.batch_size: row.median for row in rows if row.name.startswith("tutorial")}
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "matmul_gflop_per_second": throughput / 1e9,
        "gflop_per_epoch": flops / 1e9,
        "floor_seconds_per_epoch": floor,
        "image_every": options.image_every,
        "run_epochs": RUN_EPOCHS,
        # scalars every epoch, counted where they are spent; the rarer logging amortised
        "logging_seconds_per_epoch": logging,
        "rarer_logging_seconds_per_epoch": rarer,
        "logging_overhead": (logging + rarer) / (statistics.fmean(logged.seconds) - logging),
        "rows": [
            {
                "name": row.name,
                "batch_size": row.batch_size,
                "seconds_per_epoch": row.median,
                "examples_per_second": row.examples / row.median,
                "times_floor": row.median / floor if row.batch_size else None,
                "speedup_over_tutorial": tutorial[row.batch_size] / row.median
                if row.batch_size in tutorial
                else None,
                "repetitions": row.seconds,
            }
            for row in rows
        ],
    }


def table(report: dict) -> str:
    lines = [
        f"\ndevice {report['device']}, {report['threads']} thread(s): "
        f"matmul {report['matmul_gflop_per_second']:.1f} GFLOP/s, "
        f"{report['gflop_per_epoch']:.2f} GFLOP per epoch "
        f"-> floor {report['floor_seconds_per_epoch']:.3f} s/epoch",
        f"{'':44}{'batch':>6}{'s/epoch':>10}{'examples/s':>12}{'x floor':>9}"
        f"{'x faster than tutorial':>24}",
    ]
    for row in report["rows"]:
        floor = f"{row['times_floor']:.1f}" if row["times_floor"] else "-"
        speedup = f"{row['speedup_over_tutorial']:.1f}" if row["speedup_over_tutorial"] else "-"
        lines.append(
            f"{row['name']:<44}{row['batch_size'] or '-':>6}{row['seconds_per_epoch']:>10.3f}"
            f"{row['examples_per_second']:>12,.0f}{floor:>9}{speedup:>24}"
        )
    lines.append(
        f"TensorBoard logging at its defaults adds {100 * report['logging_overhead']:+.1f}% to "
        f"the epoch ({1000 * report['logging_seconds_per_epoch']:.0f} ms in the log's calls "
        f"every epoch, and {1000 * report['rarer_logging_seconds_per_epoch']:.0f} ms for the "
        f"histograms, images every {report['image_every']} epochs, start and end of a "
        f"{report['run_epochs']}-epoch run, amortised)"
    )
    return "\n".join(lines)


def end_to_end_table(rows: list[dict]) -> str:
    lines = [
        "\nend to end on the CPU, each in a new process (gd_torch/tools/bench_run.py):",
        f"{'':44}{'batch':>6}{'seconds':>10}{'floor-epochs':>14}",
    ]
    for row in rows:
        if "test_accuracy" in row:
            accuracy = row["test_accuracy"]
            note = f"  (CPU {row['cpu_seconds']:.1f} s) "
            note += f"{100 * accuracy:.2f}%, " if accuracy is not None else ""
            note += row["sgd_steps"].split(" (")[0]
        else:
            note = f"  (first call {row['first_call']:.1f} s, its steps {row['steps']:.2f} s)"
        lines.append(
            f"{row['name']:<44}{row['batch_size']:>6}{row['seconds']:>10.1f}"
            f"{row['floor_epochs']:>14,.0f}{note}"
        )
    return "\n".join(lines)


def run_bench(
    data_root: str,
    download: bool = True,
    batch_sizes=(10, 100, 1000),
    repeats: int = 5,
    tutorial_examples: int = 10_000,
    threads: int = 1,
    devices=None,
    as_json: bool = False,
    out=sys.stdout,
    compile: bool = True,
    end_to_end: bool = True,
) -> dict:
    """Time every row on every device, print the table (or JSON) to ``out``; returns the report.
    ``end_to_end`` (with the CPU among the devices): also the whole default run and the compile
    of each engine at each batch size, in new processes (gd_torch.tools.bench_run)."""
    for name, value in (
        ("--repeats", repeats),
        ("--threads", threads),
        ("--tutorial-examples", tutorial_examples),
        *(("--batch-sizes", size) for size in batch_sizes),
    ):
        if value < 1:
            raise GdTorchError(f"{name} must be positive integers, not {value}")
    set_threads(threads)
    options = RunOptions(data_root=data_root, download=download, threads=threads)
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "network": "-".join(map(str, TrainingSettings().layer_sizes)),
        "repeats": repeats,
        "devices": [],
    }

    def progress(message):
        print(f"gd-torch bench: {message}", file=sys.stderr, flush=True)

    # each compiled row takes up to 3 shapes (steps per call, single steps, a smaller last batch):
    # past dynamo's limit of 8 per process the later rows would silently run eager, so the bench,
    # which compiles many, raises it
    shapes = 3 * 2 * len(batch_sizes) * len(devices)
    with (
        tempfile.TemporaryDirectory() as log_dir,
        torch._dynamo.config.patch(recompile_limit=max(8, shapes)),
    ):
        for name in devices:
            report["devices"].append(
                bench_device(
                    options,
                    resolve_device(name),
                    list(batch_sizes),
                    repeats,
                    tutorial_examples,
                    log_dir,
                    progress,
                    compile,
                )
            )
    cpu = [device for device in report["devices"] if device["device"] == "cpu"]
    if end_to_end and cpu:
        report["end_to_end"] = bench_run.end_to_end(
            data_root,
            download,
            threads,
            list(batch_sizes),
            cpu[0]["floor_seconds_per_epoch"],
            compile,
            progress,
        )
    report["load_average_after"] = os.getloadavg()[0]
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(
            f"gd-torch bench: {report['network']} network, torch {report['torch']}, "
            f"{report['cpu_count']} CPUs, "
            f"load average {report['load_average_before']:.1f} before "
            f"and {report['load_average_after']:.1f} after; "
            f"median of {repeats} epochs",
            file=out,
        )
        for device_report in report["devices"]:
            print(table(device_report), file=out)
        if "end_to_end" in report:
            print(end_to_end_table(report["end_to_end"]), file=out)
    return report
