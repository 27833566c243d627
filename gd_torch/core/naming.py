"""Short names for runs: the training settings that tell a run from the others, then its seed.

    lr3_s0                 a default run: its learning rate and seed
    b100_lr0.5_s2          --batch-size 100 --learning-rate 0.5 --seed 2
    lr1.5_s03              one copy of a sweep over rates and seeds 0..15 (seeds padded to sort)

Run directories, TensorBoard's run names and the HPARAMS tab's trial names all come from here,
so a run is called the same everywhere. A name lists settings in the order of
``TrainingSettings``, with the seed last; each setting is a short tag (``SHORT_NAMES``).
"""

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from gd_torch.core.settings import TrainingSettings

ALWAYS_NAMED = ("learning_rate", "seed")  # what a single run's name always shows


def _number(value: float) -> str:
    return f"{value:g}"


SHORT_NAMES: dict[str, Callable[[Any], str]] = {  # setting -> its tag in a name, from its value
    "hidden_sizes": lambda sizes: "h" + ("-".join(map(str, sizes)) or "none"),
    "init": lambda init: f"init-{init}",
    "cost": lambda cost: f"cost-{cost}",
    "engine": str,
    "learning_rate": lambda rate: f"lr{_number(rate)}",
    "momentum": lambda momentum: f"mom{_number(momentum)}",
    "nesterov": lambda nesterov: "nesterov" if nesterov else "no-nesterov",
    "weight_decay": lambda decay: f"wd{_number(decay)}",
    "lr_schedule": lambda schedule: f"sched-{schedule}",
    "epochs": lambda epochs: f"e{epochs}",
    "batch_size": lambda size: f"b{size}",
    "seed": lambda seed: f"s{seed}",
    "validation_size": lambda size: f"val{size}",
    "dtype": str,
    "weight_decay_on": lambda on: f"wd-on-{on}",
    "train_size": lambda size: f"n{size}",
    "label_noise": lambda noise: f"noise{_number(noise)}",
    "data_seed": lambda seed: f"ds{seed}",
}
SETTING_ORDER = [f.name for f in dataclasses.fields(TrainingSettings)]


def changed_from_defaults(settings: TrainingSettings) -> list[str]:
    """The settings whose values are not ``TrainingSettings()``'s, in field order."""
    defaults = TrainingSettings()
    return [name for name in SETTING_ORDER if getattr(settings, name) != getattr(defaults, name)]


def varying(group: list[TrainingSettings]) -> list[str]:
    """The settings that take more than one value across ``group``, in field order."""
    return [name for name in SETTING_ORDER if len({getattr(s, name) for s in group}) > 1]


def label(settings: TrainingSettings, names: Iterable[str], seed_width: int = 0) -> str:
    """``names``' tags joined by ``_``, in field order, the seed last (zero-padded to
    ``seed_width`` digits, so that names sort by seed); empty when ``names`` is."""
    names = set(names)
    tags = [SHORT_NAMES[name](getattr(settings, name)) for name in SETTING_ORDER if name in names]
    if "seed" in names:
        tags.remove(SHORT_NAMES["seed"](settings.seed))
        tags.append(f"s{settings.seed:0{seed_width}d}")
    return "_".join(tags)


def single_run_names(settings: TrainingSettings) -> list[str]:
    """What a run trained on its own is named by: the settings it changed from the defaults,
    and always its learning rate and seed."""
    return [*changed_from_defaults(settings), *ALWAYS_NAMED]


def sweep_name(base: TrainingSettings, copies: int) -> str:
    """``sweep_b100_4copies``: the settings the copies share that are not the defaults (the
    swept learning rate and seed aside), and how many copies."""
    shared = label(base, [n for n in changed_from_defaults(base) if n not in ALWAYS_NAMED])
    return "_".join(["sweep", *([shared] if shared else []), f"{copies}copies"])


def group_labels(group: list[TrainingSettings]) -> list[str]:
    """One name per member of a group (a sweep's copies): the settings that vary across it,
    then the seed, zero-padded; unique when the members are."""
    names = [*varying(group), "seed"]
    width = len(str(max(s.seed for s in group)))
    return [label(settings, names, width) for settings in group]
