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


HOW_TO_READ = """\
- **Step 0** is the untrained network: the epoch charts, histograms and images start there
  (about 10% of the digits right), before the first SGD step.
- **Smoothing** draws a moving average (weight 0.6) of each line. On a run of a few epochs it
  lags by about an epoch (the cost drawn for epoch 1 is mostly the untrained one): set it to 0
  for the `epoch/` charts. The `batch/` charts (a few digits a step) are noisy and gain from it.
- **Ignore outliers in chart scaling** cuts the y axis to the 5th-95th percentile of the points:
  on a short run, step 0 and the best epochs fall off the chart. Untick it.
- **CUSTOM SCALARS** puts the train and test cost on one chart (the gap is overfitting), the
  accuracies on another, the learning rate η and ‖∇C‖ on a third.
- **HISTOGRAMS**: `weight_gradients` and `bias_gradients` are ∂C/∂W and ∂C/∂b of the cost over
  the first 1,000 training digits, the same digits each time.
- **IMAGES**: `first_layer_weights` shows each neuron at its own brightness (its largest |w|),
  `first_layer_weights_one_scale` all of them on one scale.
- TensorBoard keeps 1,000 points of a scalar, 10 images and 51 histograms per tag and samples
  the rest at random; `tensorboard --samples_per_plugin scalars=N,images=N` keeps more.
"""


def run_texts(
    settings: list[TrainingSettings], options: RunOptions, versions: dict
) -> dict[str, str]:
    """{tag: Markdown} for a run, or for a group of runs (``settings`` of each member)."""
    return {
        "run/training_settings": settings_table(settings, "training setting"),
        "run/run_options": settings_table([options], "run option"),
        "run/versions": versions_table(versions),
        "run/how_to_read": HOW_TO_READ,
    }
