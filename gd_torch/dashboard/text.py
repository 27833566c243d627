"""The TEXT tab: what a run is, as Markdown tables (TensorBoard renders tables and code blocks).

run/training_settings   setting | value | meaning       (what decides the result)
run/run_options         option | value | meaning        (where and how it ran)
run/versions            library | version               (what it ran on)
"""

import dataclasses

from gd_torch.core.settings import RunOptions, TrainingSettings


def _text(value) -> str:
    """A value as the command line takes it: a tuple as ``16 16``."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """A Markdown table; a ``|`` inside a cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = [[_text(value).replace("|", "\\|") for value in row] for row in rows]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def settings_table(group: list[TrainingSettings] | list[RunOptions], heading: str) -> str:
    """One row per field: its value (the values across ``group``, when they vary) and meaning.

    A flag is shown as on the command line, ``--learning-rate``."""
    rows = []
    for field in dataclasses.fields(group[0]):
        values = list(dict.fromkeys(getattr(config, field.name) for config in group))
        shown = ", ".join(map(_text, values))
        rows.append((f"--{field.name.replace('_', '-')}", shown, field.metadata["help"]))
    return table((heading, "value", "meaning"), rows)


def versions_table(versions: dict) -> str:
    return table(("library", "version"), list(versions.items()))


def run_texts(
    settings: list[TrainingSettings], options: RunOptions, versions: dict
) -> dict[str, str]:
    """{tag: Markdown} for a run, or for a group of runs (``settings`` of each member)."""
    return {
        "run/training_settings": settings_table(settings, "training setting"),
        "run/run_options": settings_table([options], "run option"),
        "run/versions": versions_table(versions),
    }
