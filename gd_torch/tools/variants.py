"""The variants of a comparison: changes to the baseline's training settings.

    --variant "--cost cross-entropy"                    options of gd-torch train, as typed
    --variant "--momentum 0.9 --learning-rate 0.3"
    --variants variants.toml                            or a small TOML or JSON file:

        [cross-entropy]                                 # one table per variant: its name
        cost = "cross-entropy"

        [momentum]
        momentum = 0.9
        learning_rate = 0.3                             # or "learning-rate"

Any training setting may change, except the seed: the seeds are the comparison's own (--seeds),
the same for every variant, so that runs can be paired. Run options (where and how it runs) are
the comparison's too. Unknown, repeated and contradictory options, and a variant that changes
nothing, are refused with one line naming them.
"""

import argparse
import dataclasses
import json
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import RunOptions, TrainingSettings, add_arguments, to_dict

SETTING_NAMES = tuple(f.name for f in dataclasses.fields(TrainingSettings))
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))
PAIRED = ("seed",)  # the comparison's --seeds set these, for every variant alike


@dataclass(frozen=True)
class Variant:
    name: str  # "--cost cross-entropy", or the table's name in a variants file
    changes: dict[str, Any]  # the settings it changes, by name, as given
    settings: TrainingSettings  # the baseline's settings with the changes (seed: the baseline's)

    def describe(self) -> str:
        """The changes as gd-torch train options: ``--cost cross-entropy``."""
        return " ".join(_flag(name, value) for name, value in self.changes.items())


def _flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {' '.join(map(str, value)) if isinstance(value, tuple | list) else value}"


class _VariantParser(argparse.ArgumentParser):
    def error(self, message):
        raise GdTorchError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _VariantParser(prog="--variant", allow_abbrev=False, add_help=False)
    add_arguments(parser, TrainingSettings)
    return parser


def from_options(text: str, baseline: TrainingSettings) -> Variant:
    """A variant from ``gd-torch train`` options as one string."""
    name = " ".join(text.split())
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise GdTorchError(f'--variant "{name}": {error}') from None
    flags = [token.split("=")[0] for token in tokens if token.startswith("--")]
    for flag in flags:
        plain = flag[2:].replace("-", "_").removeprefix("no_")
        if plain in OPTION_NAMES:
            raise GdTorchError(
                f'--variant "{name}": {flag} is a run option, not a training setting: give it to '
                "gd-torch compare itself (it applies to every run)"
            )
    parser = _parser()
    try:
        arguments, unknown = parser.parse_known_args(tokens)
    except GdTorchError as error:
        raise GdTorchError(f'--variant "{name}": {error}') from None
    if unknown:
        raise GdTorchError(
            f'--variant "{name}": unknown option {unknown[0]} (a variant takes the training '
            "settings of gd-torch train, see gd-torch train --help)"
        )
    given = [_setting(flag) for flag in flags if _setting(flag)]  # --no-nesterov: nesterov
    repeated = sorted({dest for dest in given if given.count(dest) > 1})
    if repeated:
        raise GdTorchError(
            f'--variant "{name}": --{repeated[0].replace("_", "-")} is given more than once'
        )
    changes = {dest: getattr(arguments, dest) for dest in given}
    return _variant(name, changes, baseline, f'--variant "{name}"')


def _setting(flag: str) -> str | None:
    plain = flag[2:].replace("-", "_")
    return next(
        (name for name in (plain, plain.removeprefix("no_")) if name in SETTING_NAMES), None
    )


def from_file(path: str | Path, baseline: TrainingSettings) -> list[Variant]:
    """The variants of a TOML or JSON file: one table (object) of settings per variant name."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise GdTorchError(f"--variants {path}: cannot read it ({error.strerror})") from None
    try:
        tables = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise GdTorchError(f"--variants {path} is not valid {kind} ({error})") from None
    if not isinstance(tables, dict) or not tables:
        raise GdTorchError(f"--variants {path} holds no variants (one table of settings each)")
    variants = []
    for name, table in tables.items():
        where = f"--variants {path}, variant {name!r}"
        if not isinstance(table, dict):
            raise GdTorchError(f"{where}: must be a table of settings, not {table!r}")
        changes = {}
        for key, value in table.items():
            setting = key.replace("-", "_")
            if setting not in SETTING_NAMES:
                what = (
                    "a run option, not a training setting"
                    if setting in OPTION_NAMES
                    else ("not a training setting of gd-torch train")
                )
                raise GdTorchError(f"{where}: {key} is {what}")
            if setting in changes:
                raise GdTorchError(f"{where}: {key} is given more than once")
            changes[setting] = tuple(value) if isinstance(value, list) else value
        variants.append(_variant(name, changes, baseline, where))
    return variants


def _variant(name: str, changes: dict, baseline: TrainingSettings, where: str) -> Variant:
    for setting in PAIRED:
        if setting in changes:
            raise GdTorchError(
                f"{where}: --{setting} cannot change in a variant: the seeds are gd-torch "
                "compare's --seeds, the same for every variant, so that the runs pair up"
            )
    if not changes:
        raise GdTorchError(f"{where}: changes no setting")
    try:
        settings = dataclasses.replace(baseline, **changes)
    except GdTorchError as error:
        raise GdTorchError(f"{where}: {error}") from None
    except TypeError as error:  # a value of a type the checks could not compare
        raise GdTorchError(f"{where}: a value of the wrong type ({error})") from None
    if settings == baseline:
        raise GdTorchError(f"{where} is the baseline itself: its settings change nothing")
    return Variant(name, changes, settings)


def check_distinct(variants: list[Variant]) -> None:
    """Refuse two variants with the same name or the same settings."""
    for i, variant in enumerate(variants):
        for other in variants[:i]:
            if other.name == variant.name:
                raise GdTorchError(f"two variants are named {variant.name!r}")
            if to_dict(other.settings) == to_dict(variant.settings):
                raise GdTorchError(
                    f"variants {other.name!r} and {variant.name!r} are the same settings"
                )
