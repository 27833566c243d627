"""The configuration of a training run: one typed dataclass.

The command line is built from its fields (``add_config_arguments``), it is printed at the
start of every run, and saved as a plain dict in the run directory, in every checkpoint
and in TensorBoard's HPARAMS tab.
"""

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field

from gd_torch.cost import COST_SCALES
from gd_torch.errors import GdTorchError
from gd_torch.model import INITIALIZATIONS, INPUT_SIZE, OUTPUT_SIZE

ENGINE_NAMES = ("manual", "autograd")
LR_SCHEDULES = ("constant", "cosine", "linear")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
FLOAT32_MAX = 3.4028234663852886e38  # the weights are float32: a larger η or λ overflows in the very first step


def default_data_root() -> str:
    """``$GD_TORCH_DATA`` when set, else ``./data`` (where torchvision downloads to)."""
    return os.environ.get("GD_TORCH_DATA") or "data"


def _option(default=dataclasses.MISSING, help: str = "", choices=None, default_factory=dataclasses.MISSING):
    return field(default=default, default_factory=default_factory, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; same config and seed, same result (on CPU)."""

    hidden_sizes: tuple[int, ...] = _option((16, 16), "neurons in each hidden layer")
    epochs: int = _option(60, "passes over the training set")
    time_budget: float = _option(0.0, "also stop after the first epoch at whose end the SGD steps have taken this many seconds (0: no limit)")
    batch_size: int = _option(10, "examples per SGD step (mini-batch size)")
    learning_rate: float = _option(3.0, "η in w ← w − η ∇C, in the units of --cost")
    lr_schedule: str = _option("cosine", "η per epoch: constant, or annealed from --learning-rate toward 0 along a cosine or a straight line", LR_SCHEDULES)
    weight_decay: float = _option(6e-5, "L2 regularisation λ of torch.optim.SGD: adds λw to each weight's gradient")
    cost: str = _option("quadratic", "cost convention: quadratic = Σ_j (a_j − y_j)², nielsen = half of it, mse = a tenth (nn.MSELoss)", tuple(COST_SCALES))
    init: str = _option("nielsen-improved", "initial weights and biases", tuple(INITIALIZATIONS))
    engine: str = _option("manual", "where the gradient comes from: manual backprop twin or torch.autograd", ENGINE_NAMES)
    seed: int = _option(0, "seed of the initial weights and of the batch order")
    validation_size: int = _option(0, "hold out the last N training images for validation (Nielsen: 10000)")
    data_root: str = _option(help="MNIST folder in torchvision layout (default: $GD_TORCH_DATA or ./data)", default_factory=default_data_root)
    download: bool = _option(True, "download MNIST with torchvision when it is not in --data-root")
    compile: bool = _option(False, "compile the whole SGD step (gather, forward, backward, update) with torch.compile: seconds of compiling first, then faster steps (see README, Performance)")
    device: str = _option("auto", "auto picks cuda, then mps, then cpu", DEVICE_NAMES)
    threads: int = _option(1, "CPU threads for PyTorch; 1 is fastest for this small net and survives a busy machine")
    runs_dir: str = _option("runs", "parent folder of the run directories (TensorBoard --logdir)")
    run_name: str = _option("", "readable part of the run directory's name (default: from the settings)")
    log_every: int = _option(100, "log the mini-batch cost and gradient norm to TensorBoard every N steps")
    image_every: int = _option(10, "draw the first-layer weights and the test confusion matrix into TensorBoard's IMAGES tab every N epochs and after the last (0: never)")
    checkpoint_every: int = _option(1, "write runs/<run>/last.pt every N epochs (and always after the last one and when stopped)")
    dry_run: bool = _option(False, "a quick check: 1 epoch on 1,000 training and 1,000 test images")

    def __post_init__(self):
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for name in ("epochs", "batch_size", "threads", "log_every", "checkpoint_every"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "a positive integer")
        _require(all(_is_int(n) and n >= 1 for n in self.hidden_sizes), "hidden_sizes", "positive integers")
        _require(_is_int(self.seed) and 0 <= self.seed < 2**63, "seed", "an integer in 0 .. 2**63 - 1")  # 2·seed + 1 seeds a generator
        _require(_is_int(self.validation_size) and self.validation_size >= 0, "validation_size", "a non-negative integer")
        _require(_is_int(self.image_every) and self.image_every >= 0, "image_every", "a non-negative integer")
        _require(_is_number(self.learning_rate) and 0 < self.learning_rate <= FLOAT32_MAX, "learning_rate", "a finite number > 0 (and within float32)")
        _require(_is_number(self.weight_decay) and 0 <= self.weight_decay <= FLOAT32_MAX, "weight_decay", "a finite number >= 0 (and within float32)")
        _require("/" not in self.run_name and "\\" not in self.run_name and self.run_name not in (".", ".."), "run_name", "a plain name (no / or ..)")
        _require(_is_number(self.time_budget) and self.time_budget >= 0, "time_budget", "a finite number of seconds >= 0")
        for name in ("cost", "init", "engine", "device", "lr_schedule"):
            choices = _choices(name)
            _require(getattr(self, name) in choices, name, "one of " + ", ".join(choices))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(784, *hidden_sizes, 10)."""
        return (INPUT_SIZE, *self.hidden_sizes, OUTPUT_SIZE)

    def learning_rate_at(self, epoch: int) -> float:
        """η during epoch ``epoch`` (1-based): cosine gives η·½(1 + cos(π(epoch−1)/epochs)), linear η·(1 − (epoch−1)/epochs)."""
        progress = (epoch - 1) / self.epochs
        factor = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1 - progress}[self.lr_schedule]
        return self.learning_rate * factor

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild from ``to_dict`` output; unknown keys are refused, missing ones take defaults."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise GdTorchError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**values)

    def describe(self) -> str:
        """The config as aligned ``name: value`` lines, printed at the start of a run."""
        width = max(len(f.name) for f in dataclasses.fields(self))
        return "\n".join(f"  {f.name:<{width}} : {getattr(self, f.name)}" for f in dataclasses.fields(self))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choices(name: str) -> tuple:
    return TrainConfig.__dataclass_fields__[name].metadata["choices"]


def _require(ok: bool, name: str, what: str):
    if not ok:
        raise GdTorchError(f"--{name.replace('_', '-')} must be {what}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` option per TrainConfig field, with "(default: X)" in its help.

    Options the user does not give are left out of the parsed namespace, so that a preset
    or a checkpoint's config can supply them (see ``config_from_arguments``).
    """
    defaults = TrainConfig(data_root="<data_root>")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help = f.metadata["help"] + ("" if f.name == "data_root" else f" (default: {shown})")
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=help)
        if f.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.type == tuple[int, ...]:
            parser.add_argument(flag, type=int, nargs="+", metavar="N", **kwargs)
        else:
            parser.add_argument(flag, type=f.type, choices=f.metadata["choices"], **kwargs)


def config_from_arguments(arguments: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The options given on the command line, over ``base`` (default: TrainConfig())."""
    given = {f.name: getattr(arguments, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(arguments, f.name)}
    return dataclasses.replace(base, **given) if base is not None else TrainConfig(**given)
