"""What a run is: two typed dataclasses, the training settings and the run options.

``TrainingSettings`` decide the result: the same settings give the same weights (on the CPU).
``RunOptions`` say where and how a run goes (data folder, device, threads, logging, compile)
and never change what is learned, beyond float rounding (``--compile``).

The command line is built from both (``add_arguments``); both are printed at the start of a
run and saved, labelled, in ``config.json`` and in every checkpoint. ``--resume`` refuses any
change to a training setting and accepts any run option. HPARAMS shows the training settings.
"""

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from gd_torch.core.cost import COSTS
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import INITIALIZATIONS, INPUT_SIZE, OUTPUT_SIZE

ENGINE_NAMES = ("manual", "autograd")
LR_SCHEDULES = ("constant", "cosine", "linear")
WEIGHT_DECAY_ON = ("all", "weights")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_data_root() -> str:
    """``$GD_TORCH_DATA`` when set, else ``./data`` (where torchvision downloads to)."""
    return os.environ.get("GD_TORCH_DATA") or "data"


def _option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    choices: Sequence[str] | None = None,
    default_factory: Any = dataclasses.MISSING,
    none: str = "None",
) -> Any:
    """A field; ``none`` is how its value None reads in the help and the banner."""
    return field(
        default=default,
        default_factory=default_factory,
        metadata={"help": help, "choices": choices, "none": none},
    )


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides what is learned: same settings, same weights (on the CPU)."""

    hidden_sizes: tuple[int, ...] = _option((16, 16), "neurons in each hidden layer")
    init: str = _option("nielsen-improved", "initial weights and biases", tuple(INITIALIZATIONS))
    cost: str = _option(
        "quadratic",
        "quadratic = Σ_j (a_j − y_j)², nielsen = half of it, mse = a tenth (nn.MSELoss), or "
        "cross-entropy = −Σ_j [y_j ln a_j + (1 − y_j) ln(1 − a_j)] (Nielsen, chapter 3)",
        COSTS,
    )
    engine: str = _option(
        "manual", "where ∇C comes from: the manual backprop twin or torch.autograd", ENGINE_NAMES
    )
    learning_rate: float = _option(3.0, "η in w ← w − η ∇C, in the units of --cost")
    momentum: float = _option(0.0, "torch.optim.SGD's momentum μ: v ← μv + ∇C, w ← w − ηv")
    nesterov: bool = _option(False, "torch.optim.SGD's Nesterov momentum (needs --momentum > 0)")
    weight_decay: float = _option(
        6e-5,
        "torch.optim.SGD's L2 weight decay λ: adds λw to the gradients of --weight-decay-on",
    )
    weight_decay_on: str = _option(
        "all",
        "all: every weight and bias (torch.optim's way), or weights: the weights only, as Nielsen "
        "decays them (chapter 3)",
        WEIGHT_DECAY_ON,
    )
    lr_schedule: str = _option(
        "cosine",
        "η per epoch: constant, or annealed from --learning-rate toward 0 along a cosine or a line",
        LR_SCHEDULES,
    )
    epochs: int = _option(60, "passes over the training set")
    batch_size: int = _option(10, "examples per SGD step (mini-batch size)")
    seed: int = _option(0, "seed of the initial weights and of the batch order")
    validation_size: int = _option(
        0,
        "hold out the last N training images for validation "
        "(Nielsen: 10000); best.pt is then chosen on them",
    )
    dtype: str = _option(
        "float32", "floating-point type of data, weights and gradients", tuple(DTYPES)
    )
    train_size: int = _option(
        0, "train on a random subset of N training images, drawn with --data-seed (0: all of them)"
    )
    label_noise: float = _option(
        0.0,
        "replace this fraction of the training labels by uniformly random digits, drawn with "
        "--data-seed (1: every label random; validation and test labels stay true)",
    )
    data_seed: int = _option(
        0,
        "seed of the --train-size subset and the --label-noise labels; apart from --seed, so "
        "that every seed of a sweep or a comparison trains on the same data",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for name in ("epochs", "batch_size"):
            _require(
                _is_int(getattr(self, name)) and getattr(self, name) >= 1,
                name,
                "a positive integer",
            )
        _require(
            all(_is_int(n) and n >= 1 for n in self.hidden_sizes),
            "hidden_sizes",
            "positive integers",
        )
        # 2·seed + 1 seeds a torch.Generator, which takes 64-bit seeds
        for name in ("seed", "data_seed"):
            _require(
                _is_int(getattr(self, name)) and 0 <= getattr(self, name) < 2**63,
                name,
                "an integer in 0 .. 2**63 - 1",
            )
        for name in ("validation_size", "train_size"):
            _require(
                _is_int(getattr(self, name)) and getattr(self, name) >= 0,
                name,
                "a non-negative integer",
            )
        _require(
            _is_number(self.label_noise) and 0 <= self.label_noise <= 1,
            "label_noise",
            "a fraction in [0, 1]",
        )
        for name in ("cost", "init", "engine", "lr_schedule", "dtype", "weight_decay_on"):
            choices = _choices(type(self), name)
            _require(getattr(self, name) in choices, name, "one of " + ", ".join(choices))
        largest = torch.finfo(DTYPES[self.dtype]).max  # a larger η or λ overflows in step one
        _require(
            _is_number(self.learning_rate) and 0 < self.learning_rate <= largest,
            "learning_rate",
            f"a finite number > 0 (and within {self.dtype})",
        )
        _require(
            _is_number(self.weight_decay) and 0 <= self.weight_decay <= largest,
            "weight_decay",
            f"a finite number >= 0 (and within {self.dtype})",
        )
        # below the smallest normal number, η ∂C/∂w (or λw) rounds away against every weight
        smallest = torch.finfo(DTYPES[self.dtype]).tiny
        for name, value, least, meaning in (
            ("learning_rate", self.learning_rate, "", "no step would change a weight"),
            ("weight_decay", self.weight_decay, "0 or ", "it would do nothing (0 turns it off)"),
        ):
            _require(
                value == 0 or value >= smallest,
                name,
                f"{least}at least {smallest:.3g}, the smallest normal {self.dtype} number: at "
                f"{value:g} {meaning}",
            )
        _require(
            _is_number(self.momentum) and 0 <= self.momentum < 1,
            "momentum",
            "a number in [0, 1) (at 1 and above the velocity never forgets and grows)",
        )
        _require(isinstance(self.nesterov, bool), "nesterov", "true or false")
        _require(
            not self.nesterov or self.momentum > 0,
            "nesterov",
            "given with --momentum > 0 (Nesterov momentum needs a momentum)",
        )

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(784, *hidden_sizes, 10)."""
        return (INPUT_SIZE, *self.hidden_sizes, OUTPUT_SIZE)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def schedule_factor(self, epoch: int) -> float:
        """η_epoch / η for epoch ``epoch`` (1-based): cosine ½(1 + cos(π(epoch−1)/epochs)),
        linear 1 − (epoch−1)/epochs, constant 1."""
        progress = (epoch - 1) / self.epochs
        return {
            "constant": 1.0,
            "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
            "linear": 1 - progress,
        }[self.lr_schedule]

    def learning_rate_at(self, epoch: int) -> float:
        """η during epoch ``epoch`` (1-based)."""
        return self.learning_rate * self.schedule_factor(epoch)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a run goes; none of these changes what is learned."""

    data_root: str = _option(
        help="MNIST folder in torchvision layout (default: $GD_TORCH_DATA or ./data)",
        default_factory=default_data_root,
    )
    download: bool = _option(True, "download MNIST with torchvision when it is not in --data-root")
    device: str = _option("auto", "auto picks cuda, then mps, then cpu", DEVICE_NAMES)
    threads: int = _option(
        1, "CPU threads for PyTorch; 1 is fastest for this small net and survives a busy machine"
    )
    compile: bool | None = _option(
        None,
        "the fast path: the same SGD steps, a thousand to one compiled call (seconds of "
        "compiling first; see README, Performance); auto: on the CPU, for plain SGD runs of "
        "100,000 steps or more without --time-budget; the banner says which",
        none="auto",
    )
    runs_dir: str | None = _option(
        "runs",
        "parent folder of the run directories (TensorBoard "
        "--logdir); from Python, None writes nothing",
    )
    run_name: str = _option(
        "", "readable part of the run directory's name (default: from the settings)"
    )
    log_every: int = _option(100, "log the mini-batch cost and gradient norm every N steps")
    image_every: int = _option(
        10,
        "draw the first-layer weights and the test confusion matrix "
        "into TensorBoard at step 0, every N epochs and after the last (0: never)",
    )
    checkpoint_every: int = _option(
        1,
        "write runs/<run>/last.pt every N epochs (and always after the last one and when stopped)",
    )
    snapshot_every: int = _option(
        0,
        "also keep the weights after every N-th SGD step in runs/<run>/trajectory.bin, beside "
        "those at step 0 and after every epoch (0: no more)",
    )
    time_budget: float = _option(
        0.0,
        "also stop after the first epoch at whose end the SGD "
        "steps have taken this many seconds (0: no limit)",
    )
    dry_run: bool = _option(False, "a quick check: 1 epoch on 1,000 training and 1,000 test images")

    def __post_init__(self) -> None:
        _require(
            isinstance(self.data_root, str) and self.data_root != "", "data_root", "a folder name"
        )
        _require(
            self.runs_dir is None or (isinstance(self.runs_dir, str) and self.runs_dir != ""),
            "runs_dir",
            "a folder name",
        )
        for name in ("download", "dry_run"):
            _require(isinstance(getattr(self, name), bool), name, "true or false")
        for name in ("threads", "log_every", "checkpoint_every"):
            _require(
                _is_int(getattr(self, name)) and getattr(self, name) >= 1,
                name,
                "a positive integer",
            )
        _require(
            _is_int(self.image_every) and self.image_every >= 0,
            "image_every",
            "a non-negative integer",
        )
        _require(
            _is_int(self.snapshot_every) and self.snapshot_every >= 0,
            "snapshot_every",
            "a non-negative integer",
        )
        _require(
            not (self.compile and self.snapshot_every),
            "snapshot_every",
            "0 with --compile (a compiled call takes up to a thousand steps at once, so the "
            "weights between them are never held; the snapshots after every epoch are kept)",
        )
        _require(
            _is_number(self.time_budget) and self.time_budget >= 0,
            "time_budget",
            "a finite number of seconds >= 0",
        )
        _require(
            isinstance(self.run_name, str)
            and "/" not in self.run_name
            and "\\" not in self.run_name
            and self.run_name not in (".", "..")
            and self.run_name.isprintable(),
            "run_name",
            "a plain name (no / or .., no control characters)",
        )
        _require(self.device in DEVICE_NAMES, "device", "one of " + ", ".join(DEVICE_NAMES))
        _require(self.compile in (None, True, False), "compile", "true, false or None (auto)")


Config = TypeVar("Config", TrainingSettings, RunOptions)


def to_dict(config: TrainingSettings | RunOptions) -> dict:
    return dataclasses.asdict(config)


def from_dict(kind: type[Config], values: dict) -> Config:
    """Rebuild from ``to_dict`` output; unknown keys are refused, missing ones take defaults."""
    if not isinstance(values, dict):
        raise GdTorchError(f"{kind.__name__} must be a dict, not {type(values).__name__}")
    unknown = set(values) - {f.name for f in dataclasses.fields(kind)}
    if unknown:
        raise GdTorchError(f"unknown {kind.__name__} keys: {', '.join(sorted(unknown))}")
    try:
        return kind(**values)
    except TypeError as error:  # a value of the wrong type that the checks could not compare
        raise GdTorchError(f"{kind.__name__} holds a value of the wrong type ({error})") from None


def describe(settings: TrainingSettings, options: RunOptions) -> str:
    """Both as aligned ``name: value`` lines under a heading each, printed when a run starts."""
    fields = [*dataclasses.fields(settings), *dataclasses.fields(options)]
    width = max(len(f.name) for f in fields)
    lines = []
    for heading, config in (("training settings", settings), ("run options", options)):
        lines.append(f"{heading}:")
        lines += [
            f"  {f.name:<{width}} : {_shown(getattr(config, f.name), f)}"
            for f in dataclasses.fields(config)
        ]
    return "\n".join(lines)


def _shown(value: object, f: dataclasses.Field) -> str:
    return f.metadata["none"] if value is None else str(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _choices(kind: type, name: str) -> tuple:
    (field,) = [f for f in dataclasses.fields(kind) if f.name == name]
    return field.metadata["choices"]


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise GdTorchError(f"--{name.replace('_', '-')} must be {what}")


def add_arguments(parser: argparse.ArgumentParser, kind: type, title: str | None = None) -> None:
    """One ``--kebab-case`` option per field of ``kind``, with "(default: X)" in its help.

    Options the user does not give are left out of the parsed namespace, so that a preset or
    a checkpoint can supply them (see ``from_arguments``).
    """
    group = parser.add_argument_group(title) if title else parser
    defaults = kind(**({"data_root": "<data_root>"} if kind is RunOptions else {}))
    for f in dataclasses.fields(kind):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else _shown(default, f)
        help = f.metadata["help"] + ("" if f.name == "data_root" else f" (default: {shown})")
        options = dict(dest=f.name, default=argparse.SUPPRESS, help=help)
        if f.type in (bool, bool | None):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif f.type == tuple[int, ...]:
            group.add_argument(flag, type=int, nargs="+", metavar="N", **options)
        else:
            value_type = str if f.type == str | None else f.type
            group.add_argument(flag, type=value_type, choices=f.metadata["choices"], **options)


def from_arguments(
    arguments: argparse.Namespace, kind: type[Config], base: Config | None = None
) -> Config:
    """The options of ``kind`` given on the command line, over ``base`` (default: kind())."""
    given = {
        f.name: getattr(arguments, f.name)
        for f in dataclasses.fields(kind)
        if hasattr(arguments, f.name)
    }
    return dataclasses.replace(base, **given) if base is not None else kind(**given)


def changed(given: Config, saved: Config) -> list[str]:
    """The fields whose values differ, as ``--flag given (was saved)``."""
    return [
        f"--{f.name.replace('_', '-')} {getattr(given, f.name)} (the run has "
        f"{getattr(saved, f.name)})"
        for f in dataclasses.fields(given)
        if getattr(given, f.name) != getattr(saved, f.name)
    ]
