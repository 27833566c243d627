"""Stochastic gradient descent: w ← w − η ∇C, one shuffled mini-batch at a time.

    gd-torch train --epochs 30 --data-root ../shared/mnist     # the console script
    python -m gd_torch.train --epochs 30                        # the same, as a module
    torchrun --nproc_per_node=2 -m gd_torch.train --epochs 30   # data-parallel (gd_torch.distributed)
    gd-torch train --resume runs/<run>                          # continue a stopped run (Ctrl-C saves one)
    tensorboard --logdir runs                                   # watch it learn
"""

import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from gd_torch import distributed
from gd_torch.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.config import TrainConfig
from gd_torch.data import Mnist, load_mnist, shuffled_batches
from gd_torch.errors import GdTorchError
from gd_torch.evaluate import evaluate
from gd_torch.guard import RunGuard
from gd_torch.model import Network
from gd_torch.resume import Progress, load_resumable, restore
from gd_torch.run_dir import create_run_directory, library_versions, write_json
from gd_torch.step import chunks, sgd_steps_function
from gd_torch.tensorboard_log import TrainingLog, gradient_norm, gradients

DRY_RUN_EXAMPLES = 1_000


@dataclass
class TrainResult:
    run_dir: Path
    network: Network
    history: list[dict] = field(default_factory=list)  # one dict of epoch metrics per epoch

    @property
    def final(self) -> dict:
        return self.history[-1]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if not available[name]:
        raise GdTorchError(f"--device {name} is not available on this machine")
    return torch.device(name)


def seeded_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """(initial weights, batch order): two independent streams, disjoint across seeds."""
    return torch.Generator().manual_seed(2 * seed), torch.Generator().manual_seed(2 * seed + 1)


def prepare_data(config: TrainConfig, device: torch.device) -> Mnist:
    data = load_mnist(config.data_root, config.download, config.validation_size)
    if config.dry_run:
        data = Mnist(data.train[:DRY_RUN_EXAMPLES], data.test[:DRY_RUN_EXAMPLES], data.validation[:DRY_RUN_EXAMPLES] if data.validation else None)
    if config.batch_size > len(data.train):
        raise GdTorchError(f"--batch-size {config.batch_size} is larger than the {len(data.train)} training images")
    return data.to(device)


def network_and_optimizer(config: TrainConfig, device: torch.device, init_generator: torch.Generator) -> tuple[Network, torch.optim.SGD]:
    """A freshly initialised network on the device, and plain SGD over its weights and biases."""
    network = Network(config.layer_sizes, config.init, init_generator).to(device)
    return network, torch.optim.SGD(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def train_one_epoch(network, optimizer, config: TrainConfig, data: Mnist, order: torch.Generator, step: int,
                    log: TrainingLog | None = None, progress: bool = False, skip: int = 0, guard: RunGuard | None = None) -> int:
    """One pass over the training set in random mini-batches (less its first ``skip``, done before a stop);
    returns the number of SGD steps taken so far. Returns early when ``guard`` was asked to stop."""
    take_steps = sgd_steps_function(config, optimizer)  # eager one step per call, or several compiled with --compile
    train = data.train
    batches = shuffled_batches(len(train), config.batch_size, order)[skip:]
    with tqdm(total=len(batches), leave=False, disable=not progress, unit="batch") as bar:
        for chunk in chunks(batches, take_steps.batches_per_call):
            done = take_steps(network, train, chunk.to(train.images.device, non_blocking=True))  # w ← w − η (∇C + λw), per row
            first, step = step + 1, step + len(chunk)
            if guard is not None:
                guard.check_steps(step, done.batch_costs, network)  # NaN or inf: stop before anything is saved
            if log is not None:
                for logged in range(first + (-first) % config.log_every, step + 1, config.log_every):  # the multiples of log_every
                    norm = gradient_norm(gradients(network)) if done.gradient_norms is None else done.gradient_norms[logged - first]
                    log.batch(logged, done.batch_costs[logged - first], norm, optimizer.param_groups[0]["lr"])
            bar.update(len(chunk))
            if guard is not None and guard.stop_signal:  # Ctrl-C or SIGTERM: train() saves a checkpoint
                break
    return step


def measure(network: Network, config: TrainConfig, data: Mnist) -> dict[str, float]:
    """The per-epoch numbers: cost and accuracy on the full training, test (and validation) sets."""
    (metrics,) = measure_splits(lambda split: [evaluate(network, split, config.cost)], data)
    return metrics


def measure_splits(evaluate_split, data: Mnist) -> list[dict[str, float]]:
    """``measure`` for each network that ``evaluate_split`` (split -> [Metrics per network]) evaluates."""
    per_network = []
    for name, split in (("train", data.train), ("test", data.test), ("validation", data.validation)):
        if split is not None:
            results = evaluate_split(split)
            per_network = per_network or [{} for _ in results]
            for metrics, result in zip(per_network, results, strict=True):
                metrics[f"{name}_cost"], metrics[f"{name}_accuracy"] = result.cost, result.accuracy
    return per_network


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    line = f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train cost {metrics['train_cost']:.4f}  test cost {metrics['test_cost']:.4f}"
    if "validation_accuracy" in metrics:
        line += f"  validation accuracy {100 * metrics['validation_accuracy']:.2f}%"
    return line + f"  test accuracy {100 * metrics['test_accuracy']:.2f}%  {metrics['seconds']:.2f} s"


def train(config: TrainConfig, data: Mnist | None = None, out=sys.stdout, resume: str | Path | None = None) -> TrainResult | None:
    """Train one network as the config says, logging to a new run directory; returns it trained (None on torchrun ranks but 0).

    ``resume`` (a run directory or checkpoint) continues that run in its own directory instead.
    """
    torch.set_num_threads(config.threads)
    if distributed.launched_by_torchrun():  # the other ranks follow the epochs alone, with the gradients all-reduced between backward and update
        for option, given in (("--resume", resume), ("--time-budget", config.time_budget), ("--compile", config.compile)):
            if given:
                raise GdTorchError(f"{option} is not supported under torchrun: run it in a single process")
    device = distributed.start(resolve_device(config.device))
    run_dir, checkpoint = load_resumable(resume, config) if resume else (None, None)
    data = prepare_data(config, device) if data is None else data.to(device)
    epochs = 1 if config.dry_run else config.epochs
    init_generator, order_generator = seeded_generators(config.seed)
    network, optimizer = network_and_optimizer(config, device, init_generator)
    if not distributed.is_leader():  # under torchrun only rank 0 logs, prints and checkpoints
        return distributed.follow(network, optimizer, config, data, order_generator)
    done = restore(checkpoint, network, optimizer, order_generator) if checkpoint else Progress()

    run_dir = run_dir or create_run_directory(config)
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "versions.json", library_versions() | {"device": str(device)})
    print(f"gd-torch train: {'-'.join(map(str, config.layer_sizes))} network, {network.num_parameters:,} weights and biases, "
          f"{len(data.train):,} training images, device {device}, run {run_dir}\n{config.describe()}", file=out, flush=True)
    if checkpoint:
        print(f"resuming after epoch {done.epoch}, step {done.step}", file=out, flush=True)

    result = TrainResult(run_dir, network, done.history)
    step, best, skip = done.step, done.best_test_accuracy, done.batches_done
    sgd_seconds = done.history[-1]["sgd_seconds"] if done.history else 0.0  # time in SGD steps, for --time-budget
    log = TrainingLog(run_dir, purge_step=done.step + 1 if checkpoint else None)  # resumed: drop what was logged after the checkpoint
    with closing(log), RunGuard(config, device, run_dir) as guard:
        for epoch in range(done.epoch + 1, epochs + 1):
            started = time.perf_counter()
            guard.epoch = epoch
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(epoch)
            epoch_order_state, epoch_start = order_generator.get_state(), step - skip  # what a mid-epoch checkpoint needs
            step = train_one_epoch(network, optimizer, config, data, order_generator, step, log, progress=sys.stderr.isatty(), skip=skip, guard=guard)
            skip = 0
            sgd_seconds += time.perf_counter() - started
            if guard.stop_signal:
                save_checkpoint(run_dir / "last.pt", training_checkpoint(
                    network, optimizer, config, epoch=epoch - 1, step=step, batch_order_state=epoch_order_state,
                    batches_done=step - epoch_start, best_test_accuracy=best, history=result.history))
                raise guard.interrupted(step, step - epoch_start)
            metrics = measure(network, config, data) | {"seconds": time.perf_counter() - started, "sgd_seconds": sgd_seconds,
                                                        "learning_rate": config.learning_rate_at(epoch)}
            guard.check_epoch(step, metrics["train_cost"], network)
            improved = metrics["test_accuracy"] >= best
            best = max(best, metrics["test_accuracy"])
            result.history.append({"epoch": epoch, "step": step} | metrics)
            print(epoch_line(epoch, epochs, metrics), file=out, flush=True)
            log.epoch(step, epoch, metrics, network)
            log.images_if_due(step, epoch, config, network, data.test)
            state = training_checkpoint(network, optimizer, config, epoch=epoch, step=step, batch_order_state=order_generator.get_state(),
                                        batches_done=0, best_test_accuracy=best, history=result.history)
            out_of_time = config.time_budget and sgd_seconds >= config.time_budget
            if epoch % config.checkpoint_every == 0 or epoch == epochs or out_of_time:
                save_checkpoint(run_dir / "last.pt", state)
            if improved:
                save_checkpoint(run_dir / "best.pt", state)
            if out_of_time:
                break
        final = {k: result.final[k] for k in ("test_accuracy", "test_cost", "train_cost")} | {"best_test_accuracy": best}
        log.hyperparameters(config, final, step)
    print(f"final test accuracy {100 * result.final['test_accuracy']:.2f}% (best {100 * best:.2f}%); "
          f"run saved in {run_dir}; view it with: tensorboard --logdir {config.runs_dir}", file=out, flush=True)
    return result


if __name__ == "__main__":
    from gd_torch.cli import main

    main(["train", *sys.argv[1:]])
