"""Seed and learning-rate sweeps in one process: K copies of the network trained as one batched computation.

    gd-torch sweep --num-seeds 16 --epochs 30                      # seeds 0..15 of the default run
    gd-torch sweep --seeds 0 1 2 --learning-rates 0.5 1.5 3.0      # 9 copies: every rate with every seed
    tensorboard --logdir runs/<sweep directory>                    # one run per copy; HPARAMS compares them

Copy k is the run ``gd-torch train --seed s_k --learning-rate η_k`` (all other options the same)
would make: initial weights and batch order from its own ``seeded_generators(s_k)``, its own η_k
(and schedule). Each step takes every copy's own mini-batch at once, (K, B, 784), through the
stacked weights of ``gd_torch.batched``. The copies differ from single runs only by the rounding
of batched instead of single matmuls (float32); SGD being chaotic, that difference stays at
rounding level for hundreds of steps and grows over thousands.
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

from gd_torch.batched import STACKED_ENGINES, StackedNetworks, sgd_step
from gd_torch.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.data import Mnist, shuffled_batches
from gd_torch.errors import GdTorchError
from gd_torch.evaluate import evaluate_copies
from gd_torch.model import Network
from gd_torch.run_dir import create_run_directory, library_versions, write_json
from gd_torch.tensorboard_log import TrainingLog
from gd_torch.train import measure_splits, prepare_data, resolve_device, seeded_generators

FINAL_METRICS = ("test_accuracy", "best_test_accuracy", "test_cost", "train_cost")


@dataclass
class SweepResult:
    sweep_dir: Path
    configs: list[TrainConfig]  # copy k's config: the `gd-torch train` run it equals
    networks: list[Network]  # copy k trained
    finals: list[dict]  # copy k's final metrics (FINAL_METRICS), NaN when it diverged


def sweep_configs(base: TrainConfig, seeds, learning_rates=None) -> list[TrainConfig]:
    """One config per (learning rate, seed), rates outermost; ``learning_rates`` defaults to the base one."""
    seeds, learning_rates = list(seeds), list(learning_rates or [base.learning_rate])
    for name, values in (("seeds", seeds), ("learning-rates", learning_rates)):
        if not values or len(set(values)) != len(values):
            raise GdTorchError(f"--{name} must be distinct values, at least one (got {' '.join(map(str, values))})")
    return [dataclasses.replace(base, seed=seed, learning_rate=rate) for rate in learning_rates for seed in seeds]


def sweep(base: TrainConfig, seeds, learning_rates=None, data: Mnist | None = None, out=sys.stdout) -> SweepResult:
    """Train every (learning rate, seed) copy of ``base`` at once; logs one run per copy under a new sweep directory."""
    for option, given in (("--compile", base.compile), ("--time-budget", base.time_budget)):
        if given:  # the copies share one loop of stacked steps: eager, and as long as --epochs says
            raise GdTorchError(f"{option} is not supported by gd-torch sweep: train that run alone with gd-torch train")
    configs = sweep_configs(base, seeds, learning_rates)
    torch.set_num_threads(base.threads)
    device = resolve_device(base.device)
    data = prepare_data(base, device) if data is None else data.to(device)
    epochs = 1 if base.dry_run else base.epochs
    generators = [seeded_generators(config.seed) for config in configs]  # [(initial weights, batch order)]
    networks = [Network(config.layer_sizes, config.init, weights).to(device) for config, (weights, _) in zip(configs, generators)]
    stacked = StackedNetworks(networks)
    compute_gradients = STACKED_ENGINES[base.engine]

    sweep_name = base.run_name or f"sweep_{base.engine}_b{base.batch_size}_{len(configs)}copies"
    sweep_dir = create_run_directory(dataclasses.replace(base, run_name=sweep_name))
    configs = [dataclasses.replace(config, runs_dir=str(sweep_dir), run_name="") for config in configs]
    run_dirs = [create_run_directory(config) for config in configs]
    for config, run_dir in zip(configs, run_dirs):
        write_json(run_dir / "config.json", config.to_dict())
    write_json(sweep_dir / "versions.json", library_versions() | {"device": str(device)})
    print(f"gd-torch sweep: {len(configs)} copies of the {'-'.join(map(str, base.layer_sizes))} network as one batched computation "
          f"(learning rates {' '.join(sorted({f'{c.learning_rate:g}' for c in configs}, key=float))}; seeds {' '.join(sorted({str(c.seed) for c in configs}, key=int))}), "
          f"{len(data.train):,} training images, device {device}, sweep {sweep_dir}\n{base.describe()}", file=out, flush=True)

    logs = [TrainingLog(run_dir) for run_dir in run_dirs]
    histories = [[] for _ in configs]
    train, step = data.train, 0
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            rates = torch.tensor([config.learning_rate_at(epoch) for config in configs], device=device)  # η_k, (K,)
            orders = torch.stack([torch.cat(shuffled_batches(len(train), base.batch_size, order)) for _, order in generators])  # (K, N)
            for indices in orders.to(device).split(base.batch_size, dim=1):  # copy k's mini-batch in row k, (K, B)
                flat = indices.flatten()
                images = train.images.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 784)
                targets = train.targets.index_select(0, flat).view(*indices.shape, -1)  # (K, B, 10)
                batch_costs = compute_gradients(stacked, images, targets, base.cost)  # (K,)
                sgd_step(stacked, rates, base.weight_decay)
                step += 1
                if step % base.log_every == 0:
                    for log, *values in zip(logs, batch_costs.tolist(), stacked.gradient_norms().tolist(), rates.tolist()):
                        log.batch(step, *values)
            measured = measure_splits(lambda split: evaluate_copies(stacked, split, base.cost), data)  # all K copies at once
            seconds = time.perf_counter() - started  # for all K copies together
            for k, (config, network, log) in enumerate(zip(configs, networks, logs)):
                metrics = measured[k] | {"seconds": seconds, "learning_rate": config.learning_rate_at(epoch)}
                stacked.copy_into(k, network)
                best = max([metrics["test_accuracy"], *(h["best_test_accuracy"] for h in histories[k])])
                histories[k].append({"epoch": epoch, "step": step, "best_test_accuracy": best} | metrics)
                log.epoch(step, epoch, metrics, network)
                log.images_if_due(step, epoch, config, network, data.test)
                optimizer = torch.optim.SGD(network.parameters(), lr=metrics["learning_rate"], weight_decay=config.weight_decay)
                save_checkpoint(run_dirs[k] / "last.pt", training_checkpoint(  # what `gd-torch train` writes: resumable with --resume
                    network, optimizer, config, epoch=epoch, step=step, batch_order_state=generators[k][1].get_state(),
                    batches_done=0, best_test_accuracy=best, history=histories[k]))
            print(epoch_line(epoch, epochs, configs, [h[-1] for h in histories], seconds), file=out, flush=True)
        finals = [{name: h[-1][name] if math.isfinite(h[-1]["train_cost"]) else math.nan for name in FINAL_METRICS} for h in histories]
        for config, final, log in zip(configs, finals, logs):
            log.hyperparameters(config, final, step)
    finally:
        for log in logs:
            log.close()
    table = write_summary(sweep_dir, configs, run_dirs, finals)
    print(f"{table}\nsummary in {sweep_dir / 'summary.md'} and summary.csv; compare the runs with: tensorboard --logdir {sweep_dir}", file=out, flush=True)
    return SweepResult(sweep_dir, configs, networks, finals)


def _by_rate(configs: list[TrainConfig], values: list) -> dict[float, list]:
    groups = {}
    for config, value in zip(configs, values):
        groups.setdefault(config.learning_rate, []).append(value)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def epoch_line(epoch: int, epochs: int, configs: list[TrainConfig], metrics: list[dict], seconds: float) -> str:
    """Test accuracy mean ± std over the seeds, per learning rate."""
    parts = []
    for rate, accuracies in _by_rate(configs, [m["test_accuracy"] if math.isfinite(m["train_cost"]) else math.nan for m in metrics]).items():
        mean, std = mean_std(accuracies)
        diverged = sum(not math.isfinite(a) for a in accuracies)
        parts.append(f"η {rate:g}: {100 * mean:.2f} ± {100 * std:.2f}%" + (f" ({diverged} diverged)" if diverged else ""))
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs}  test accuracy  " + "  ".join(parts) + f"  {seconds:.2f} s"


def write_summary(sweep_dir: Path, configs: list[TrainConfig], run_dirs: list[Path], finals: list[dict]) -> str:
    """summary.csv (one row per copy) and summary.md (mean ± std over the seeds per learning rate); returns the Markdown."""
    with open(sweep_dir / "summary.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["learning_rate", "seed", *FINAL_METRICS, "run_dir"])
        for config, final, run_dir in zip(configs, finals, run_dirs):
            writer.writerow([config.learning_rate, config.seed, *(final[name] for name in FINAL_METRICS), run_dir.name])
    lines = ["| learning rate | seeds | diverged | " + " | ".join(FINAL_METRICS) + " |", "|---:" * (3 + len(FINAL_METRICS)) + "|"]
    for rate, group in _by_rate(configs, finals).items():
        cells = []
        for name in FINAL_METRICS:
            mean, std = mean_std([final[name] for final in group])
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}%" if name.endswith("accuracy") else f"{mean:.4f} ± {std:.4f}")
        diverged = sum(not math.isfinite(final["train_cost"]) for final in group)
        lines.append(f"| {rate:g} | {len(group)} | {diverged} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (sweep_dir / "summary.md").write_text(f"Final metrics over the seeds (mean ± sample std), sweep {sweep_dir.name}\n\n{table}\n")
    return table
