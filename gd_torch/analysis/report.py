"""``gd-torch analyze CHECKPOINT``: figures of a trained network as PNG files in its run directory,
the same images in the run's TensorBoard log (IMAGES tab, tags ``analysis/<name>``), and a text
summary, printed and in the log (TEXT tab, ``analysis/summary``).
"""

import dataclasses
import io
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from gd_torch.analysis import descent_report, figures
from gd_torch.analysis.gradient_quality import DRAWS
from gd_torch.analysis.one_weight import OneWeight, descend
from gd_torch.analysis.outputs import Answers, Mistakes, noise_images, outputs
from gd_torch.analysis.sensitivity import full_gradient, most_sensitive
from gd_torch.analysis.surface import check_grid
from gd_torch.core import manual
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, settings_of
from gd_torch.core.data import Mnist, Split
from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import refuse_to_replace, require_writable, write_file
from gd_torch.core.loop import prepare_data, seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.settings import TrainingSettings
from gd_torch.core.trajectory import Trajectory, saved_trajectory

FIGURES = (  # <name>.png and analysis/<name>, in the order drawn
    "first_layer_weights",
    "first_layer_gradient",
    "sensitivity_histogram",
    "one_weight",
    "noise",
    "confusion_matrix",
    "misclassified",
    "hidden_layers",
    "cost_surface",  # these two need the run's trajectory.bin
    "cost_line",
    "gradient_quality",
    "nudges",
)
HIDDEN_VIEW_DIGITS = 4
MISTAKES_SHOWN = 24
DESCENT_STEPS = 12


def analyze(
    checkpoint: str | Path,
    data_root: str | None = None,
    download: bool = True,
    top: int = 5,
    one_weight_rate: float | None = None,
    out=None,
    grid_size: int = 41,
    surface_digits: int = 10_000,
    gradient_draws: int = DRAWS,
    digit_index: int = 1,
    projector: Callable[[Path, str, str, Network, Split], str] | None = None,
) -> dict[str, Path]:
    """Draw every figure, write it as ``<run dir>/<name>.png`` and into TensorBoard; returns
    {name: png path}.

    ``projector(run_dir, name, when, network, test)``, when given, writes the trained network's
    embedding for TensorBoard's PROJECTOR and returns its title (``gd-torch analyze`` passes
    ``gd_torch.dashboard.projector.embed``: this layer does not import the dashboard)."""
    out = out or sys.stdout  # looked up now, so that a redirected sys.stdout is used
    if top < 1:
        raise GdTorchError(f"--top must be a positive integer, not {top}")
    if one_weight_rate is not None and not (math.isfinite(one_weight_rate) and one_weight_rate > 0):
        raise GdTorchError(f"--one-weight-rate must be a finite number > 0, not {one_weight_rate}")
    check_grid(grid_size, surface_digits)
    if gradient_draws < 1:
        raise GdTorchError(f"--gradient-draws must be a positive integer, not {gradient_draws}")
    state = load_checkpoint(checkpoint)
    trained, config = network_from_checkpoint(state, checkpoint)
    options = settings_of(state, checkpoint)[1]
    weights = sum(layer.weight.numel() for layer in trained.layers)
    if top > weights:
        raise GdTorchError(f"--top {top} is more than the network's {weights:,} weights")
    run_dir = Path(checkpoint).parent
    for name in FIGURES:  # before the work, not after it: what may not be replaced, or written
        refuse_to_replace(run_dir / f"{name}.png")
    require_writable(run_dir)
    options = dataclasses.replace(
        options, data_root=data_root or options.data_root, download=download
    )
    initial = Network(
        config.layer_sizes, config.init, seeded_generators(config.seed)[0], config.torch_dtype
    )  # the run's untrained network
    data = prepare_data(config, options, torch.device("cpu"))
    run_dir = Path(checkpoint).parent
    if not 0 <= digit_index < len(data.test):
        raise GdTorchError(
            f"--digit-index must be a test digit, 0 to {len(data.test) - 1}, not {digit_index}"
        )
    trajectory_file = saved_trajectory(run_dir)
    trajectory = Trajectory.load(trajectory_file) if trajectory_file else None
    if trajectory is not None and trajectory.layer_sizes != config.layer_sizes:
        raise GdTorchError(
            f"{trajectory_file} holds a {trajectory.layer_sizes} network, the checkpoint a "
            f"{config.layer_sizes} one"
        )
    print(
        f"gd-torch analyze: {checkpoint}: {'-'.join(map(str, config.layer_sizes))} network "
        f"after {state['epoch']} epochs ({state['step']:,} SGD steps); "
        f"{len(data.train):,} training and {len(data.test):,} test digits",
        file=out,
    )

    drawn, summary = {}, []
    sections = (
        _weights,
        partial(_sensitivity, top=top),
        partial(_one_weight, rate=one_weight_rate),
        _noise,
        _mistakes,
        _hidden_layers,
        partial(
            descent_report.surface_and_line,
            trajectory=trajectory,
            step=state["step"],
            grid_size=grid_size,
            surface_digits=surface_digits,
        ),
        partial(descent_report.mini_batch_gradients, draws=gradient_draws),
        partial(descent_report.one_examples_nudges, digit_index=digit_index),
    )
    for section in sections:
        section_figures, lines = section(trained, initial, config, data)
        drawn |= section_figures
        summary += lines
        for line in lines:
            print(line, file=out, flush=True)

    written = write_figures(drawn, run_dir, state["step"], summary)
    embedding = projector and projector(
        run_dir,
        f"analyze_{Path(checkpoint).stem}_step{state['step']}",
        f"{Path(checkpoint).name}, gd-torch analyze (step {state['step']:,})",
        trained,
        data.test,
    )
    print(
        f"{len(written)} figures written to {run_dir}/ "
        f"({', '.join(p.name for p in written.values())}) and to its "
        f"TensorBoard log under IMAGES, analysis/"
        + (", the summary under TEXT" if summary else "")
        + (f", {embedding} under PROJECTOR" if embedding else "")
        + f" (tensorboard --logdir {run_dir.parent})",
        file=out,
    )
    return written


def write_figures(
    drawn: dict[str, Figure], run_dir: Path, step: int, summary: list[str] = ()
) -> dict[str, Path]:
    """Each figure as ``run_dir/<name>.png`` and into the TensorBoard log there (IMAGES,
    ``analysis/<name>`` at ``step``), and the printed ``summary`` lines under TEXT
    (``analysis/summary``); returns {name: png path}."""
    written = {}
    writer = SummaryWriter(str(run_dir))
    try:
        for name, figure in drawn.items():
            png = io.BytesIO()
            figure.savefig(
                png, format="png", dpi=figures.DPI
            )  # drawn once: the file and TensorBoard get the same pixels
            written[name] = run_dir / f"{name}.png"
            write_file(written[name], png.getvalue())
            writer.add_image(
                f"analysis/{name}",
                np.asarray(Image.open(png).convert("RGB")),
                step,
                dataformats="HWC",
            )
        if summary:
            writer.add_text("analysis/summary", "\n".join(f"    {line}" for line in summary), step)
    finally:
        writer.close()
    return written


def _weights(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist
) -> tuple[dict[str, Figure], list[str]]:
    first = {"initial (untrained)": initial.layers[0].weight, "trained": trained.layers[0].weight}
    figure = figures.neuron_images(
        "first_layer_weights",
        "What each first-layer neuron looks for: its 784 weights as a 28x28 image",
        first,
    )
    change = (trained.layers[0].weight - initial.layers[0].weight).norm() / initial.layers[
        0
    ].weight.norm()
    return {"first_layer_weights": figure}, [
        f"first-layer weights: |W1 − W1_initial| / |W1_initial| = {change:.2f}"
    ]


def _sensitivity(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist, top: int
) -> tuple[dict[str, Figure], list[str]]:
    lines, panels = [], {}
    for label, network in (("initial", initial), ("trained", trained)):
        gradient = full_gradient(network, data.train, config.cost, config.engine)
        panels[label] = gradient
        norm = torch.cat([g.flatten() for pair in gradient for g in pair]).norm()
        lines.append(
            f"sensitivity at the {label} weights (|∇C| = {norm:.3g} over the "
            f"{len(data.train):,} training digits):"
        )
        weights, biases = most_sensitive(gradient, top)
        lines += [f"  {s.sentence()}" for s in weights + biases]
    gradient_images = figures.neuron_images(
        "first_layer_gradient",
        "∂C/∂W1: how the cost changes with each first-layer weight (green: raising it raises C)",
        {label: gradient[0][0] for label, gradient in panels.items()},
    )
    histogram = figures.sensitivity_histogram(
        {label: [w for w, _ in gradient] for label, gradient in panels.items()}
    )
    return {"first_layer_gradient": gradient_images, "sensitivity_histogram": histogram}, lines


def _one_weight(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist, rate: float | None
) -> tuple[dict[str, Figure], list[str]]:
    """Descend on the weight the trained cost is most sensitive to, from 3 away on the steeper
    side."""
    name = most_sensitive(full_gradient(trained, data.train, config.cost, config.engine), 1)[0][
        0
    ].name  # "W3[5, 3]"
    layer, row, column = (
        int(name[1 : name.index("[")]),
        *map(int, name[name.index("[") + 1 : -1].split(", ")),
    )
    weight = OneWeight(trained, data.train, config.cost, layer, row, column, config.engine)
    center = weight.trained_value
    start = max((center - 3, center + 3), key=weight.cost)
    rate = rate or 1 / abs(
        weight.slope(start)
    )  # the first step goes a third of the way back to the trained value
    path = descend(weight.slope, start, rate, DESCENT_STEPS)
    grid = torch.linspace(center - 4, center + 4, 81).tolist()
    figure = figures.one_weight(
        name,
        (grid, [weight.cost(w) for w in grid]),
        (path, [weight.cost(w) for w in path]),
        rate,
        center,
    )
    lines = [
        f"one weight, one slope: {name} (trained value {center:.3f}): {DESCENT_STEPS} steps of "
        f"η = {rate:.3g} from {start:.3f} end at {path[-1]:.3f}; step sizes "
        f"{', '.join(f'{abs(b - a):.3f}' for a, b in zip(path, path[1:4]))}, ...",
        f"  (with the training η = {config.learning_rate:g} the first step would be "
        f"{config.learning_rate * abs(weight.slope(start)):.4f}: "
        f"one weight of {trained.num_parameters:,} hardly moves the average cost)",
    ]
    return {"one_weight": figure}, lines


def _noise(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist
) -> tuple[dict[str, Figure], list[str]]:
    noise = noise_images(len(data.test), torch.Generator().manual_seed(config.seed)).to(
        config.torch_dtype
    )
    answers = {
        "test digits": Answers.of(outputs(trained, data.test.images)),
        "random noise": Answers.of(outputs(trained, noise)),
    }
    lines = [
        f"noise: {len(noise):,} images of uniform random pixels "
        f"vs the {len(data.test):,} test digits"
    ]
    for label, answer in answers.items():
        counts = answer.digit_counts()
        lines.append(
            f"  {label:<12}: highest activation median {answer.highest.median():.3f}, "
            f"above 0.9 for {100 * (answer.highest > 0.9).float().mean():.1f}%; "
            f"most often answers {counts.argmax()} "
            f"({100 * counts.max() / counts.sum():.1f}%)"
        )
    return {"noise": figures.noise(answers)}, lines


def _mistakes(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist
) -> tuple[dict[str, Figure], list[str]]:
    output = outputs(trained, data.test.images)
    mistakes = Mistakes.of(output, data.test)
    shown = mistakes.confident_mistakes[:MISTAKES_SHOWN]
    lines = [
        "confusion matrix on the test digits (rows: true digit, columns: predicted):",
        "       " + " ".join(f"{d:>5}" for d in range(10)) + "   right",
    ]
    for digit, (row, accuracy) in enumerate(
        zip(mistakes.confusion.tolist(), mistakes.per_digit_accuracy.tolist())
    ):
        lines.append(
            f"  {digit:>3}  "
            + " ".join(f"{count:>5}" for count in row)
            + f"  {100 * accuracy:5.1f}%"
        )
    lines.append(
        f"{len(mistakes.confident_mistakes):,} test digits answered wrong; the most confident: "
        + ", ".join(
            f"#{i} {data.test.labels[i]}→{output[i].argmax()} ({output[i].max():.2f})"
            for i in shown[:5].tolist()
        )
    )
    return {
        "confusion_matrix": figures.confusion_matrix(mistakes.confusion),
        "misclassified": figures.misclassified(
            data.test.images[shown], data.test.labels[shown], output[shown]
        ),
    }, lines


def _hidden_layers(
    trained: Network, initial: Network, config: TrainingSettings, data: Mnist
) -> tuple[dict[str, Figure], list[str]]:
    images = data.test.images[:HIDDEN_VIEW_DIGITS]
    with torch.inference_mode():
        _, activations = manual.forward(trained, images)  # [a^0, a^1, ..., a^L]
    figure = figures.hidden_layers(images, activations, [layer.weight for layer in trained.layers])
    return {"hidden_layers": figure}, []
