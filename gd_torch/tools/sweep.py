"""Seed and learning-rate sweeps in one process: K copies of the network trained as one batched
computation.

    gd-torch sweep --num-seeds 16 --epochs 30                  # seeds 0..15 of the default run
    gd-torch sweep --seeds 0 1 2 --learning-rates 0.5 1.5 3.0  # 9 copies: each rate with each seed
    tensorboard --logdir runs/<sweep directory>                # a run per copy; compare in HPARAMS

Copy k is the run ``gd-torch train --seed s_k --learning-rate η_k`` (all other options the same)
would make: initial weights and batch order from its own ``seeded_generators(s_k)``, its own η_k
(and schedule). Each step takes every copy's own mini-batch at once, (K, B, 784), through the
stacked weights of ``gd_torch.tools.stacked``. The copies differ from single runs only by the
rounding of batched instead of single matmuls (float32); SGD being chaotic, that difference stays
at rounding level for hundreds of steps and grows over thousands.

A copy that diverges (a cost that is not finite, weights beyond ±1e20: the checks of a single
run, ``gd_torch.core.guard``) stops alone: it is marked diverged in the printed log, its own
TensorBoard log (TEXT tab) and the summary, keeps its last good checkpoint, and takes no more
steps (its η is 0), while the other copies train on and are saved.
"""

import contextlib
import csv
import dataclasses
import io
import math
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gd_torch.core.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.core.data import Mnist, shuffled_batches
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import measure
from gd_torch.core.files import write_file, writing_run_directory
from gd_torch.core.guard import Diverged, divergence_hint, sane_copies
from gd_torch.core.loop import prepare_data, resolve_device, seeded_generators, set_threads
from gd_torch.core.memory import require_network_memory
from gd_torch.core.model import Network
from gd_torch.core.run_dir import (
    create_run_directory,
    default_run_name,
    library_versions,
    write_json,
)
from gd_torch.core.settings import RunOptions, TrainingSettings, describe, to_dict
from gd_torch.dashboard.tensorboard import TrainingLog
from gd_torch.tools.stacked import STACKED_ENGINES, StackedNetworks, evaluate_copies, sgd_step

FINAL_METRICS = ("test_accuracy", "best_test_accuracy", "test_cost", "train_cost")
FILES_PER_COPY = (
    3  # open at once: its TensorBoard events file, its lock, a checkpoint being written
)


@dataclass
class SweepResult:
    sweep_dir: Path
    settings: list[TrainingSettings]  # copy k's settings: the `gd-torch train` run it equals
    networks: list[Network]  # copy k trained
    finals: list[dict]  # copy k's final metrics (FINAL_METRICS), NaN when it diverged


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


def sweep(
    base: TrainingSettings,
    options: RunOptions,
    seeds,
    learning_rates=None,
    data: Mnist | None = None,
    out=sys.stdout,
) -> SweepResult:
    """Train every (learning rate, seed) copy of ``base`` at once; logs one run per copy under a
    new sweep directory."""
    for option, given in (
        ("--compile", options.compile),
        ("--time-budget", options.time_budget),
        ("--momentum", base.momentum),
    ):
        if given:  # the copies share one loop of plain, eager stacked SGD steps
            raise GdTorchError(
                f"{option} is not supported by gd-torch sweep: train that run alone "
                "with gd-torch train"
            )
    if options.runs_dir is None:
        raise GdTorchError("a sweep writes its copies' runs: give it a runs_dir")
    configs = sweep_settings(base, seeds, learning_rates)
    set_threads(options.threads)  # refuses more threads than CPUs
    device = resolve_device(options.device)
    data = prepare_data(base, options, device, data)
    require_network_memory(
        base.layer_sizes, base.torch_dtype, device, base.batch_size, copies=len(configs)
    )
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files != resource.RLIM_INFINITY and FILES_PER_COPY * len(configs) + 64 > open_files:
        raise GdTorchError(
            f"{len(configs):,} copies keep {FILES_PER_COPY * len(configs):,} files open, and this "
            f"process may open {open_files:,} (ulimit -n): sweep fewer seeds or rates at once"
        )
    epochs = 1 if options.dry_run else base.epochs
    generators = [
        seeded_generators(config.seed) for config in configs
    ]  # [(initial weights, batch order)]
    networks = [
        Network(config.layer_sizes, config.init, weights, config.torch_dtype).to(device)
        for config, (weights, _) in zip(configs, generators)
    ]
    stacked = StackedNetworks(networks)
    compute_gradients = STACKED_ENGINES[base.engine]
    best_by = "test_accuracy" if data.validation is None else "validation_accuracy"

    sweep_dir = create_run_directory(
        options.runs_dir,
        options.run_name or f"sweep_{base.engine}_b{base.batch_size}_{len(configs)}copies",
    )
    copy_options = dataclasses.replace(options, runs_dir=str(sweep_dir), run_name="")
    run_dirs = [
        create_run_directory(sweep_dir, default_run_name(config, options.dry_run))
        for config in configs
    ]
    for config, run_dir in zip(configs, run_dirs):
        write_json(
            run_dir / "config.json", {"settings": to_dict(config), "options": to_dict(copy_options)}
        )
    write_json(sweep_dir / "versions.json", library_versions() | {"device": str(device)})
    rates_shown = " ".join(sorted({f"{c.learning_rate:g}" for c in configs}, key=float))
    seeds_shown = " ".join(sorted({str(c.seed) for c in configs}, key=int))
    print(
        f"gd-torch sweep: {len(configs)} copies of the {'-'.join(map(str, base.layer_sizes))} "
        f"network as one batched computation (learning rates {rates_shown}; seeds {seeds_shown}), "
        f"{len(data.train):,} training images, device {device}, sweep {sweep_dir}\n"
        f"{describe(base, options)}",
        file=out,
        flush=True,
    )

    logs = [TrainingLog(run_dir) for run_dir in run_dirs]
    histories = [[] for _ in configs]
    diverged: dict[int, int] = {}  # copy k: the step at which it diverged
    train, step = data.train, 0
    cost_every = 1 if device.type == "cpu" else options.log_every  # as a single run's guard

    def check_copies(sane: Tensor, what: str, epoch: int) -> None:
        """Stop each copy that is not ``sane``, alone; the others train on."""
        for k in (~sane).nonzero().flatten().tolist():
            if k in diverged:
                continue
            diverged[k] = step
            config, last = configs[k], run_dirs[k] / "last.pt"
            kept = (
                f"its last good checkpoint, {last}, is kept"
                if last.exists()
                else "no checkpoint had been written yet"
            )
            message = (
                f"copy η {config.learning_rate:g} seed {config.seed} diverged at step {step} "
                f"(epoch {epoch}): {what}; {kept}; the other copies train on. "
                f"{divergence_hint(config)}"
            )
            print(message, file=out, flush=True)
            logs[k].writer.add_text("diverged", message, step)
            logs[k].writer.flush()

    locks = contextlib.ExitStack()  # each run directory is locked while the sweep writes it
    try:
        for run_dir in (sweep_dir, *run_dirs):
            locks.enter_context(writing_run_directory(run_dir))
        for epoch in range(1, epochs + 1):
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
            orders = torch.stack(
                [
                    torch.cat(shuffled_batches(len(train), base.batch_size, order))
                    for _, order in generators
                ]
            )  # (K, N)
            for indices in orders.to(device).split(
                base.batch_size, dim=1
            ):  # copy k's mini-batch in row k, (K, B)
                flat = indices.flatten()
                images = train.images.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 784)
                targets = train.targets.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 10)
                batch_costs = compute_gradients(stacked, images, targets, base.cost)  # (K,)
                sgd_step(stacked, rates, base.weight_decay)
                step += 1
                if step % cost_every == 0:
                    check_copies(batch_costs.isfinite(), "its batch cost is not finite", epoch)
                if step % options.log_every == 0:
                    check_copies(
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
            measured = measure(
                lambda split: evaluate_copies(stacked, split, base.cost), data
            )  # all K at once
            gradients = [p.grad for p in stacked.parameters() if p.grad is not None]
            check_copies(
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
                best = max([metrics[best_by], *(h["best_accuracy"] for h in histories[k])])
                histories[k].append({"epoch": epoch, "step": step, "best_accuracy": best} | metrics)
                log.epoch(step, epoch, metrics, network)
                log.images_if_due(step, epoch, epochs, options.image_every, network, data.test)
                optimizer = torch.optim.SGD(
                    network.parameters(),
                    lr=metrics["learning_rate"],
                    weight_decay=config.weight_decay,
                )
                for group in optimizer.param_groups:
                    group["initial_lr"] = config.learning_rate
                save_checkpoint(
                    run_dirs[k] / "last.pt",
                    training_checkpoint(  # resumable with --resume
                        network,
                        optimizer,
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
            print(
                epoch_line(
                    epoch,
                    epochs,
                    configs,
                    [final_metrics(h, k in diverged) for k, h in enumerate(histories)],
                    seconds,
                ),
                file=out,
                flush=True,
            )
        finals = [final_metrics(history, k in diverged) for k, history in enumerate(histories)]
        for config, final, log in zip(configs, finals, logs):
            log.hyperparameters(config, final, step)
        table = write_summary(sweep_dir, configs, run_dirs, finals, diverged)
    finally:
        for log in logs:
            log.close()
        locks.close()
    print(
        f"{table}\nsummary in {sweep_dir / 'summary.md'} and summary.csv; compare the runs with: "
        f"tensorboard --logdir {sweep_dir}",
        file=out,
        flush=True,
    )
    if len(diverged) == len(configs):
        raise Diverged(
            f"every copy diverged (at steps {', '.join(map(str, sorted(diverged.values())))}); "
            f"the summary is in {sweep_dir / 'summary.md'}. "
            + divergence_hint(min(configs, key=lambda config: config.learning_rate))
        )
    return SweepResult(sweep_dir, configs, networks, finals)


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
