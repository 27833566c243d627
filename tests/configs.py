"""Settings and options for tests, from one set of keyword values."""

import dataclasses

from gd_torch.core.settings import RunOptions, TrainingSettings

SETTING_NAMES = {f.name for f in dataclasses.fields(TrainingSettings)}


def split(**values) -> tuple[TrainingSettings, RunOptions]:
    """(TrainingSettings, RunOptions) from keyword values, each to the dataclass that has it."""
    settings = {k: v for k, v in values.items() if k in SETTING_NAMES}
    options = {k: v for k, v in values.items() if k not in SETTING_NAMES}
    return TrainingSettings(**settings), RunOptions(**options)
