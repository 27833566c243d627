"""Seed and learning-rate sweeps: K copies of the network trained as one batched computation, in
one process or sharded over torchrun's processes and machines.

    gd-torch sweep --num-seeds 16 --epochs 30                  # seeds 0..15 of the default run
    gd-torch sweep --seeds 0 1 2 --learning-rates 0.5 1.5 3.0  # 9 copies: each rate with each seed
    torchrun --nproc_per_node=2 -m gd_torch sweep --num-seeds 16   # 8 copies on each process
    gd-torch sweep --resume runs/<sweep directory>             # train the unfinished copies
    tensorboard --logdir runs/<sweep directory>                # a run per copy; compare in HPARAMS

Copy k is the run ``gd-torch train --seed s_k --learning-rate η_k`` (all other options the same)
would make: initial weights and batch order from its own ``seeded_generators(s_k)``, its own η_k
(and schedule). Each step takes every copy's own mini-batch at once, (K, B, 784), through the
stacked weights of ``gd_torch.core.stacked``. The copies differ from single runs only by the
rounding of batched instead of single matmuls (float32); SGD being chaotic, that difference stays
at rounding level for hundreds of steps and grows over thousands.

Under torchrun, rank r trains the r-th share of whole copies (gd_torch.tools.shards) and every
rank returns every copy; ``train_copies`` is that for any list of per-copy settings.

A copy that diverges (a cost that is not finite, weights beyond ±1e20: the checks of a single
run, ``gd_torch.core.guard``) stops alone: it is marked diverged in the printed log, its own
TensorBoard log (TEXT tab) and the summary, keeps its last good checkpoint, and takes no more
steps (its η is 0), while the other copies train on and are saved.
"""

import contextlib
import csv
import dataclasses
import datetime
import io
import math
import resource
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gd_torch.core import distributed, native
from gd_torch.core.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.core.compiled import NATIVE_AUTO_STEPS, STEPS_PER_CALL
from gd_torch.core.data import Mnist, shuffled_order
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import measure
from gd_torch.core.files import write_file, writing_run_directory
from gd_torch.core.guard import Diverged, Interrupted, RunGuard, divergence_hint, sane_copies
from gd_torch.core.loop import (
    prepare_data,
    resolve_device,
    seeded_generators,
    set_threads,
)
from gd_torch.core.memory import require_network_memory
from gd_torch.core.model import Network
from gd_torch.core.naming import group_labels, sweep_name, varying
from gd_torch.core.run_dir import create_run_directory, library_versions, write_json
from gd_torch.core.settings import RunOptions, TrainingSettings, describe, to_dict
from gd_torch.core.sgd import PlannedSGD, set_learning_rate
from gd_torch.core.stacked import (
    STACKED_ENGINES,
    NativeStackedSteps,
    StackedNetworks,
    StackedSGD,
    evaluate_copies,
)
from gd_torch.core.trajectory import FILE_NAME, start_trajectory
from gd_torch.core.weight_space import point_of
from gd_torch.dashboard.tensorboard import (
    TrainingLog,
    drawing_thread,
    start_group,
    view_command,
)
from gd_torch.tools import shards

FINAL_METRICS = ("test_accuracy", "best_test_accuracy", "test_cost", "train_cost")
PER_COPY = ("seed", "learning_rate", "lr_schedule", "init")  # all else is shared by one stack
# How long a rank done with its share waits for the others: a crashed rank is noticed at once (its
# connections close), and a slow one (more copies, a slower machine) is not a failure.
GATHER_TIMEOUT = datetime.timedelta(days=7)
FILES_PER_COPY = (
    3  # open at once: its TensorBoard events file, its lock, a checkpoint being written
)


@dataclass
class CopyResult:
    """One copy trained: what ``gd-torch train`` with its settings gives, to rounding."""

    settings: TrainingSettings
    run_dir: Path  # on the machine of the rank that trained it
    history: list[dict]  # its per-epoch metrics, as TrainResult.history
    network: Network  # trained, on the CPU
    diverged_at: int | None = None  # the step at which it diverged, and stopped alone

    @property
    def final(self) -> dict:
        return final_metrics(self.history, self.diverged_at is not None)


@dataclass
class SweepResult:
    sweep_dir: Path
    copies: list[CopyResult | None]  # in the order of the plan; None: did not finish
    failure: GdTorchError | None = None  # why some did not (``sweep`` raises it after its summary)
    seconds: float = 0.0  # wall time on this rank, from joining the others to the gathered copies

    @property
    def settings(self) -> list[TrainingSettings]:  # copy k's: the `gd-torch train` run it equals
        return [copy.settings for copy in self.copies]

    @property
    def networks(self) -> list[Network]:
        return [copy.network for copy in self.copies]

    @property
    def histories(self) -> list[list[dict]]:  # copy k's per-epoch metrics
        return [copy.history for copy in self.copies]

    @property
    def finals(self) -> list[dict]:  # FINAL_METRICS, NaN when the copy diverged
        return [copy.final for copy in self.copies]


def sweep_settings(base: TrainingSettings, seeds, learning_rates=None) -> list[TrainingSettings]:
    """One config per (learning rate, seed), rates outermost; ``learning_rates`` defaults to the
    base one."""
    seeds, learning_rates = list(seeds), list(learning_rates or [base.learning_rate])
    for name, values in (("seeds", seeds), ("learning-rates", learning_rates)):
        if not values or len(set(values)) != len(values):
            raise GdTorchError(
                f"--{name} must be distinct values, at least one (got {' '.join(map(str, values))})"
            )
        for value in values:  # each as gd-torch train would check it
            try:
                dataclasses.replace(base, **{name.rstrip("s").replace("-", "_"): value})
            except GdTorchError as error:
                raise GdTorchError(f"--{name} {value}: {error}") from None
    return [
        dataclasses.replace(base, seed=seed, learning_rate=rate)
        for rate in learning_rates
        for seed in seeds
    ]


def unsupported(options: RunOptions, base: TrainingSettings | None = None) -> list[str]:
    """The options given (and, with ``base``, its settings) that a sweep cannot batch: its
    copies share one loop of plain stacked SGD steps, which --compile asks to be the native
    steps (the manual engine's; the device is checked when the sweep starts)."""
    given = {
        "--time-budget": options.time_budget,
        "--momentum": base is not None and base.momentum,
        "--compile with this engine or dtype": options.compile
        and base is not None
        and not native.takes(base.engine, base.torch_dtype),
    }
    return [option for option, value in given.items() if value]


def steps_taken_by(
    base: TrainingSettings, options: RunOptions, device: torch.device, copy_steps: int
) -> tuple[bool, str]:
    """Whether a stack takes the native steps, and why (for its ``SGD steps:`` line): asked
    with --compile, refused with --no-compile, else taken when its copies' SGD steps together
    earn the build, as a single run's (gd_torch.core.compiled.choose)."""
    if options.compile is False:
        return False, "reference loop (--no-compile)"
    if not native.takes(base.engine, base.torch_dtype, device):
        return False, "reference loop (the native steps are the manual engine's, on the CPU)"
    if options.compile:
        return True, "native C++ steps (--compile)"  # built already: train_copies
    if options.dry_run or copy_steps < NATIVE_AUTO_STEPS:
        return False, (
            f"reference loop ({copy_steps:,} copy-steps do not earn the compile; --compile to "
            "force it)"
        )
    try:
        native.library()  # built once per machine; a sweep left to choose never fails on it
    except native.NativeUnavailable as failure:
        return False, f"reference loop (the native steps failed to build: {failure})"
    return True, (
        f"native C++ steps ({copy_steps:,} copy-steps earn the compile; --no-compile for the "
        "reference)"
    )


def first_not_finite(costs: Tensor) -> dict[int, int]:
    """{k: the first row of ``costs`` (steps, K) whose C_k is not finite}, for each such copy."""
    bad = ~costs.isfinite()
    return {k: int(bad[:, k].nonzero()[0]) for k in bad.any(dim=0).nonzero().flatten().tolist()}


def sweep(
    base: TrainingSettings,
    options: RunOptions,
    seeds,
    learning_rates=None,
    data: Mnist | None = None,
    out=sys.stdout,
) -> SweepResult:
    """Train every (learning rate, seed) copy of ``base`` at once; logs one run per copy under a
    new sweep directory, and writes the summary there."""
    configs = sweep_settings(base, seeds, learning_rates)
    name = (options.run_name or sweep_name(base, len(configs))) + (
        "_dry-run" if options.dry_run else ""
    )
    return summarize(train_copies(configs, options, name, data=data, out=out), options, out)


def resume_sweep(
    sweep_dir: str | Path, options: RunOptions, data: Mnist | None = None, out=sys.stdout
) -> SweepResult:
    """Train the copies of a sweep that did not finish (from their last epoch's checkpoint when
    this machine holds one), keep the others, and write the summary of all."""
    return summarize(
        train_copies(None, options, resume=sweep_dir, data=data, out=out), options, out
    )


def train_copies(
    configs: list[TrainingSettings] | None,
    options: RunOptions,
    name: str = "copies",
    *,
    resume: str | Path | None = None,
    data: Mnist | None = None,
    out=sys.stdout,
    command: str = "gd-torch sweep",
) -> SweepResult:
    """Train each copy of ``configs`` (the settings of one ``gd-torch train`` run each) in a new
    sweep directory ``<runs_dir>/<name>_<time>``, or the unfinished copies of the sweep directory
    ``resume`` (whose sweep.json then gives the copies).

    Copies that share their shapes and settings (all but PER_COPY) and their progress are trained
    as one stacked computation. Under torchrun every rank trains its share of whole copies and
    every rank returns every copy; a copy that did not finish is None, and ``failure`` says which
    ranks held such copies and why (``command`` names what continues it).
    """
    refused = unsupported(options)
    if refused:
        raise GdTorchError(
            f"{refused[0]} is not supported by gd-torch sweep: train that run alone with "
            "gd-torch train"
        )
    if options.runs_dir is None:
        raise GdTorchError("a sweep writes its copies' runs: give it a runs_dir")
    started = time.perf_counter()
    set_threads(options.threads)  # refuses more threads than CPUs
    device = distributed.start(resolve_device(options.device), GATHER_TIMEOUT)
    leader, rank, ranks = distributed.is_leader(), shards.rank(), distributed.world_size()

    def plan() -> list[TrainingSettings]:
        copies = list(configs or [])
        if resume is not None:
            copies, saved = shards.read_plan(resume)
            if saved.dry_run != options.dry_run:
                kind = "a dry run" if saved.dry_run else "a full run"
                raise GdTorchError(f"--dry-run cannot change when resuming: {resume} is {kind}")
        check_copies(copies)
        return copies

    configs = shards.exchange(shards.together(plan if leader else list))[0]  # rank 0's plan
    if options.compile and not all(native.takes(c.engine, c.torch_dtype, device) for c in configs):
        raise GdTorchError(
            "--compile in a sweep takes the native steps, which are the manual engine's on the "
            "CPU in float32 or float64: sweep without --compile"
        )
    if options.compile:
        try:
            native.library()
        except native.NativeUnavailable as failure:
            raise GdTorchError(
                f"--compile: the native steps failed to build ({failure}); sweep with --no-compile"
            ) from failure
    widest = max(configs, key=lambda config: config.batch_size)  # must fit the training set
    data = shards.together(lambda: prepare_data(widest, options, device, data))
    require_network_memory(
        widest.layer_sizes, widest.torch_dtype, device, widest.batch_size, copies=len(configs)
    )
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files != resource.RLIM_INFINITY and FILES_PER_COPY * len(configs) + 64 > open_files:
        raise GdTorchError(
            f"{len(configs):,} copies keep {FILES_PER_COPY * len(configs):,} files open, and this "
            f"process may open {open_files:,} (ulimit -n): sweep fewer seeds or rates at once"
        )

    def sweep_directory() -> str:
        if resume is not None:
            return str(resume)
        created = create_run_directory(options.runs_dir, name)
        shards.write_plan(created, configs, options)
        versions = library_versions() | {"device": str(device)}
        write_json(created / "versions.json", versions)
        untrained = Network(configs[0].layer_sizes, configs[0].init, dtype=configs[0].torch_dtype)
        copy_options = dataclasses.replace(options, runs_dir=str(created), run_name="")
        start_group(created, configs, varying(configs), copy_options, versions, untrained, data)
        return str(created)

    sweep_dir = Path(shards.exchange(shards.together(sweep_directory if leader else str))[0])
    epochs = 1 if options.dry_run else configs[0].epochs
    found = shards.copy_directories(sweep_dir, configs) if resume is not None else {}
    checkpoints = {k: shards.epoch_checkpoint(path) for k, path in found.items()}
    finished_here = [k for k, state in checkpoints.items() if state and state["epoch"] >= epochs]
    reporter = {}  # the lowest rank holding a finished copy reports it
    for r, finished in enumerate(shards.exchange(finished_here)):
        for k in finished:
            reporter.setdefault(k, r)
    pending = [k for k in range(len(configs)) if k not in reporter]
    held = [[pending[i] for i in shards.share(len(pending), r, ranks)] for r in range(ranks)]
    if leader:
        resumed = f"resuming: {len(reporter)} of {len(configs)} copies had finished"
        resumed = resumed if resume is not None else ""
        print(
            header(configs, options, data, device, sweep_dir, held, resumed), file=out, flush=True
        )

    kept = {
        k: payload(found[k], checkpoints[k]["history"], checkpoints[k]["model"])
        for k in finished_here
        if reporter[k] == rank
    }  # finished before: reported as they are
    with (
        RunGuard(configs[0], options.log_every, device, None) as guard,  # Ctrl-C, SIGTERM
        writing_run_directory(sweep_dir) if leader else contextlib.nullcontext(),  # one writer
    ):
        report = train_share(
            held[rank], configs, found, checkpoints, sweep_dir, options, data, device, guard, out
        )
        report["copies"] |= kept
        reports = shards.gather_reports(report)  # under the guard: a signal waits for it
    return collect(configs, held, reports, sweep_dir, time.perf_counter() - started, command)


def train_share(
    indices, configs, found, checkpoints, sweep_dir, options, data, device, guard, out=sys.stdout
) -> dict:
    """This rank's copies (``indices`` into ``configs``), stack by stack, each from its epoch
    checkpoint in its run directory when this machine holds them (``found``, ``checkpoints``);
    returns what the rank reports: every copy it finished, and the error that stopped it."""
    copies, error = {}, None
    prefix = f"rank {shards.rank()}: " if distributed.world_size() > 1 else ""
    names = group_labels(configs)  # lr1.5_s03: what varies, then the seed; no time of their own
    try:
        for stack in stacks(indices, configs, checkpoints):
            run_dirs = [
                found.get(k) or copy_directory(sweep_dir, names[k], configs[k], options)
                for k in stack
            ]
            trained = train_stacked(
                [configs[k] for k in stack],
                run_dirs,
                [checkpoints.get(k) for k in stack],
                options,
                data,
                device,
                guard,
                out,
                prefix,
            )
            copies |= dict(zip(stack, trained))
    except Exception as failure:  # reported by rank 0 with the copies it held; the rest kept
        if not isinstance(failure, GdTorchError):
            traceback.print_exc()
        error = (shards.describe_error(failure), getattr(failure, "exit_code", 1))
    return {"host": shards.host(), "copies": copies, "error": error}


def collect(configs, held, reports, sweep_dir, seconds, command) -> SweepResult:
    """Every copy from the ranks' reports; for the copies that none reported, the failure that
    names the ranks that held them and why, and the command that continues the sweep."""
    results = [None] * len(configs)
    for report in filter(None, reports):
        for k, values in report["copies"].items():
            network = Network(configs[k].layer_sizes, configs[k].init, dtype=configs[k].torch_dtype)
            network.load_state_dict(values["model"])
            results[k] = CopyResult(
                configs[k], Path(values["run_dir"]), values["history"], network, values["diverged"]
            )
    finished = {k for k, result in enumerate(results) if result is not None}
    lost = shards.missing_copies(held, reports, finished)
    if not lost:
        return SweepResult(sweep_dir, results, seconds=seconds)
    codes = [report["error"][1] for report in filter(None, reports) if report["error"]]
    failure = GdTorchError(
        f"{'; '.join(lost)}; {len(finished)} of {len(configs)} copies finished"
        + (" (summary.csv)" if finished else "")
        + f"; continue with: {command} --resume {sweep_dir}"
        + (" (under torchrun)" if len(held) > 1 else "")
    )
    failure.exit_code = codes[0] if codes else 1  # 128 + the signal when stopped by one
    return SweepResult(sweep_dir, results, failure, seconds)


def check_copies(configs: list[TrainingSettings]) -> None:
    """What one sweep can train: distinct copies of plain SGD sharing their data."""
    if not configs:
        raise GdTorchError("a sweep needs at least one copy")
    if len(set(configs)) != len(configs):
        raise GdTorchError("the copies of a sweep must differ in their settings")
    if any(config.momentum for config in configs):
        raise GdTorchError(
            "--momentum is not supported by gd-torch sweep: train that run alone "
            "with gd-torch train"
        )
    for name in ("validation_size", "dtype", "epochs"):
        values = {getattr(config, name) for config in configs}
        if len(values) > 1:
            raise GdTorchError(
                f"the copies of a sweep share --{name.replace('_', '-')} (got {sorted(values)})"
            )


def stacks(
    indices: list[int], configs: list[TrainingSettings], checkpoints: dict[int, dict | None]
) -> list[list[int]]:
    """``indices`` grouped into stacks that train as one computation: the same settings but for
    PER_COPY, and the same epochs done."""
    defaults = TrainingSettings()
    groups = {}
    for k in indices:
        shared = dataclasses.replace(
            configs[k], **{name: getattr(defaults, name) for name in PER_COPY}
        )
        done = checkpoints[k]["epoch"] if checkpoints.get(k) else 0
        groups.setdefault((shared, done), []).append(k)
    return list(groups.values())


def copy_directory(
    sweep_dir: Path, name: str, config: TrainingSettings, options: RunOptions
) -> Path:
    """A new run directory ``sweep_dir/name`` for the copy (its time is the sweep's), with its
    config.json."""
    run_dir = create_run_directory(sweep_dir, name, timestamp=False)
    copy_options = dataclasses.replace(options, runs_dir=str(sweep_dir), run_name="")
    write_json(
        run_dir / "config.json", {"settings": to_dict(config), "options": to_dict(copy_options)}
    )
    return run_dir


def payload(run_dir: Path, history: list[dict], model: dict, diverged: int | None = None) -> dict:
    """What a rank reports of a finished copy: its run, history and weights (on the CPU), and the
    step at which it diverged, if it did."""
    return {"run_dir": str(run_dir), "history": history, "model": model, "diverged": diverged}


def header(configs, options, data, device, sweep_dir, held, resumed) -> str:
    """What the sweep trains, where, and which rank trains which copies."""
    base = configs[0]
    rates_shown = " ".join(sorted({f"{c.learning_rate:g}" for c in configs}, key=float))
    seeds_shown = " ".join(sorted({str(c.seed) for c in configs}, key=int))
    lines = [
        f"gd-torch sweep: {len(configs)} copies of the {'-'.join(map(str, base.layer_sizes))} "
        f"network as one batched computation (learning rates {rates_shown}; seeds {seeds_shown}), "
        f"{len(data.train):,} training images, device {device}, sweep {sweep_dir}"
    ]
    if resumed:
        lines.append(resumed)
    if len(held) > 1:
        lines.append(
            f"{len(held)} processes: "
            + ", ".join(
                f"rank {r} trains copies {shards.copy_ranges(share) or 'none'}"
                for r, share in enumerate(held)
            )
        )
    return "\n".join([*lines, describe(base, options)])


def train_stacked(
    configs: list[TrainingSettings],
    run_dirs: list[Path],
    checkpoints: list[dict | None],
    options: RunOptions,
    data: Mnist,
    device: torch.device,
    guard: RunGuard,
    out=sys.stdout,
    prefix: str = "",
) -> list[dict]:
    """Copies of one stack (``stacks``) trained together, each from its epoch checkpoint or from
    the start; returns what ``payload`` reports of each."""
    base = configs[0]
    epochs = 1 if options.dry_run else base.epochs
    generators = [
        seeded_generators(config.seed) for config in configs
    ]  # [(initial weights, batch order)]
    networks = [
        Network(config.layer_sizes, config.init, weights, config.torch_dtype).to(device)
        for config, (weights, _) in zip(configs, generators)
    ]
    histories = [[] for _ in configs]
    done = step = 0
    for network, (_, order), history, checkpoint in zip(
        networks, generators, histories, checkpoints
    ):
        if checkpoint is not None:  # continue after its last epoch, as gd-torch train --resume
            network.load_state_dict(checkpoint["model"])
            order.set_state(checkpoint["batch_order_state"])
            history += checkpoint["history"]
            done, step = checkpoint["epoch"], checkpoint["step"]
    stacked = StackedNetworks(networks)
    compute_gradients = STACKED_ENGINES[base.engine]
    best_by = "test_accuracy" if data.validation is None else "validation_accuracy"
    copy_options = dataclasses.replace(options, runs_dir=str(run_dirs[0].parent), run_name="")

    drawing = drawing_thread("sweep logs")  # the copies' drawings and histograms, one thread
    logs = [
        TrainingLog(
            run_dir, purge_step=step + 1 if any(run_dir.glob("events.*")) else None, thread=drawing
        )
        for run_dir in run_dirs
    ]  # in a directory used before, what was logged after the checkpoint is dropped
    trajectories = [
        start_trajectory(run_dir, network, checkpoint is not None, step, done)
        for run_dir, network, checkpoint in zip(run_dirs, networks, checkpoints)
    ]  # one per copy, as gd-torch train keeps it
    train = data.train
    when = dict(cost=base.cost, last_epoch=epochs, image_every=options.image_every)
    diverged: dict[int, int] = {}  # copy k: the step at which it diverged
    cost_every = 1 if device.type == "cpu" else options.log_every  # as a single run's guard
    copy_steps = len(configs) * (epochs - done) * math.ceil(len(train) / base.batch_size)
    native_steps, why = steps_taken_by(base, options, device, copy_steps)
    print(f"{prefix}SGD steps of {len(configs)} copies: {why}", file=out, flush=True)
    inputs = native.nonzero_inputs(train.images) if native_steps else None

    def stop_diverged(sane: Tensor, what: str, epoch: int, at: int | None = None) -> None:
        """Stop each copy that is not ``sane``, alone, at step ``at`` (default: this one); the
        others train on."""
        for k in (~sane).nonzero().flatten().tolist():
            if k in diverged:
                continue
            diverged[k] = at = step if at is None else at
            config, last = configs[k], run_dirs[k] / "last.pt"
            kept = (
                f"its last good checkpoint, {last}, is kept"
                if last.exists()
                else "no checkpoint had been written yet"
            )
            message = (
                f"copy η {config.learning_rate:g} seed {config.seed} diverged at step {at} "
                f"(epoch {epoch}): {what}; {kept}; the other copies train on. "
                f"{divergence_hint(config)}"
            )
            print(prefix + message, file=out, flush=True)
            logs[k].writer.add_text("diverged", message, at)
            logs[k].writer.flush()

    def until_due() -> int:
        """Steps from this one to the next that is logged or snapshotted: where a call of native
        steps ends, so that the weights and gradients there are those of that step."""
        due = (
            [options.log_every, options.snapshot_every]
            if options.snapshot_every
            else [options.log_every]
        )
        return min(every - step % every for every in due)

    def end_of_steps(batch_costs: Tensor, epoch: int) -> None:
        """After the steps up to ``step`` (the last one's C_k in ``batch_costs``): a snapshot, a
        signal, the log, each when due."""
        if options.snapshot_every and step % options.snapshot_every == 0:
            for trajectory, point in zip(trajectories, stacked.points()):
                trajectory.add(step, epoch - 1, point)
        if guard.stop_signal is not None:  # Ctrl-C, SIGTERM: the last epoch's checkpoints
            raise Interrupted(
                f"stopped by {signal.Signals(guard.stop_signal).name} in epoch {epoch}",
                guard.stop_signal,
            )
        if step % options.log_every == 0:
            stop_diverged(
                sane_copies(list(stacked.parameters())),
                "some weights or biases are not finite or beyond ±1e20",
                epoch,
            )
            norms = stacked.gradient_norms().tolist()
            for k, (log, *values) in enumerate(
                zip(logs, batch_costs.tolist(), norms, rates.tolist())
            ):
                if k not in diverged:
                    log.batch(step, *values)

    locks = contextlib.ExitStack()  # each copy's run directory is locked while it is written
    try:
        for run_dir in run_dirs:
            locks.enter_context(writing_run_directory(run_dir))
        if done == 0:  # step 0: the untrained copies
            untrained = measure(lambda split: evaluate_copies(stacked, split, base.cost), data)
            for config, run_dir, network, log, metrics in zip(
                configs, run_dirs, networks, logs, untrained
            ):
                log.session_start(config, run_dir.name)
                log.layout()
                log.epoch_end(0, 0, metrics, network, data, **when)
        for epoch in range(done + 1, epochs + 1):
            started = time.perf_counter()
            alive = torch.tensor([k not in diverged for k in range(len(configs))], device=device)
            rates = (
                torch.tensor(
                    [config.learning_rate_at(epoch) for config in configs],
                    device=device,
                    dtype=base.torch_dtype,
                )
                * alive
            )  # η_k, (K,); 0 for a diverged copy, which takes no more steps
            decay_biases = base.weight_decay_on == "all"
            stacked_sgd = StackedSGD(stacked, rates, base.weight_decay, decay_biases)
            orders = torch.stack([shuffled_order(len(train), order) for _, order in generators])
            orders = orders.to(device)  # (K, N): copy k's examples in its SGD order
            taken = 0  # how many of them the native steps take
            if inputs is not None:  # native steps: the full batches, STEPS_PER_CALL to a call
                epoch_steps = NativeStackedSteps(
                    stacked,
                    inputs,
                    train.targets,
                    orders,
                    base.batch_size,
                    rates,
                    base.weight_decay,
                    base.cost,
                    decay_biases,
                )
                start, taken = 0, epoch_steps.full_batches * base.batch_size
                while start < epoch_steps.full_batches:
                    stop = min(
                        start + STEPS_PER_CALL, epoch_steps.full_batches, start + until_due()
                    )
                    epoch_steps.steps(start, stop)
                    costs, first = epoch_steps.costs[start:stop], step
                    step += stop - start
                    if not math.isfinite(costs.sum().item()):  # as one sum a step, below
                        for k, at in first_not_finite(costs).items():
                            stop_diverged(
                                torch.arange(len(configs)) != k,
                                "its batch cost is not finite",
                                epoch,
                                first + at + 1,
                            )
                    end_of_steps(costs[-1], epoch)
                    start = stop
            # the batches left to the reference loop, copy k's in row k, (K, B) each (none when
            # none are left, where split would give one empty batch)
            left = orders[:, taken:]
            batches = left.split(base.batch_size, dim=1) if left.numel() else ()
            for indices in batches:  # every batch on the reference loop, else a smaller last one
                flat = indices.flatten()
                images = train.images.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 784)
                targets = train.targets.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 10)
                batch_costs = compute_gradients(stacked, images, targets, base.cost)  # (K,)
                stacked_sgd.step()
                step += 1
                if step % cost_every == 0 and not math.isfinite(batch_costs.sum().item()):
                    # a non-finite C_k makes Σ_k C_k non-finite: one sum a step, and the copies'
                    # own checks only then (they decide; an overflowing sum stops no copy)
                    stop_diverged(batch_costs.isfinite(), "its batch cost is not finite", epoch)
                end_of_steps(batch_costs, epoch)
            measured = measure(
                lambda split: evaluate_copies(stacked, split, base.cost), data
            )  # all K at once
            gradients = [p.grad for p in stacked.parameters() if p.grad is not None]
            stop_diverged(
                sane_copies([*stacked.parameters(), *gradients])
                & torch.tensor([math.isfinite(m["train_cost"]) for m in measured], device=device),
                "its weights, biases, gradients or training cost are not finite or beyond ±1e20",
                epoch,
            )  # before the epoch's checkpoints, as a single run's check_epoch
            seconds = time.perf_counter() - started  # for all K copies together
            for k, (config, network, log) in enumerate(zip(configs, networks, logs)):
                if k in diverged:
                    continue
                metrics = measured[k] | {
                    "seconds": seconds,
                    "learning_rate": config.learning_rate_at(epoch),
                }
                stacked.copy_into(k, network)
                trajectories[k].add(step, epoch, point_of(network))
                trajectories[k].save(run_dirs[k] / FILE_NAME)
                best = max([metrics[best_by], *(h["best_accuracy"] for h in histories[k])])
                histories[k].append({"epoch": epoch, "step": step, "best_accuracy": best} | metrics)
                best_test = max(h["test_accuracy"] for h in histories[k])
                log.epoch_end(
                    step, epoch, metrics | {"best_test_accuracy": best_test}, network, data, **when
                )
                optimizer = PlannedSGD(config, network)  # as `gd-torch train`'s, at this epoch
                set_learning_rate(optimizer.param_groups, config, epoch)
                save_checkpoint(
                    run_dirs[k] / "last.pt",
                    training_checkpoint(  # resumable with --resume
                        network,
                        optimizer.state_dict(),
                        torch.optim.SGD.__name__,
                        config,
                        copy_options,
                        epoch=epoch,
                        step=step,
                        batch_order_state=generators[k][1].get_state(),
                        batches_done=0,
                        best_accuracy=best,
                        best_by=best_by,
                        history=histories[k],
                    ),
                )
            finals = [final_metrics(h, k in diverged) for k, h in enumerate(histories)]
            print(
                prefix + epoch_line(epoch, epochs, configs, finals, seconds), file=out, flush=True
            )
        for k, (network, log) in enumerate(zip(networks, logs)):
            if k not in diverged:
                log.final(step, network, data.test)
            log.session_end("diverged" if k in diverged else "finished")
    finally:  # every log closed, and the locks let go, even after one of them fails
        with contextlib.ExitStack() as closing:
            closing.callback(locks.close)
            closing.callback(drawing.shutdown)
            for log in logs:
                closing.callback(log.close)
    return [
        payload(run_dir, history, network.cpu().state_dict(), diverged.get(k))
        for k, (run_dir, history, network) in enumerate(zip(run_dirs, histories, networks))
    ]


def summarize(result: SweepResult, options: RunOptions, out=sys.stdout) -> SweepResult:
    """Rank 0 writes summary.csv and summary.md of the copies that finished; then the sweep's
    failure, if it has one, is raised (on every rank)."""
    finished = [copy for copy in result.copies if copy is not None]
    if distributed.is_leader() and finished:
        table = write_summary(
            result.sweep_dir,
            [copy.settings for copy in finished],
            [copy.run_dir for copy in finished],
            [copy.final for copy in finished],
            {
                k: copy.diverged_at
                for k, copy in enumerate(finished)
                if copy.diverged_at is not None
            },
        )
        processes = distributed.world_size()
        ends = [copy.history[-1] for copy in finished if copy.history] or [dict(step=0, epoch=0)]
        steps, epochs = max(end["step"] for end in ends), max(end["epoch"] for end in ends)
        print(
            f"{table}\n{len(finished)} copies in {result.seconds:.1f} s"
            + (f" on {processes} processes" if processes > 1 else "")
            + f"; summary in {result.sweep_dir / 'summary.md'} and summary.csv; compare the "
            f"runs with: {view_command(result.sweep_dir, steps, epochs, options)}",
            file=out,
            flush=True,
        )
    if result.failure is not None:
        raise result.failure
    diverged = {copy.diverged_at for copy in finished if copy.diverged_at is not None}
    if finished and all(copy.diverged_at is not None for copy in finished):
        raise Diverged(
            f"every copy diverged (at steps {', '.join(map(str, sorted(diverged)))}); "
            f"the summary is in {result.sweep_dir / 'summary.md'}. "
            + divergence_hint(min(result.settings, key=lambda config: config.learning_rate))
        )
    return result


def final_metrics(history: list[dict], diverged: bool = False) -> dict:
    """FINAL_METRICS of a copy's last epoch; NaN when it diverged."""
    if diverged or not history:
        return dict.fromkeys(FINAL_METRICS, math.nan)
    last = history[-1]
    values = {name: last[name] for name in ("test_accuracy", "test_cost", "train_cost")}
    return values | {"best_test_accuracy": max(h["test_accuracy"] for h in history)}


def _by_rate(configs: list[TrainingSettings], values: list) -> dict[float, list]:
    groups = {}
    for config, value in zip(configs, values):
        groups.setdefault(config.learning_rate, []).append(value)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN when there
    are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def epoch_line(
    epoch: int, epochs: int, configs: list[TrainingSettings], metrics: list[dict], seconds: float
) -> str:
    """Test accuracy mean ± std over the seeds, per learning rate."""
    parts = []
    for rate, accuracies in _by_rate(configs, [m["test_accuracy"] for m in metrics]).items():
        mean, std = mean_std(accuracies)
        diverged = sum(not math.isfinite(a) for a in accuracies)
        parts.append(
            f"η {rate:g}: {100 * mean:.2f} ± {100 * std:.2f}%"
            + (f" ({diverged} diverged)" if diverged else "")
        )
    return (
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  test accuracy  "
        + "  ".join(parts)
        + f"  {seconds:.2f} s"
    )


def write_summary(
    sweep_dir: Path,
    configs: list[TrainingSettings],
    run_dirs: list[Path],
    finals: list[dict],
    diverged: dict[int, int] | None = None,
) -> str:
    """summary.csv (one row per copy, with the step it diverged at, if it did) and summary.md
    (mean ± std over the seeds per learning rate, and the diverged copies); returns the
    Markdown."""
    diverged = diverged or {}
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["learning_rate", "seed", *FINAL_METRICS, "diverged_at_step", "run_dir"])
    for k, (config, final, run_dir) in enumerate(zip(configs, finals, run_dirs)):
        writer.writerow(
            [
                config.learning_rate,
                config.seed,
                *(final[name] for name in FINAL_METRICS),
                diverged.get(k, ""),
                run_dir.name,
            ]
        )
    write_file(sweep_dir / "summary.csv", rows.getvalue())
    lines = [
        "| learning rate | seeds | diverged | " + " | ".join(FINAL_METRICS) + " |",
        "|---:" * (3 + len(FINAL_METRICS)) + "|",
    ]
    for rate, group in _by_rate(configs, finals).items():
        cells = []
        for name in FINAL_METRICS:
            mean, std = mean_std([final[name] for final in group])
            cells.append(
                f"{100 * mean:.2f} ± {100 * std:.2f}%"
                if name.endswith("accuracy")
                else f"{mean:.4f} ± {std:.4f}"
            )
        count = sum(not math.isfinite(final["train_cost"]) for final in group)
        lines.append(f"| {rate:g} | {len(group)} | {count} | " + " | ".join(cells) + " |")
    lines += [
        f"\ndiverged: η {configs[k].learning_rate:g} seed {configs[k].seed} at step {at} "
        f"({run_dirs[k].name})"
        for k, at in sorted(diverged.items())
    ]
    table = "\n".join(lines)
    write_file(
        sweep_dir / "summary.md",
        f"Final metrics over the seeds (mean ± sample std), sweep {sweep_dir.name}\n\n{table}\n",
    )
    return table
