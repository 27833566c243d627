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
"""

import csv
import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gd_torch.core.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.core.data import Mnist, shuffled_batches
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import measure
from gd_torch.core.loop import prepare_data, resolve_device, seeded_generators, sgd
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


@dataclass
class SweepResult:
    sweep_dir: Path
    settings: list[TrainingSettings]  # copy k's settings: the `gd-torch train` run it equals
    networks: list[Network]  # copy k trained
    finals: list[dict]  # copy k's final metrics (FINAL_METRICS), NaN when it diverged
    histories: list[list[dict]]  # copy k's per-epoch metrics, as TrainResult.history


def sweep_settings(base: TrainingSettings, seeds, learning_rates=None) -> list[TrainingSettings]:
    """One config per (learning rate, seed), rates outermost; ``learning_rates`` defaults to the
    base one."""
    seeds, learning_rates = list(seeds), list(learning_rates or [base.learning_rate])
    for name, values in (("seeds", seeds), ("learning-rates", learning_rates)):
        if not values or len(set(values)) != len(values):
            raise GdTorchError(
                f"--{name} must be distinct values, at least one (got {' '.join(map(str, values))})"
            )
    return [
        dataclasses.replace(base, seed=seed, learning_rate=rate)
        for rate in learning_rates
        for seed in seeds
    ]


def unsupported(base: TrainingSettings, options: RunOptions) -> list[str]:
    """The options given that a sweep cannot batch: its copies share one loop of plain, eager
    stacked SGD steps."""
    given = {
        "--compile": options.compile,
        "--time-budget": options.time_budget,
        "--momentum": base.momentum,
    }
    return [option for option, value in given.items() if value]


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
    refused = unsupported(base, options)
    if refused:
        raise GdTorchError(
            f"{refused[0]} is not supported by gd-torch sweep: train that run alone with "
            "gd-torch train"
        )
    if options.runs_dir is None:
        raise GdTorchError("a sweep writes its copies' runs: give it a runs_dir")
    configs = sweep_settings(base, seeds, learning_rates)
    torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    data = prepare_data(base, options, device, data)
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
    train, step = data.train, 0
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            rates = torch.tensor(
                [config.learning_rate_at(epoch) for config in configs],
                device=device,
                dtype=base.torch_dtype,
            )  # η_k, (K,)
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
                sgd_step(stacked, rates, base.weight_decay, base.weight_decay_on == "all")
                step += 1
                if step % options.log_every == 0:
                    norms = stacked.gradient_norms().tolist()
                    for log, *values in zip(logs, batch_costs.tolist(), norms, rates.tolist()):
                        log.batch(step, *values)
            measured = measure(
                lambda split: evaluate_copies(stacked, split, base.cost), data
            )  # all K at once
            seconds = time.perf_counter() - started  # for all K copies together
            for k, (config, network, log) in enumerate(zip(configs, networks, logs)):
                metrics = measured[k] | {
                    "seconds": seconds,
                    "learning_rate": config.learning_rate_at(epoch),
                }
                stacked.copy_into(k, network)
                best = max([metrics[best_by], *(h["best_accuracy"] for h in histories[k])])
                histories[k].append({"epoch": epoch, "step": step, "best_accuracy": best} | metrics)
                log.epoch(step, epoch, metrics, network)
                log.images_if_due(step, epoch, epochs, options.image_every, network, data.test)
                optimizer = sgd(config)(network)  # the optimizer `gd-torch train` would have
                for group in optimizer.param_groups:
                    group["initial_lr"], group["lr"] = (
                        config.learning_rate,
                        metrics["learning_rate"],
                    )
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
                epoch_line(epoch, epochs, configs, [h[-1] for h in histories], seconds),
                file=out,
                flush=True,
            )
        finals = [final_metrics(history) for history in histories]
        for config, final, log in zip(configs, finals, logs):
            log.hyperparameters(config, final, step)
    finally:
        for log in logs:
            log.close()
    table = write_summary(sweep_dir, configs, run_dirs, finals)
    print(
        f"{table}\nsummary in {sweep_dir / 'summary.md'} and summary.csv; compare the runs with: "
        f"tensorboard --logdir {sweep_dir}",
        file=out,
        flush=True,
    )
    return SweepResult(sweep_dir, configs, networks, finals, histories)


def final_metrics(history: list[dict]) -> dict:
    """FINAL_METRICS of a copy's last epoch; NaN when it diverged."""
    last = history[-1]
    best_test = max(h["test_accuracy"] for h in history)
    values = {name: last[name] for name in ("test_accuracy", "test_cost", "train_cost")}
    values["best_test_accuracy"] = best_test
    return {
        name: values[name] if math.isfinite(last["train_cost"]) else math.nan
        for name in FINAL_METRICS
    }


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
    for rate, accuracies in _by_rate(
        configs,
        [m["test_accuracy"] if math.isfinite(m["train_cost"]) else math.nan for m in metrics],
    ).items():
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
    sweep_dir: Path, configs: list[TrainingSettings], run_dirs: list[Path], finals: list[dict]
) -> str:
    """summary.csv (one row per copy) and summary.md (mean ± std over the seeds per learning
    rate); returns the Markdown."""
    with open(sweep_dir / "summary.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["learning_rate", "seed", *FINAL_METRICS, "run_dir"])
        for config, final, run_dir in zip(configs, finals, run_dirs):
            writer.writerow(
                [
                    config.learning_rate,
                    config.seed,
                    *(final[name] for name in FINAL_METRICS),
                    run_dir.name,
                ]
            )
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
        diverged = sum(not math.isfinite(final["train_cost"]) for final in group)
        lines.append(f"| {rate:g} | {len(group)} | {diverged} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (sweep_dir / "summary.md").write_text(
        f"Final metrics over the seeds (mean ± sample std), sweep {sweep_dir.name}\n\n{table}\n"
    )
    return table
