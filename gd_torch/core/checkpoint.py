"""Checkpoints: one dict of tensors and plain values, safe to load with ``weights_only=True``.

    format              2 (checkpoints without it are from before the settings split, and load)
    model               the network's state_dict
    optimizer           the optimizer's state_dict (its param groups carry initial_lr)
    optimizer_class     e.g. "SGD": a resumed run must use the same kind of optimizer
    settings            the TrainingSettings, as a dict: what decides the result
    options             the RunOptions, as a dict: where and how it ran
    epoch, step         epochs finished and SGD steps taken when it was written
    batch_order_state   the batch-order torch.Generator's state that epoch + 1's order is drawn from
    batches_done        batches of epoch + 1 already trained on: 0, except when stopped mid-epoch
    torch_rng_state     torch's global CPU RNG state (ByteTensor)
    best_accuracy       the best per-epoch accuracy so far, on the split named by best_by
    best_by             "validation_accuracy" when the run holds out a validation set, else
                        "test_accuracy" (as Nielsen reports it)
    history             the per-epoch metrics so far (TrainResult.history)

A run keeps two in its directory: last.pt (rewritten every --checkpoint-every epochs, after the
last epoch and when stopped) and best.pt (the epoch with the best ``best_by`` accuracy).

A checkpoint is a file, and a file can be anything: ``load_checkpoint`` is the one place that
checks everything in it (``_validate``: keys, types, shapes, value ranges, how the numbers fit
together) before anyone uses it, and names the file and what is wrong with it.
"""

import dataclasses
import io
import math
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import write_file
from gd_torch.core.guard import LARGEST_WEIGHT
from gd_torch.core.memory import require_network_memory
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions, TrainingSettings, from_dict, to_dict

FORMAT = 2
REQUIRED_KEYS = ("model", "optimizer", "settings", "options", "epoch", "step")
BEST_BY = ("test_accuracy", "validation_accuracy")
HISTORY_METRICS = ("train_cost", "test_cost", "test_accuracy")  # what every epoch's entry holds
RNG_STATE_SIZE = torch.Generator().get_state().numel()  # bytes of a CPU generator's state


def save_checkpoint(path: Path, state: dict, also: Sequence[Path] = ()) -> None:
    """Serialise in memory, then write atomically (``gd_torch.core.files.write_file``): a full
    disk is then an OSError naming the file, not torch.save's RuntimeError from inside its
    zip writer, and the old checkpoint is kept whole. The same checkpoint goes to each path of
    ``also`` too, serialised and written once."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_file(path, buffer.getvalue(), also)


def training_checkpoint(
    network: Network,
    optimizer_state: dict,
    optimizer_class: str,
    settings: TrainingSettings,
    options: RunOptions,
    *,
    epoch: int,
    step: int,
    batch_order_state: torch.Tensor,
    batches_done: int,
    best_accuracy: float,
    best_by: str,
    history: list[dict],
) -> dict:
    """Everything the next SGD step depends on, so a resumed run continues bit for bit.
    ``optimizer_state``: the optimizer's ``state_dict()``; ``optimizer_class``: its class's name."""
    return {
        "format": FORMAT,
        "model": network.state_dict(),
        "optimizer": optimizer_state,
        "optimizer_class": optimizer_class,
        "settings": to_dict(settings),
        "options": to_dict(options),
        "epoch": epoch,
        "step": step,
        "batch_order_state": batch_order_state,
        "batches_done": batches_done,
        "torch_rng_state": torch.get_rng_state(),
        "best_accuracy": best_accuracy,
        "best_by": best_by,
        "history": history,
    }


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, on the CPU, in today's format and checked whole; a GdTorchError
    naming the file and the problem for anything else."""
    path = Path(path)
    if path.is_dir():
        raise GdTorchError(f"{path} is a folder, not a checkpoint")
    if not path.is_file():
        raise GdTorchError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text advises an unsafe load: never repeat it
        raise GdTorchError(
            f"{path} is not a readable checkpoint: it holds Python objects other than tensors "
            "and plain values, which gd_torch never writes and never unpickles"
        ) from None
    except OSError:
        raise  # said by the command line's one place for OS errors
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GdTorchError(f"{path} is not a readable checkpoint ({first_line})") from None
    if isinstance(state, dict) and "format" not in state and "config" in state:
        state = _from_format_1(state)
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise GdTorchError(f"{path} is not a gd_torch checkpoint (missing {', '.join(missing)})")
    if state.get("format") != FORMAT:
        raise GdTorchError(
            f"{path} has checkpoint format {state.get('format')!r}; this gd_torch "
            f"reads format {FORMAT} and the older one without a format key"
        )
    _validate(state, path)
    return state


def _validate(state: dict, path: Path) -> None:
    """Everything the loop, resume, eval, analyze and predict read from a checkpoint, checked."""

    def refuse(problem: str) -> NoReturn:
        raise GdTorchError(f"{path} is not a checkpoint gd_torch can use: {problem}")

    settings, options = settings_of(state, path)
    model = state["model"]
    if not isinstance(model, dict):
        refuse(f"its model is a {type(model).__name__}, not a dict of tensors")
    expected: dict[str, tuple[int, ...]] = {}
    for l, (n_in, n_out) in enumerate(zip(settings.layer_sizes, settings.layer_sizes[1:])):
        expected[f"layers.{l}.weight"], expected[f"layers.{l}.bias"] = (n_out, n_in), (n_out,)
    if set(model) != set(expected):
        refuse(
            f"its model holds {', '.join(sorted(map(str, model))) or 'nothing'}, but a "
            f"{'-'.join(map(str, settings.layer_sizes))} network has {', '.join(expected)}"
        )
    for name, shape in expected.items():
        tensor = model[name]
        if not _is_plain_tensor(tensor) or not tensor.is_floating_point():
            refuse(f"its model's {name} is not a tensor of floating-point numbers")
        if tuple(tensor.shape) != shape:
            refuse(
                f"its model's {name} is {tuple(tensor.shape)}, but its settings' "
                f"{'-'.join(map(str, settings.layer_sizes))} network needs {shape}"
            )
        if not bool((tensor.abs() <= LARGEST_WEIGHT).all()):  # NaN fails too: never saved
            refuse(f"its model's {name} holds values that are not finite or beyond ±1e20")
    _validate_optimizer(state, [tuple(shape) for shape in expected.values()], refuse)

    final_epoch = 1 if options.dry_run else settings.epochs
    epoch, step = state["epoch"], state["step"]
    if not _is_int(epoch) or not 0 <= epoch <= final_epoch:
        refuse(f"its epoch is {epoch!r}, not a whole number of epochs in 0..{final_epoch}")
    batches_done = state.get("batches_done", 0)
    if not _is_int(batches_done) or batches_done < 0 or (batches_done and epoch == final_epoch):
        refuse(f"its batches_done is {batches_done!r}")
    if not _is_int(step) or step < epoch + batches_done:
        refuse(
            f"its step is {step!r}, but {epoch} epochs and {batches_done} batches take at least "
            f"{epoch + batches_done} SGD steps"
        )
    for name in ("batch_order_state", "torch_rng_state"):
        value = state.get(name, torch.zeros(RNG_STATE_SIZE, dtype=torch.uint8))
        if (
            not _is_plain_tensor(value)
            or value.dtype != torch.uint8
            or value.shape != (RNG_STATE_SIZE,)
        ):
            refuse(f"its {name} is not the {RNG_STATE_SIZE}-byte state of a torch.Generator")
    if not isinstance(state.get("optimizer_class", "SGD"), str):
        refuse("its optimizer_class is not a name")
    best_by = state.get("best_by", "test_accuracy")
    if best_by not in BEST_BY or (best_by == "validation_accuracy") != (
        settings.validation_size > 0
    ):
        refuse(f"its best_by is {best_by!r} for --validation-size {settings.validation_size}")
    if not _is_fraction(state.get("best_accuracy", 0.0)):
        refuse(f"its best_accuracy is {state.get('best_accuracy')!r}, not a fraction in [0, 1]")
    history = state.get("history", [{"epoch": e} for e in range(1, epoch + 1)])
    if not isinstance(history, list) or len(history) != epoch:
        refuse(f"its history does not hold one entry for each of its {epoch} epochs")
    needed = HISTORY_METRICS + (("validation_accuracy",) if settings.validation_size else ())
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or entry.get("epoch") != number:
            refuse(f"entry {number} of its history is not epoch {number}'s")
        if "history" not in state:
            continue
        if not all(name in entry for name in needed) or not all(
            _is_number(value) for value in entry.values()
        ):
            refuse(f"entry {number} of its history lacks a metric or holds a non-number")
        if not all(_is_fraction(v) for k, v in entry.items() if k.endswith("accuracy")):
            refuse(f"entry {number} of its history holds an accuracy outside [0, 1]")


def _validate_optimizer(
    state: dict, shapes: list[tuple[int, ...]], refuse: Callable[[str], NoReturn]
) -> None:
    """A torch.optim state_dict for the network's tensors (any optimizer: the Python API takes
    any), each per-tensor state a number or a tensor of that tensor's shape (or one number)."""
    optimizer = state["optimizer"]
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    per_tensor = optimizer.get("state") if isinstance(optimizer, dict) else None
    if not isinstance(groups, list) or not isinstance(per_tensor, dict):
        refuse("its optimizer is not a torch.optim state_dict (state and param_groups)")
    indices = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            refuse("a parameter group of its optimizer lists no params")
        lr: Any = group.get("lr")
        if not (_is_number(lr) or (_is_plain_tensor(lr) and lr.numel() == 1)) or not lr >= 0:
            refuse(f"a parameter group of its optimizer has the learning rate {lr!r}")
        indices += group["params"]
    if not all(map(_is_int, indices)) or sorted(indices) != list(range(len(shapes))):
        refuse(f"its optimizer's params are {indices}, not the network's {len(shapes)} tensors")
    for index, values in per_tensor.items():
        if index not in indices or not isinstance(values, dict):
            refuse(f"its optimizer holds state for {index!r}, which is none of its tensors")
        for name, value in values.items():
            fits = (
                value is None
                or _is_number(value)
                or (_is_plain_tensor(value) and tuple(value.shape) in (shapes[index], (), (1,)))
            )
            if not fits:
                refuse(f"its optimizer's {name} of tensor {index} does not fit that tensor")


def _is_plain_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.layout == torch.strided


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_fraction(value: object) -> bool:
    return isinstance(value, int | float) and _is_number(value) and 0 <= value <= 1


def _from_format_1(state: dict) -> dict:
    """A checkpoint of before the settings split: one flat ``config``, best on test accuracy."""
    config = state.pop("config")
    if not isinstance(config, dict):
        return state  # refused by the key check
    names = {f.name for f in dataclasses.fields(TrainingSettings)}
    state["settings"] = {k: v for k, v in config.items() if k in names}
    state["options"] = {k: v for k, v in config.items() if k not in names}
    state["format"], state["optimizer_class"], state["best_by"] = FORMAT, "SGD", "test_accuracy"
    state["best_accuracy"] = state.pop("best_test_accuracy", 0.0)
    for group in (
        state["optimizer"].get("param_groups", []) if isinstance(state["optimizer"], dict) else []
    ):
        group.setdefault("initial_lr", config.get("learning_rate", group.get("lr")))
    return state


def settings_of(state: dict, path: str | Path) -> tuple[TrainingSettings, RunOptions]:
    """The training settings and run options a checkpoint was written with."""
    try:
        return from_dict(TrainingSettings, state["settings"]), from_dict(
            RunOptions, state["options"]
        )
    except GdTorchError as error:
        raise GdTorchError(f"{path} holds settings this gd_torch cannot use ({error})") from None


def network_from_checkpoint(
    state: dict, path: str | Path = "the checkpoint"
) -> tuple[Network, TrainingSettings]:
    """Rebuild the trained network and its training settings from a loaded checkpoint (checked
    by ``load_checkpoint``: its tensors fit its settings)."""
    settings, _ = settings_of(state, path)
    require_network_memory(settings.layer_sizes, settings.torch_dtype, torch.device("cpu"))
    network = Network(settings.layer_sizes, settings.init, dtype=settings.torch_dtype)
    network.load_state_dict(state["model"])
    return network, settings
