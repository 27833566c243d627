"""Stopping a run early without losing it: on Ctrl-C / SIGTERM, and when it diverges.

Ctrl-C (SIGINT), SIGTERM, SIGHUP, SIGUSR1 or SIGUSR2 only ask the run to stop
(``gd_torch.core.signals``): the current SGD step finishes, then ``train`` writes last.pt
(mid-epoch too, so --resume continues bit for bit), flushes TensorBoard and exits with 128 + the
signal number (130, 143). A second signal of the same kind stops at once, leaving the previous
checkpoint. (Under torchrun a Ctrl-C reaches the workers twice, as SIGINT from the terminal and as
SIGTERM from the torchrun agent: one stop.)

Divergence: a non-finite cost, or weights that went non-finite or beyond ±1e20, stop the run
(exit status 3) before any of them is saved. Weights that large mean SGD has blown up (with
--weight-decay λ, each step multiplies w by 1 − ηλ, so ηλ > 2 makes it grow geometrically):
every sigmoid is saturated, and TensorBoard's histograms stop at ±1e20 anyway.

What is checked, and how often, is a matter of cost:
the batch cost is a scalar the step computes anyway, so every step's is checked on the CPU
(on the compiled fast path all of a call's at once, naming the first bad one), but only every
--log-every steps on an accelerator, where reading it forces a device sync (the
logging pays one at those steps anyway). A NaN gradient gives NaN weights, whose
cost is NaN in the very next step. But weights can also grow to ±inf while the saturated
sigmoids keep the cost finite, so the weights themselves are checked every --log-every steps,
and with the gradients before every checkpoint and histogram. Measured on one CPU thread
(batch 10, manual engine): these checks add ~6 µs to a 188 µs step; checking all 13,002
weights every step would add ~115 µs.
"""

import contextlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gd_torch.core import signals
from gd_torch.core.cost import COST_SCALES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import Network
from gd_torch.core.settings import TrainingSettings

LARGEST_WEIGHT = 1e20
DEFAULT_RATE = TrainingSettings().learning_rate  # trains stably: the defaults' search and tests


class Interrupted(GdTorchError):
    """Stopped by a signal after a checkpoint was written; exits with 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class Diverged(GdTorchError):
    """The cost or the weights became NaN or infinite."""

    exit_code = 3


class RunGuard:
    """``with RunGuard(...) as guard:`` turns stop signals into ``guard.stop_signal``; checks
    for divergence."""

    def __init__(
        self, settings: TrainingSettings, log_every: int, device: torch.device, run_dir: Path | None
    ):
        self.settings, self.log_every, self.run_dir = settings, log_every, run_dir
        self.cost_every = 1 if device.type == "cpu" else log_every
        self.epoch = 0  # set by the epoch loop, for the messages
        self._signals: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> "RunGuard":
        self._signals = signals.training(lambda n: "; " + self.kept("kept the last checkpoint,"))
        self._signals.__enter__()
        return self

    def __exit__(self, *exception: Any) -> None:
        assert self._signals is not None  # entered
        self._signals.__exit__(*exception)

    @property
    def stop_signal(self) -> int | None:
        """The stop signal received during the run, or None."""
        return signals.requested() if self._signals is not None else None

    def kept(self, saved: str = "saved") -> str:
        """What a stop leaves: the last checkpoint written, and how to continue from it."""
        last = None if self.run_dir is None else self.run_dir / "last.pt"
        if last is None:
            return "nothing saved (no run directory)"
        if not last.exists():
            return f"no checkpoint had been written yet in {self.run_dir}"
        return f"{saved} {last}; continue with: gd-torch train --resume {self.run_dir}"

    def interrupted(self, step: int, batches_done: int) -> Interrupted:
        """The stop, once a stop signal has been received."""
        number = self.stop_signal
        assert number is not None
        return Interrupted(
            f"stopped by {signals.name(number)} after step {step} ({batches_done} "
            f"batches into epoch {self.epoch}); {self.kept()}",
            number,
        )

    def check_step(self, step: int, batch_cost: Tensor, network: Network) -> None:
        """After SGD step ``step`` (1-based), whose cost was computed before its update; see
        the module docstring for what is checked when."""
        if step % self.cost_every == 0 and not math.isfinite(batch_cost):
            raise self._diverged(f"the batch cost is {batch_cost.item()}", step)
        self.check_weights(step - 1, step, network)

    def check_weights(self, before: int, after: int, network: Network) -> None:
        """After steps before + 1, ..., after: the weights, when a multiple of --log-every is among
        them (for a compiled call of many steps, the weights after its last)."""
        due = after // self.log_every * self.log_every
        if due > before and not _all_sane(network.parameters()):
            raise self._diverged(
                f"some weights or biases are not finite or beyond ±{LARGEST_WEIGHT:g}", due
            )

    @staticmethod
    def finite_steps(batch_costs: Tensor) -> int:
        """How many of these consecutive steps' costs are finite before the first that is not
        (all of them, normally): one check for a whole compiled call."""
        finite = torch.isfinite(batch_costs)
        return len(finite) if bool(finite.all()) else int(finite.int().argmin())

    def check_epoch(self, step: int, train_cost: float, network: Network) -> None:
        """Before an epoch's checkpoint: the cost over the whole training set, every weight, bias
        and gradient."""
        if not math.isfinite(train_cost):
            raise self._diverged(f"the training cost is {train_cost}", step)
        gradients = [
            parameter.grad for parameter in network.parameters() if parameter.grad is not None
        ]
        if not _all_sane([*network.parameters(), *gradients]):
            raise self._diverged(
                f"some weights, biases or gradients are not finite or beyond ±{LARGEST_WEIGHT:g}",
                step,
            )

    def learned_nothing(self, weights_before: list[Tensor], network: Network) -> str | None:
        """A note when an epoch of SGD steps left every weight and bias exactly as it was: each
        step η ∂C/∂w was below half the float spacing of w, so it rounded away (a learning rate
        of 1e-20 in float32 is valid and trains nothing)."""
        if not all(torch.equal(p, w) for p, w in zip(network.parameters(), weights_before)):
            return None
        return (
            f"note: epoch {self.epoch} changed no weight or bias: at learning rate "
            f"{self.settings.learning_rate_at(self.epoch):g} every SGD step rounds away in "
            f"{self.settings.dtype}; choose a larger --learning-rate"
        )

    def _diverged(self, what: str, step: int) -> Diverged:
        last = None if self.run_dir is None else self.run_dir / "last.pt"
        kept = (
            f"the last good checkpoint, {last}, is kept"
            if last and last.exists()
            else "no checkpoint had been written yet"
        )
        return Diverged(
            f"diverged at step {step} (epoch {self.epoch}, learning rate "
            f"{self.settings.learning_rate_at(self.epoch):g}): {what}; {kept}. "
            f"{divergence_hint(self.settings)}"
        )


def divergence_hint(settings: TrainingSettings) -> str:
    """What to try instead, with a learning rate that does not diverge for a reason known now.

    With weight decay λ and momentum μ, the decay alone is the recursion v ← μv + λw,
    w ← w − ηv, which shrinks w only while ηλ < 2(1 + μ): at and beyond it the weights grow
    geometrically whatever the gradient. The rate suggested is a quarter of this one, at most
    half that bound, and at most the default rate in this cost convention, slowed by momentum
    (the steps of momentum μ add up to 1/(1 − μ) times one step), which trains stably.
    """
    rate, decay, momentum = settings.learning_rate, settings.weight_decay, settings.momentum
    candidates = [rate / 4, DEFAULT_RATE / COST_SCALES[settings.cost] * (1 - momentum)]
    explanation = ""
    if decay:
        bound = 2 * (1 + momentum) / decay
        candidates.append(bound / 2)
        if rate >= bound:
            explanation = (
                f" (η λ = {rate * decay:g} ≥ {2 * (1 + momentum):g}: the weight decay alone makes "
                f"the weights grow at every step whatever the gradient; η must stay below "
                f"{bound:.3g})"
            )
    decay_hint = f" or --weight-decay (now {decay:g})" if decay else ""
    return (
        f"Hint: start a new run with a smaller --learning-rate (e.g. {min(candidates):.3g})"
        f"{decay_hint}{explanation}"
    )


def _all_sane(tensors: Iterable[Tensor]) -> bool:
    """Every value finite and within ±LARGEST_WEIGHT (NaN fails the comparison too)."""
    return all(bool((tensor.abs() <= LARGEST_WEIGHT).all()) for tensor in tensors)


def sane_copies(stacked: list[Tensor]) -> Tensor:
    """For K networks stacked on a leading dimension (gd_torch.core.stacked): which copies have
    every value finite and within ±LARGEST_WEIGHT, a (K,) bool tensor."""
    return torch.stack(
        [(t.abs() <= LARGEST_WEIGHT).flatten(start_dim=1).all(1) for t in stacked]
    ).all(0)
