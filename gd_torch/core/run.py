"""A run in progress, as the training loop and its callbacks see it.

    class StopAtNinety(gd_torch.Callback):
        def on_epoch_end(self, run):
            if run.metrics["test_accuracy"] >= 0.9:
                run.stop("reached 90%")            # the run ends cleanly, with a checkpoint

    gd_torch.train(settings, options, callbacks=[StopAtNinety()])

Callbacks run on every rank under torchrun (only rank 0 has a ``run_dir``). A stop asked for
in ``on_step_end`` takes effect after that step (under torchrun: at the next multiple of
--log-every, where the ranks agree); on the compiled fast path the step callbacks of a call run
after its steps (up to 1,000): each callback's ``on_steps_end`` gets them all (by default one
``on_step_end`` per step), while the network already holds the weights after the last, and a
stop takes effect after the call.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from gd_torch.core import distributed
from gd_torch.core.data import Mnist
from gd_torch.core.guard import RunGuard
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import OptimizerOrPlan, made


class Callback:
    """Hooks into the training loop; override the ones you need. Each receives the ``Run``."""

    def on_run_start(self, run: "Run") -> None:
        """Before the first step (of a resumed run: before its first new step)."""

    def on_epoch_start(self, run: "Run") -> None:
        """After η is set for ``run.epoch``; ``run.batches`` steps follow."""

    def on_step_end(self, run: "Run") -> None:
        """After each SGD step: ``run.step``, ``run.batch_cost``, ``run.gradient_norm()``."""

    def on_steps_end(self, run: "Run", steps: range) -> None:
        """After the steps of one compiled call (up to 1,000), at once: by default
        ``on_step_end`` once per step, ``run.step`` each of ``steps`` in turn. Override it to
        read only the steps you need, with ``run.replay(some of the steps)``."""
        if type(self).on_step_end is not Callback.on_step_end:  # else there is nothing to call
            for _ in run.replay(steps):
                self.on_step_end(run)

    def on_epoch_end(self, run: "Run") -> None:
        """After the epoch's evaluation: ``run.metrics``, before its checkpoint is written."""

    def on_run_end(self, run: "Run") -> None:
        """Always, last: ``run.outcome`` is finished, stopped, interrupted or diverged."""


@dataclass
class Run:
    """The state of one training run: what it trains, how far it is, and whether to stop."""

    settings: TrainingSettings
    options: RunOptions
    network: Network
    optimizer_or_plan: OptimizerOrPlan  # its SGD as a plan until asked for: gd_torch.core.sgd
    data: Mnist
    device: torch.device
    run_dir: Path | None  # where checkpoints and logs go; None on other ranks and from Python
    guard: RunGuard
    callbacks: list[Callback] = field(default_factory=list)
    epoch: int = 0  # the epoch in progress (1-based), or the last one finished
    step: int = 0  # SGD steps taken
    first_step: int = 0  # the step this process started from: > 0 when resumed
    batches: int = 0  # mini-batches in this epoch (fewer when resumed mid-epoch)
    history: list[dict] = field(default_factory=list)  # one dict of metrics per finished epoch
    stop_reason: str | None = None
    outcome: str = "running"
    # the mini-batch costs C of the last call's steps, () for one step or (n,) for a compiled
    # call, their ‖∇C‖ when the fast path gave them, and which of them is run.step's
    _batch_costs: Tensor | None = None
    _gradient_norms: Tensor | None = None
    _index: int = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer; ``gd-torch train``'s own SGD is made here, when first asked
        for (the param groups and state_dict of ``optimizer_or_plan`` do not make it)."""
        return made(self.optimizer_or_plan)

    @property
    def metrics(self) -> dict:
        """The last finished epoch's metrics (train/test/validation cost and accuracy, ...)."""
        return self.history[-1] if self.history else {}

    @property
    def best_by(self) -> str:
        """What best.pt is chosen on: validation accuracy when there is a validation set (the
        test set would then be tuned on), else test accuracy, as Nielsen reports it."""
        return "test_accuracy" if self.data.validation is None else "validation_accuracy"

    @property
    def resumed(self) -> bool:
        return self.first_step > 0

    @property
    def batch_cost(self) -> Tensor | None:
        """The last step's mini-batch cost C (a 0-d tensor), before its update; None before the
        first step."""
        return None if self._batch_costs is None else _pick(self._batch_costs, self._index)

    def gradient_norm(self) -> Tensor:
        """‖∇C‖ of the last step: from the fast path when it gave one, else from each .grad."""
        if self._gradient_norms is not None:
            return _pick(self._gradient_norms, self._index)
        return gradient_norm([p.grad for p in self.network.parameters() if p.grad is not None])

    def stop(self, reason: str = "a callback asked to stop") -> None:
        """End the run cleanly after this step (or epoch), with a resumable checkpoint."""
        self.stop_reason = self.stop_reason or reason

    def finish_step(self, batch_cost: Tensor) -> bool:
        """Count the step, check it, run the step callbacks; True when the run should stop."""
        self.step += 1
        self._batch_costs, self._gradient_norms, self._index = batch_cost, None, 0
        self.guard.check_step(self.step, batch_cost, self.network)  # NaN or inf: raises Diverged
        for callback in self.callbacks:
            callback.on_step_end(self)
        return self.should_stop(every=self.options.log_every)

    def finish_steps(self, batch_costs: Tensor, gradient_norms: Tensor) -> bool:
        """``finish_step`` for the n steps of one compiled call, given their costs and ‖∇C‖ (n,),
        at a fraction of n calls' cost: the costs are checked at once, and each callback's
        ``on_steps_end`` gets the call's steps, reading a step's cost and norm only when it asks
        for them."""
        self._batch_costs, self._gradient_norms = batch_costs, gradient_norms
        first_step = self.step
        finite = self.guard.finite_steps(batch_costs)  # all of them, unless the run diverged
        steps = range(first_step + 1, first_step + 1 + finite)
        self.step, self._index = first_step + finite, max(finite - 1, 0)
        for callback in self.callbacks:
            callback.on_steps_end(self, steps)
        if finite < len(batch_costs):
            self.step, self._index = self.step + 1, finite
            self.guard.check_step(self.step, batch_costs[finite], self.network)  # raises Diverged
        self.guard.check_weights(first_step, self.step, self.network)
        return self.should_stop()

    def replay(self, steps: range) -> Iterator[int]:
        """Each of ``steps``, steps of the last compiled call, in turn as ``run.step``, with its
        ``batch_cost`` and ``gradient_norm()``; then back at the call's last step."""
        last, first_of_call = self.step, self.step - self._index
        try:
            for self.step in steps:
                self._index = self.step - first_of_call
                yield self.step
        finally:
            self.step, self._index = last, last - first_of_call

    def should_stop(self, every: int = 1) -> bool:
        """A signal or a callback asked to stop. Under torchrun the ranks agree, every ``every``
        steps, so that all stop after the same step (their all-reduces stay paired)."""
        asked = self.stop_reason is not None or self.guard.stop_signal is not None
        if distributed.world_size() == 1:
            return asked
        return self.step % every == 0 and distributed.any_rank(asked)

    def notify(self, event: str) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self)


def _pick(values: Tensor, index: int) -> Tensor:
    """The value of one step: a 0-d tensor as it is, else element ``index`` (made on demand: a
    view of each of a call's thousand costs would cost more than the loop that reads them)."""
    return values if values.dim() == 0 else values[index]


def gradient_norm(gradients: list[Tensor]) -> Tensor:
    """‖∇C‖ = √(Σ_l ‖∂C/∂W^l‖² + ‖∂C/∂b^l‖²), over every weight matrix and bias vector."""
    return torch.stack([gradient.norm() for gradient in gradients]).norm()


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr (``gd-torch train`` shows it on a terminal)."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_epoch_start(self, run: Run) -> None:
        self.bar = tqdm(total=run.batches, leave=False, unit="batch")

    def on_step_end(self, run: Run) -> None:
        if self.bar is not None:
            self.bar.update()

    def on_epoch_end(self, run: Run) -> None:
        self.close()

    def on_run_end(self, run: Run) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
