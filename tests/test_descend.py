"""gd-torch descend: gradient descent and SGD from the same start, compared at equal epochs and at
equal steps, on one plane."""

import io

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gd_torch.analysis import figures
from gd_torch.cli import main
from gd_torch.core.cost import cost
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.trajectory import Trajectory
from gd_torch.core.weight_space import point_of
from gd_torch.tools.descend import descend
from tests.fakes import synthetic_digits, write_mnist_files

STEPS = 25  # 600 synthetic digits: gradient descent 25 steps; SGD at 100, 6 an epoch; at 10, 60


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    root = write_mnist_files(tmp_path_factory.mktemp("data"))
    out = io.StringIO()
    run_dir, descents = descend(
        str(root),
        download=False,
        epochs=1,
        steps=STEPS,
        batch_sizes=(100, 10),
        runs_dir=str(tmp_path_factory.mktemp("runs")),
        grid_size=7,
        out=out,
    )
    return run_dir, descents, out.getvalue()


def test_the_walkers_start_together_and_take_their_steps(walked):
    _, descents, _ = walked
    assert [(d.name, d.batch_size) for d in descents] == [
        ("gradient descent", 600),
        ("SGD, batch 100", 100),
        ("SGD, batch 10", 10),
    ]
    initial = Network(init="nielsen-improved", generator=seeded_generators(0)[0])
    for d, last_step in zip(descents, (STEPS, STEPS, 60)):  # max(steps, one epoch of steps)
        assert torch.equal(d.trajectory.points[0], point_of(initial))
        assert d.trajectory.steps[0] == 0 and d.trajectory.steps[-1] == last_step
        assert set(range(STEPS + 1)) | {d.steps_per_epoch} <= set(d.trajectory.steps)
        assert {0, 1, 10, STEPS, d.steps_per_epoch, last_step} <= set(d.measured)


def test_gradient_descent_is_plain_full_batch_descent(walked):
    """Its 25 steps, retraced by hand with autograd: w ← w − η ∇C over all 600 digits."""
    _, descents, _ = walked
    images, labels = synthetic_digits(600, seed=1)
    images = images.reshape(600, 784).float() / 255
    targets = torch.nn.functional.one_hot(labels, 10).float()
    network = Network(init="nielsen-improved", generator=seeded_generators(0)[0])
    for _ in range(STEPS):
        network.zero_grad()
        cost(network(images, weighted_output=True), targets).backward()
        with torch.no_grad():
            for parameter in network.parameters():
                parameter -= 3.0 * parameter.grad
    gradient_descent = descents[0].trajectory
    torch.testing.assert_close(
        gradient_descent.points[gradient_descent.steps.index(STEPS)],
        point_of(network),
        rtol=1e-4,
        atol=1e-5,
    )
    reached = descents[0].at(STEPS)[0].cost
    assert reached == pytest.approx(
        cost(network(images, weighted_output=True), targets).item(), rel=1e-4
    )


def test_the_comparison_prints_the_costs_and_names_the_lowest(walked):
    _, descents, printed = walked
    for heading, step_of in (
        ("at 1 epoch(s) each, the same compute", lambda d: d.steps_per_epoch),
        (f"at {STEPS} steps each", lambda d: STEPS),
    ):
        block = printed.split(f"{heading}:\n")[1].split("\n")[:5]  # the header, 3 rows, lowest
        for d, row in zip(descents, block[1:4], strict=True):
            train, test = d.at(step_of(d))
            assert row.split() == [
                *d.name.split(),
                f"{d.batch_size:,}",
                f"{step_of(d):,}",
                f"{step_of(d) / d.steps_per_epoch:.3g}",
                f"{train.cost:.4f}",
                f"{100 * test.accuracy:.2f}%",
            ]
        best = min(descents, key=lambda d: d.at(step_of(d))[0].cost)
        assert block[4].startswith(f"  the lowest training cost: {best.name}'s")
    assert printed.count("  gradient descent   0: ") == 1  # the path, printed
    assert "the whole paths on one plane through the start: it holds" in printed
    assert f"the first {STEPS} steps on one plane through the start" in printed


def test_the_figure_table_and_paths_are_written(walked):
    run_dir, descents, printed = walked
    with Image.open(run_dir / "descent_paths.png") as image:
        width, height = figures.SIZES["descent_paths"]
        assert image.size == (width * figures.DPI, height * figures.DPI)
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["analysis/descent_paths"]
    assert "the lowest training cost" in (run_dir / "descend.md").read_text()
    for d in descents:
        saved = Trajectory.load(run_dir / f"trajectory_b{d.batch_size}.bin")
        assert saved.steps == d.trajectory.steps


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--batch-sizes", "0"], "--batch-sizes must be between 1 and 599"),
        (["--batch-sizes", "600"], "--batch-sizes must be between 1 and 599"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--grid-size", "8"], "--grid-size must be an odd integer"),
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
    ],
)
def test_bad_descend_options_are_one_line_errors(
    arguments, message, capsys, fake_mnist_root, tmp_path
):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit:
        main(
            [
                "descend",
                "--data-root",
                str(fake_mnist_root),
                "--no-download",
                "--runs-dir",
                str(runs),
                *arguments,
            ]
        )
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1 and message in error
    assert not runs.exists()  # nothing written
