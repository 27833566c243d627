"""gd-torch analyze on a short run over synthetic digits: every figure as a PNG and in
TensorBoard."""

import io
import re

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gd_torch import train
from gd_torch.analysis import descent_report, figures
from gd_torch.analysis.report import analyze
from gd_torch.cli import main
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, settings_of
from gd_torch.core.errors import GdTorchError
from gd_torch.core.loop import prepare_data, seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.settings import RunOptions
from tests.configs import split
from tests.fakes import write_mnist_files

FIGURES = (
    "first_layer_weights",
    "first_layer_gradient",
    "sensitivity_histogram",
    "one_weight",
    "noise",
    "confusion_matrix",
    "misclassified",
    "hidden_layers",
    "cost_surface",
    "cost_line",
    "gradient_quality",
    "nudges",
)
SMALL = dict(grid_size=9, gradient_draws=40)  # the defaults' code, at a test's size


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = write_mnist_files(tmp_path_factory.mktemp("data"))
    config = split(
        data_root=str(root),
        download=False,
        epochs=2,
        image_every=1,
        runs_dir=str(tmp_path_factory.mktemp("runs")),
    )
    return train(*config, out=io.StringIO())


@pytest.fixture(scope="module")
def analyzed(run):
    out = io.StringIO()
    written = analyze(run.run_dir / "last.pt", top=3, out=out, **SMALL)
    return written, out.getvalue()


def images_in_log(run_dir) -> dict[str, list]:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def test_every_figure_is_a_png_of_its_size_in_the_run_directory(run, analyzed):
    written, _ = analyzed
    assert set(written) == set(FIGURES)
    for name, path in written.items():
        assert path == run.run_dir / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = figures.SIZES[name]
            assert image.size == (round(width * figures.DPI), round(height * figures.DPI))
            image.verify()


def test_every_figure_is_in_tensorboard_as_the_same_image(run, analyzed):
    written, _ = analyzed
    logged = images_in_log(run.run_dir)
    for name, path in written.items():
        (event,) = logged[f"analysis/{name}"]
        assert event.step == run.final["step"]
        with Image.open(io.BytesIO(event.encoded_image_string)) as image, Image.open(path) as png:
            assert (event.width, event.height) == image.size == png.size


def test_training_draws_weights_and_confusion_matrix_at_step_0_and_every_epoch(run):
    logged = images_in_log(run.run_dir)
    for tag in (
        "images/first_layer_weights",
        "images/first_layer_weights_one_scale",
        "images/confusion_matrix",
    ):
        assert [event.step for event in logged[tag]] == [0] + [e["step"] for e in run.history]


def test_summary_names_the_sensitivities_noise_and_mistakes(analyzed):
    _, summary = analyzed
    assert (
        summary.count("more sensitive to W") == 2 * 3
    )  # top 3 at the trained and at the initial weights
    assert summary.count("more sensitive to b") == 2 * 3
    assert (
        "random noise" in summary
        and "confusion matrix" in summary
        and "12 figures written" in summary
    )


def test_summary_gives_the_planes_share_of_the_path_and_the_medians(run, analyzed):
    _, summary = analyzed
    snapshots = len(run.history) + 1  # step 0 and every epoch
    assert f"cost surface ({snapshots} snapshots of the trajectory" in summary
    shares = re.search(r"hold (\S+)% \+ (\S+)% = (\S+)% of its spread", summary)
    first, second, both = map(float, shares.groups())
    assert first >= second >= 0 and both == pytest.approx(first + second, abs=0.11) and both <= 100
    assert "on a 9 x 9 grid" in summary and "Goodfellow" in summary
    medians = re.findall(r"batch +([\d,]+): cosine (\S+) \| (\S+)", summary)
    assert [size for size, _, _ in medians] == ["1", "10", "100", "600"]  # 1,000 > 600 digits
    assert medians[-1][1:] == ("1.000", "1.000")
    assert "nudges of test digit #1 (a " in summary


def test_without_a_trajectory_the_plane_holds_the_start_and_the_end(run):
    """A run from before trajectories were kept: the surface section alone (analyze passes it
    None when the file is missing), not the whole of analyze again."""
    checkpoint = run.run_dir / "last.pt"
    state = load_checkpoint(checkpoint)
    trained, config = network_from_checkpoint(state, checkpoint)
    initial = Network(
        config.layer_sizes, config.init, seeded_generators(config.seed)[0], config.torch_dtype
    )
    data = prepare_data(config, settings_of(state, checkpoint)[1], torch.device("cpu"))
    drawn, lines = descent_report.surface_and_line(
        trained, initial, config, data, None, state["step"], grid_size=5, surface_digits=0
    )
    assert lines[0].startswith("cost surface: the run has no trajectory.bin")
    assert "no trajectory: the initial and the trained weights only" in lines[1]
    assert "hold 100.0% + 0.0%" in lines[1] and "on a 5 x 5 grid" in lines[2]
    assert set(drawn) == {"cost_surface", "cost_line"}


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("grid_size", 10, "--grid-size must be an odd integer >= 3"),
        ("grid_size", 1, "--grid-size must be an odd integer >= 3"),
        ("surface_digits", -1, "--surface-digits must be an integer >= 0"),
        ("gradient_draws", 0, "--gradient-draws must be a positive integer"),
        ("digit_index", 200, "--digit-index must be a test digit, 0 to 199, not 200"),
        ("digit_index", -1, "--digit-index must be a test digit"),
    ],
)
def test_bad_analyze_options_are_one_line_errors(run, option, value, message):
    with pytest.raises(GdTorchError, match=message):
        analyze(run.run_dir / "last.pt", **{option: value})


def test_image_every_zero_draws_nothing(tmp_path, fake_mnist_root):
    config = split(
        data_root=str(fake_mnist_root),
        download=False,
        epochs=1,
        image_every=0,
        runs_dir=str(tmp_path),
    )
    assert images_in_log(train(*config, out=io.StringIO()).run_dir) == {}


def test_image_every_must_not_be_negative():
    with pytest.raises(GdTorchError, match="--image-every must be a non-negative integer"):
        RunOptions(image_every=-1)


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_missing_or_corrupt_checkpoint_is_one_line(tmp_path, capsys, content):
    checkpoint = tmp_path / "last.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    with pytest.raises(SystemExit) as exit:
        main(["analyze", str(checkpoint)])
    assert exit.value.code == 2
    message = capsys.readouterr().err
    assert (
        message.startswith("gd-torch analyze: error: ")
        and str(checkpoint) in message
        and message.count("\n") == 1
    )


def test_top_must_be_positive(run):
    with pytest.raises(GdTorchError, match="--top must be a positive integer"):
        analyze(run.run_dir / "last.pt", top=0)
