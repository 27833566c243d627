"""Stochastic gradient descent: w ← w − η ∇C, one shuffled mini-batch at a time.

    gd-torch train --epochs 30 --data-root ../shared/mnist      # the console script
    torchrun --nproc_per_node=2 -m gd_torch train --epochs 30    # data-parallel, the same loop
    gd-torch train --resume runs/<run>                           # continue a stopped run
    tensorboard --logdir runs                                    # watch it learn

``train_one_epoch`` is the reference loop, as pytorch/examples and Nielsen's
``update_mini_batch`` write it. ``train`` runs it epoch after epoch, with evaluation,
checkpoints, stopping and callbacks; a run long enough to earn the compile (or --compile) runs
the same steps through the fast path instead (gd_torch.core.compiled), chosen once when the run
starts.
"""

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch
from torch import Tensor

from gd_torch.core import compiled, distributed, signals
from gd_torch.core.checkpoint import save_checkpoint, training_checkpoint
from gd_torch.core.data import Mnist, Split, load_mnist, mini_batches, shuffled_order
from gd_torch.core.engines import ENGINES, Engine
from gd_torch.core.errors import GdTorchError, os_error_message
from gd_torch.core.evaluate import measure
from gd_torch.core.files import writing_run_directory
from gd_torch.core.guard import Diverged, RunGuard
from gd_torch.core.memory import require_network_memory
from gd_torch.core.model import Network
from gd_torch.core.resume import Progress, load_resumable, restore, run_directory_to_resume
from gd_torch.core.run import Callback, Run
from gd_torch.core.run_dir import (
    create_run_directory,
    default_run_name,
    library_versions,
    write_json,
)
from gd_torch.core.settings import RunOptions, TrainingSettings, describe, to_dict
from gd_torch.core.sgd import (
    OptimizerFactory,
    OptimizerOrPlan,
    PlannedSGD,
    made,
    optimizer_class,
    set_learning_rate,
)
from gd_torch.core.training_set import training_set

DRY_RUN_EXAMPLES = 1_000


def train_one_epoch(
    network: Network,
    optimizer: torch.optim.Optimizer,
    train: Split,
    batches: Sequence[Tensor],
    compute_gradients: Engine = ENGINES["manual"],
    cost: str = "quadratic",
    finish_step: Callable[[Tensor], bool] | None = None,
) -> None:
    """One pass of SGD over ``train``, one step per mini-batch of indices in ``batches``.

    ``finish_step(batch_cost)`` (``Run.finish_step`` in ``train``) counts, checks and logs the
    step, and returns True to stop early.
    """
    for indices in batches:
        images, targets = train.images[indices], train.targets[indices]  # (B, 784), (B, 10)
        batch_cost = compute_gradients(network, images, targets, cost)  # ∇C into every .grad
        optimizer.step()  # w ← w − η ∇C (torch.optim.SGD adds λw to ∇C first)
        if finish_step is not None and finish_step(batch_cost):
            return


def epoch_function(
    run: Run,
    compute_gradients: Engine = ENGINES["manual"],
    fast: bool | None = None,
    out: IO[str] | None = None,
    path: str | None = None,
) -> Callable[[Tensor], None]:
    """order -> None: the epoch of SGD steps this run takes, chosen once when it starts, over
    the epoch's examples not yet trained on, in the order SGD takes them. ``fast``: the fast
    path (default: as ``compiled.choose`` says), which says on ``out`` if it falls back;
    ``path``: its steps, ``native`` or ``inductor`` (default: as ``compiled.fast_path`` says)."""

    def reference(batches: Sequence[Tensor]) -> None:  # run.optimizer: made when first needed
        train_one_epoch(
            run.network,
            run.optimizer,
            run.data.train,
            batches,
            compute_gradients=compute_gradients,
            cost=run.settings.cost,
            finish_step=run.finish_step,
        )

    if fast is None:
        fast = compiled.choose(run)[0]
    if fast:  # the same steps, up to a thousand to a compiled call
        return compiled.epoch_function(run, reference, out or sys.stdout, path)
    return lambda order: reference(this_ranks_batches(order, run.settings.batch_size))


def this_ranks_batches(order: Tensor, batch_size: int) -> Sequence[Tensor]:
    """The epoch's mini-batches of indices, in SGD's ``order``; under torchrun, this rank's
    shard of each (the examples it gathers; ∇C is all-reduced to the whole batch's)."""
    batches = mini_batches(order, batch_size)
    return distributed.shard(batches) if distributed.world_size() > 1 else batches


@dataclass
class TrainResult:
    run_dir: Path | None  # None when nothing was written (runs_dir=None, or not rank 0)
    network: Network
    optimizer_or_plan: OptimizerOrPlan  # see gd_torch.core.sgd
    history: list[dict] = field(default_factory=list)  # one dict of epoch metrics per epoch
    best_accuracy: float = 0.0
    best_by: str = "test_accuracy"  # or validation_accuracy, when there is a validation set
    stopped: str | None = None  # why it ended before its last epoch (a callback, the budget)

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer: ``sgd(settings)``'s, unless ``train`` was given another."""
        return made(self.optimizer_or_plan)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if not available[name]:
        raise GdTorchError(f"--device {name} is not available on this machine")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """torch.set_num_threads, refusing more threads than this machine has CPUs (they would only
    slow PyTorch down)."""
    if threads > (os.cpu_count() or 1):
        raise GdTorchError(
            f"--threads {threads} is more than the {os.cpu_count()} CPUs of this machine "
            "(more threads than CPUs only slow PyTorch down)"
        )
    torch.set_num_threads(threads)


def seeded_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """(initial weights, batch order): two independent streams, disjoint across seeds."""
    return torch.Generator().manual_seed(2 * seed), torch.Generator().manual_seed(2 * seed + 1)


def prepare_data(
    settings: TrainingSettings, options: RunOptions, device: torch.device, data: Mnist | None = None
) -> Mnist:
    """MNIST (or the given data) as the settings say: validation held out, the training set of
    --train-size and --label-noise (gd_torch.core.training_set), on the device, in the settings'
    dtype; the first 1,000 of each split for a dry run."""
    if data is None:
        data = load_mnist(options.data_root, options.download, settings.validation_size)
    elif (0 if data.validation is None else len(data.validation)) != settings.validation_size:
        held_out = 0 if data.validation is None else len(data.validation)
        raise GdTorchError(
            f"--validation-size {settings.validation_size}, but the data given "
            f"holds {held_out} validation images"
        )
    data = Mnist(training_set(data.train, settings), data.test, data.validation)
    if options.dry_run:
        data = data.head(DRY_RUN_EXAMPLES)
    if settings.batch_size > len(data.train):
        raise GdTorchError(
            f"--batch-size {settings.batch_size} is larger than the "
            f"{len(data.train)} training images"
        )
    return data.to(device, settings.torch_dtype)


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    line = (
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train cost {metrics['train_cost']:.4f}"
        f"  test cost {metrics['test_cost']:.4f}"
    )
    if "validation_accuracy" in metrics:
        line += f"  validation accuracy {100 * metrics['validation_accuracy']:.2f}%"
    return (
        line + f"  test accuracy {100 * metrics['test_accuracy']:.2f}%  {metrics['seconds']:.2f} s"
    )


def train(
    settings: TrainingSettings | None = None,
    options: RunOptions | None = None,
    *,
    data: Mnist | None = None,
    network: Network | None = None,
    optimizer: OptimizerFactory | None = None,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    out: IO[str] | None = None,
) -> TrainResult:
    """Train one network as the settings say; returns it trained, with its per-epoch metrics.

    ``data``, ``network`` and ``optimizer`` (a function of the network) replace MNIST from
    ``options.data_root``, a fresh ``Network`` and ``sgd(settings)``. ``resume`` (a run directory
    or checkpoint) continues that run in its own directory. With ``options.runs_dir`` None
    nothing is written. Under torchrun every rank runs this; only rank 0 prints and writes.
    """
    with contextlib.ExitStack() as locks:  # the run directory is locked while this writes it
        return _train(settings, options, data, network, optimizer, callbacks, resume, out, locks)


def _train(
    settings: TrainingSettings | None,
    options: RunOptions | None,
    data: Mnist | None,
    network: Network | None,
    make_optimizer: OptimizerFactory | None,
    callbacks: Sequence[Callback],
    resume: str | Path | None,
    out: IO[str] | None,
    locks: contextlib.ExitStack,
) -> TrainResult:
    settings, options = settings or TrainingSettings(), options or RunOptions()
    set_threads(options.threads)
    if distributed.launched_by_torchrun() and options.compile:
        raise GdTorchError(
            "--compile is not supported under torchrun: a compiled step holds "
            "the update, and data parallelism all-reduces ∇C before it"
        )
    device = distributed.start(resolve_device(options.device))
    leader = distributed.is_leader()
    if not leader:
        out = io.StringIO()  # only rank 0 prints
    out = out or sys.stdout
    resumed_dir: Path | None = None
    checkpoint: dict | None = None
    if resume:
        if leader:  # locked before it is read: no other process then writes it
            locks.enter_context(writing_run_directory(run_directory_to_resume(resume)))
        resumed_dir, checkpoint = load_resumable(resume, settings, options)
    if network is None:  # before the data is read: a network that cannot fit is refused at once
        require_network_memory(
            settings.layer_sizes, settings.torch_dtype, device, settings.batch_size
        )
    data = prepare_data(settings, options, device, data)
    batches_per_epoch = -(-len(data.train) // settings.batch_size)
    epochs_left = settings.epochs - (checkpoint["epoch"] if checkpoint else 0)
    compiled.build_ahead(settings, options, device, epochs_left * batches_per_epoch)
    init_generator, order_generator = seeded_generators(settings.seed)
    if network is None:
        network = Network(settings.layer_sizes, settings.init, init_generator, settings.torch_dtype)
    elif network.sizes != settings.layer_sizes:
        raise GdTorchError(
            f"the network given is {network.sizes}, the settings say {settings.layer_sizes}"
        )
    network = network.to(device, settings.torch_dtype)
    optimizer = make_optimizer(network) if make_optimizer else PlannedSGD(settings, network)
    compute_gradients = ENGINES[settings.engine]
    if distributed.world_size() > 1:  # each rank takes its shard; ∇C is all-reduced
        compute_gradients = distributed.data_parallel(compute_gradients)
    done = (
        restore(checkpoint, network, made(optimizer), order_generator, batches_per_epoch)
        if checkpoint
        else Progress()
    )

    run_dir = None
    if leader and options.runs_dir is not None:
        run_dir = resumed_dir or create_run_directory(
            options.runs_dir, options.run_name or default_run_name(settings, options.dry_run)
        )
        if not resumed_dir:
            locks.enter_context(writing_run_directory(run_dir))
        signals.leaving(
            f" before training started: {run_dir} holds "
            + ("its last checkpoint" if done.step else "no checkpoint")
        )

    def write_run_files() -> None:
        """config.json and versions.json; a resumed run rewrites them only once its first new
        checkpoint is saved, so that a failed save leaves the run's directory as it was."""
        assert run_dir is not None
        write_json(
            run_dir / "config.json", {"settings": to_dict(settings), "options": to_dict(options)}
        )
        write_json(run_dir / "versions.json", library_versions() | {"device": str(device)})

    if run_dir is not None and not resumed_dir:
        write_run_files()
    epochs = 1 if options.dry_run else settings.epochs
    guard = RunGuard(settings, options.log_every, device, run_dir)
    run = Run(
        settings,
        options,
        network,
        optimizer,
        data,
        device,
        run_dir,
        guard,
        list(callbacks),
        epoch=done.epoch,
        step=done.step,
        first_step=done.step,
        history=done.history,
    )
    best_by = run.best_by
    fast, steps_taken_by = compiled.choose(run)
    run_epoch = epoch_function(run, compute_gradients, fast, out)
    evaluate_split = compiled.evaluation_function(run, fast)
    print(
        f"gd-torch train: {'-'.join(map(str, settings.layer_sizes))} network, "
        f"{sum(p.numel() for p in network.parameters()):,} weights and biases, "
        f"{len(data.train):,} training images"
        + (f" from {data.source}" if data.source else "")
        + f", device {device}, run {run_dir or '(none written)'}\n"
        f"{describe(settings, options)}\nSGD steps: {steps_taken_by}",
        file=out,
        flush=True,
    )
    if checkpoint:
        print(f"resuming after epoch {done.epoch}, step {done.step}", file=out, flush=True)

    result = TrainResult(run_dir, network, optimizer, run.history, done.best_accuracy, best_by)
    skip = done.batches_done
    sgd_seconds = done.history[-1].get("sgd_seconds", 0.0) if done.history else 0.0  # budget
    run_files_written = resumed_dir is None

    def save(names: list[str], epoch: int, order_state: Tensor, batches_done: int) -> None:
        """The checkpoint of now as each of ``names`` (last.pt, best.pt), serialised once."""
        nonlocal run_files_written
        if run_dir is not None and names:
            save_checkpoint(
                run_dir / names[0],
                training_checkpoint(
                    network,
                    optimizer.state_dict(),
                    optimizer_class(optimizer).__name__,
                    settings,
                    options,
                    epoch=epoch,
                    step=run.step,
                    batch_order_state=order_state,
                    batches_done=batches_done,
                    best_accuracy=result.best_accuracy,
                    best_by=best_by,
                    history=run.history,
                ),
                also=[run_dir / name for name in names[1:]],
            )
            if not run_files_written:
                write_run_files()
                run_files_written = True

    with guard:
        try:
            run.notify("on_run_start")
            for epoch in range(done.epoch + 1, epochs + 1):
                started = time.perf_counter()
                run.epoch = guard.epoch = epoch
                set_learning_rate(optimizer.param_groups, settings, epoch)
                order_state = order_generator.get_state()  # what a mid-epoch checkpoint needs
                order = shuffled_order(len(data.train), order_generator)[
                    skip * settings.batch_size :
                ]
                epoch_start, skip = run.step - skip, 0
                run.batches = math.ceil(len(order) / settings.batch_size)
                run.notify("on_epoch_start")
                weights_before = [p.detach().clone() for p in network.parameters()]
                run_epoch(order)
                sgd_seconds += time.perf_counter() - started
                if run.should_stop():  # Ctrl-C, SIGTERM or a callback, mid-epoch
                    save(["last.pt"], epoch - 1, order_state, run.step - epoch_start)
                    if guard.stop_signal is not None:
                        raise guard.interrupted(run.step, run.step - epoch_start)
                    break
                metrics = measure(lambda split: [evaluate_split(split)], data)[0]
                metrics |= {
                    "seconds": time.perf_counter() - started,
                    "sgd_seconds": sgd_seconds,
                    "learning_rate": settings.learning_rate_at(epoch),
                }
                guard.check_epoch(run.step, metrics["train_cost"], network)
                improved = metrics[best_by] >= result.best_accuracy
                result.best_accuracy = max(result.best_accuracy, metrics[best_by])
                run.history.append({"epoch": epoch, "step": run.step} | metrics)
                print(epoch_line(epoch, epochs, metrics), file=out, flush=True)
                if len(order) and (note := guard.learned_nothing(weights_before, network)):
                    print(note, file=out, flush=True)
                run.notify("on_epoch_end")
                out_of_time = bool(options.time_budget) and sgd_seconds >= options.time_budget
                if distributed.world_size() > 1:
                    out_of_time = distributed.any_rank(out_of_time)  # rank 0's clock may differ
                order_state = order_generator.get_state()
                due = epoch % options.checkpoint_every == 0 or epoch == epochs
                wanted = (("last.pt", due), ("best.pt", improved))
                save([name for name, now in wanted if now], epoch, order_state, 0)
                stopping = run.should_stop() or out_of_time  # also a signal during those saves
                if stopping and not due:
                    save(["last.pt"], epoch, order_state, 0)
                if guard.stop_signal is not None and stopping and epoch < epochs:
                    raise guard.interrupted(run.step, 0)
                if stopping and guard.stop_signal is None:
                    run.stop("the time budget" if out_of_time else "a callback asked to stop")
                    break
            result.stopped = run.stop_reason
            run.outcome = "stopped" if run.stop_reason else "finished"
        except BaseException as error:
            run.outcome = (
                "interrupted"
                if guard.stop_signal is not None
                else "diverged"
                if isinstance(error, Diverged)
                else "failed"
            )
            if isinstance(error, OSError):  # a full disk, a lost folder: say what is kept
                raise GdTorchError(
                    f"{os_error_message(error)}; the run stopped at step {run.step}; "
                    + guard.kept("its last checkpoint is kept:")
                ) from None
            raise
        finally:  # after a failure, that failure is what is reported, not the log's next one
            failing = run.outcome not in ("finished", "stopped")
            with contextlib.suppress(OSError) if failing else contextlib.nullcontext():
                run.notify("on_run_end")
        late = guard.stop_signal
    if late is not None:  # it came after the run's last check: nothing was left to stop
        print(
            f"{signals.name(late)} arrived as the run was ending, with nothing left to stop: "
            f"everything is saved ({run_dir or 'nothing written'})",
            file=out,
            flush=True,
        )
    signals.leaving(f" after the run had finished ({run_dir or 'nothing written'})")
    saved = f"run saved in {run_dir}" if run_dir else "nothing written"
    if not run.history:
        print(
            f"stopped ({result.stopped}) in epoch 1, before any evaluation; {saved}",
            file=out,
            flush=True,
        )
        return result
    stopped = f"stopped early ({result.stopped}); " if result.stopped else ""
    print(
        f"{stopped}final test accuracy {100 * result.final['test_accuracy']:.2f}% "
        f"(best {best_by.replace('_', ' ')} {100 * result.best_accuracy:.2f}%); {saved}",
        file=out,
        flush=True,
    )
    return result
