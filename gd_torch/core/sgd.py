"""The run's optimizer: torch.optim.SGD, w ← w − η (∇C + λw), and its η epoch by epoch.

``gd-torch train`` holds its SGD as a ``PlannedSGD`` until something asks for the optimizer
itself. The first torch.optim optimizer a process makes imports torch._dynamo (about 2 s:
torch.optim disables the compiler on its methods, and that needs the compiler), and a run on
the native steps never calls its optimizer: the steps update the weights from its η and λ. So
the plan holds the parameter groups SGD would hold, and gives their state_dict; ``make()``
builds the SGD over those very groups when the reference loop steps, a callback reads
``run.optimizer`` or a run resumes.
"""

import inspect
from collections.abc import Callable
from typing import Any

import torch

from gd_torch.core.model import Network
from gd_torch.core.settings import TrainingSettings


class PlannedSGD:
    """``sgd(settings)(network)`` before it is made: its ``param_groups`` (plain dicts, each
    with SGD's defaults, its own values and its parameters) and ``state_dict()``, as SGD
    itself would give them before its first step; once made, the SGD's own."""

    def __init__(self, settings: TrainingSettings, network: Network) -> None:
        groups, self.arguments = _sgd_arguments(settings, network)
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(torch.optim.SGD).parameters.items()
            if parameter.default is not parameter.empty
        } | self.arguments
        self.groups = [defaults | group for group in groups]
        self.optimizer: torch.optim.SGD | None = None

    @property
    def param_groups(self) -> list[dict]:
        """The groups: the plan's until the SGD is made, then the SGD's (which starts from the
        same dicts, and gets new ones from ``load_state_dict``)."""
        return self.groups if self.optimizer is None else self.optimizer.param_groups

    def make(self) -> torch.optim.SGD:
        """The torch.optim.SGD, made once, over the plan's group dicts (η as set so far)."""
        if self.optimizer is None:
            self.optimizer = torch.optim.SGD(self.groups, **self.arguments)
        return self.optimizer

    def state_dict(self) -> dict:
        """The SGD's ``state_dict()``. Before it is made no step has run, so it holds no
        per-parameter state, only the groups, their parameters numbered in order as
        ``Optimizer.state_dict`` packs them."""
        if self.optimizer is not None:
            return self.optimizer.state_dict()
        packed, first = [], 0
        for group in self.groups:
            count = len(group["params"])
            own = {name: value for name, value in group.items() if name != "params"}
            packed.append(own | {"params": list(range(first, first + count))})
            first += count
        return {"state": {}, "param_groups": packed}


OptimizerFactory = Callable[[Network], torch.optim.Optimizer]  # the Python API's optimizer=
OptimizerOrPlan = torch.optim.Optimizer | PlannedSGD


def made(optimizer: OptimizerOrPlan) -> torch.optim.Optimizer:
    """The optimizer itself: a plan's SGD is made here, when first asked for."""
    return optimizer.make() if isinstance(optimizer, PlannedSGD) else optimizer


def optimizer_class(optimizer: OptimizerOrPlan) -> type:
    """torch.optim.SGD for a plan, else the optimizer's own class."""
    return torch.optim.SGD if isinstance(optimizer, PlannedSGD) else type(optimizer)


def sgd(settings: TrainingSettings) -> OptimizerFactory:
    """torch.optim.SGD with the settings' η, momentum, Nesterov and weight decay.

    Without momentum, ``fused=True``: the same arithmetic, bit for bit, as the default
    per-tensor loop, in one kernel for all six tensors, which on this small network halves the
    cost of a step(). With momentum the fused kernel rounds differently, so SGD's default runs.
    ``--weight-decay-on weights`` makes two parameter groups, the weights with λ and the biases
    without, as Nielsen decays them (with λ = 0 they would be the same step: one group); ``all``
    keeps one group with every parameter.
    """
    return lambda network: PlannedSGD(settings, network).make()


def _sgd_arguments(settings: TrainingSettings, network: Network) -> tuple[list[dict], dict]:
    """The parameter groups and keyword arguments of ``sgd(settings)``'s torch.optim.SGD."""
    on_fused_device = next(network.parameters()).device.type in ("cpu", "cuda")
    groups: list[dict[str, Any]] = [{"params": list(network.parameters())}]
    if settings.weight_decay_on == "weights" and settings.weight_decay:
        groups = [
            {"params": [layer.weight for layer in network.layers]},
            {"params": [layer.bias for layer in network.layers], "weight_decay": 0.0},
        ]
    return groups, {
        "lr": settings.learning_rate,
        "momentum": settings.momentum,
        "nesterov": settings.nesterov,
        "weight_decay": settings.weight_decay,
        "fused": (on_fused_device and not settings.momentum) or None,
    }


def set_learning_rate(param_groups: list[dict], settings: TrainingSettings, epoch: int) -> None:
    """η of each parameter group for ``epoch``: its initial η times the schedule's factor."""
    for group in param_groups:
        group.setdefault("initial_lr", group["lr"])  # as torch.optim.lr_scheduler keeps it
        group["lr"] = group["initial_lr"] * settings.schedule_factor(epoch)
