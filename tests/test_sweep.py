import csv
import dataclasses
import io
import math
import statistics
import threading

import pytest
import torch

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core import manual, native
from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint
from gd_torch.core.cost import one_hot
from gd_torch.core.engines import ENGINES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.evaluate import evaluate
from gd_torch.core.model import Network
from gd_torch.core.run import gradient_norm
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import sgd
from gd_torch.core.stacked import STACKED_ENGINES, StackedNetworks, StackedSGD, evaluate_copies
from gd_torch.core.trajectory import FILE_NAME, Trajectory
from gd_torch.tools import sweep as sweep_module
from gd_torch.tools.sweep import FINAL_METRICS, sweep, sweep_settings
from tests.events import images as tensorboard_images
from tests.events import scalars
from tests.fakes import synthetic_mnist
from tests.processes import imported_by_main

SIZES = (
    784,
    12,
    9,
    10,
)  # hidden widths unlike each other, the batch size (7) and the copy count (3)


def networks_and_batches(copies=3, batch=7, dtype=torch.float64):
    generator = torch.Generator().manual_seed(5)
    networks = [
        Network(SIZES, "nielsen", torch.Generator().manual_seed(k)).to(dtype) for k in range(copies)
    ]
    images = torch.rand(copies, batch, 784, generator=generator, dtype=dtype)
    targets = one_hot(torch.randint(0, 10, (copies, batch), generator=generator), dtype)
    return networks, images, targets


def test_manual_twin_on_stacked_weights_equals_each_network_alone():
    networks, images, targets = networks_and_batches()
    stacked = StackedNetworks(networks)
    _, activations = manual.forward(stacked, images)
    gradients = manual.backward(stacked, activations, targets, "nielsen")
    for k, network in enumerate(networks):
        _, alone = manual.forward(network, images[k])
        for a_stacked, a_alone in zip(activations, alone, strict=True):
            torch.testing.assert_close(a_stacked[k], a_alone)
        for (w_stacked, b_stacked), (w_alone, b_alone) in zip(
            gradients, manual.backward(network, alone, targets[k], "nielsen"), strict=True
        ):
            torch.testing.assert_close(w_stacked[k], w_alone)
            torch.testing.assert_close(b_stacked[k], b_alone)


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_stacked_engine_gives_each_copy_its_own_autograd_gradient(engine):
    networks, images, targets = networks_and_batches()
    stacked = StackedNetworks(networks)
    costs = STACKED_ENGINES[engine](stacked, images, targets, "quadratic")
    assert costs.shape == (len(networks),)
    for k, network in enumerate(networks):
        torch.testing.assert_close(
            costs[k], ENGINES["autograd"](network, images[k], targets[k], "quadratic")
        )  # the oracle
        for stacked_parameter, parameter in zip(
            stacked.parameters(), network.parameters(), strict=True
        ):
            torch.testing.assert_close(stacked_parameter.grad[k], parameter.grad)


def test_stacked_forward_is_network_forward_per_copy():
    networks, images, _ = networks_and_batches()
    output = StackedNetworks(networks)(images)
    for k, network in enumerate(networks):
        torch.testing.assert_close(output[k], network(images[k]))


def test_stacked_networks_on_shared_images_are_each_network_on_them():
    """A sweep's evaluation: every copy sees the same digits (one wide first-layer matmul)."""
    networks, images, _ = networks_and_batches()
    stacked = StackedNetworks(networks)
    # a^1..a^L, (K, 7, n_l), from the same (7, 784) images for all copies
    shared = manual.forward(stacked, images[0])[1][1:]
    for k, network in enumerate(networks):
        alone = manual.forward(network, images[0])[1][1:]
        for a_stacked, a_alone in zip(shared, alone, strict=True):
            torch.testing.assert_close(a_stacked[k], a_alone)


def test_evaluate_copies_is_evaluate_on_each_copy():
    networks, _, _ = networks_and_batches(copies=4, dtype=torch.float32)
    split = synthetic_mnist().test  # 200 digits, evaluated in chunks of 64 and a last one of 8
    results = evaluate_copies(StackedNetworks(networks), split, "nielsen", batch_size=64)
    assert len(results) == len(networks)
    for network, result in zip(networks, results):
        alone = evaluate(network, split, "nielsen", batch_size=64)
        assert (result.correct, result.total, result.accuracy) == (
            alone.correct,
            alone.total,
            alone.accuracy,
        )
        assert result.cost == pytest.approx(alone.cost, rel=1e-6)
    assert len({result.cost for result in results}) == len(networks)  # the copies really differ


def test_gradient_norms_are_each_copys_gradient_norm():
    networks, images, targets = networks_and_batches()
    stacked = StackedNetworks(networks)
    STACKED_ENGINES["manual"](stacked, images, targets, "quadratic")
    norms = stacked.gradient_norms()
    for k, network in enumerate(networks):
        ENGINES["manual"](network, images[k], targets[k], "quadratic")
        assert norms[k].item() == pytest.approx(
            gradient_norm([p.grad for p in network.parameters()]).item(), rel=1e-12
        )


def test_stacked_sgd_with_a_rate_per_copy_equals_torch_optim_sgd():
    networks, images, targets = networks_and_batches()
    stacked = StackedNetworks(networks)
    rates, decay = torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64), 0.01
    STACKED_ENGINES["manual"](stacked, images, targets, "quadratic")
    StackedSGD(stacked, rates, decay).step()
    for k, network in enumerate(networks):
        ENGINES["manual"](network, images[k], targets[k], "quadratic")
        torch.optim.SGD(network.parameters(), lr=rates[k].item(), weight_decay=decay).step()
        for stacked_parameter, parameter in zip(
            stacked.parameters(), network.parameters(), strict=True
        ):
            torch.testing.assert_close(stacked_parameter[k], parameter)
        copied = stacked.copy_into(k, Network(SIZES).to(torch.float64))
        for stacked_parameter, parameter in zip(
            stacked.parameters(), copied.parameters(), strict=True
        ):
            assert torch.equal(parameter, stacked_parameter[k]) and torch.equal(
                parameter.grad, stacked_parameter.grad[k]
            )


def test_stacked_sgd_without_decaying_the_biases_equals_two_parameter_groups():
    """--weight-decay-on weights: the step gd-torch train takes with its two parameter groups."""
    networks, images, targets = networks_and_batches()
    stacked = StackedNetworks(networks)
    rates, settings = (
        torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64),
        TrainingSettings(weight_decay=0.01, weight_decay_on="weights", dtype="float64"),
    )
    STACKED_ENGINES["manual"](stacked, images, targets, "cross-entropy")
    StackedSGD(stacked, rates, settings.weight_decay, decay_biases=False).step()
    for k, network in enumerate(networks):
        ENGINES["manual"](network, images[k], targets[k], "cross-entropy")
        optimizer = sgd(settings)(network)
        for group in optimizer.param_groups:
            group["lr"] = rates[k].item()
        optimizer.step()
        for stacked_parameter, parameter in zip(
            stacked.parameters(), network.parameters(), strict=True
        ):
            torch.testing.assert_close(stacked_parameter[k], parameter)


@pytest.mark.parametrize(
    "engine, compile", [("manual", None), ("manual", True), ("autograd", None)]
)
def test_each_copy_equals_training_it_alone(engine, compile, tmp_path):
    """120 SGD steps (two epochs of 600 images): batched and single runs still agree to float32
    rounding; and so do the native steps' copies (``compile``)."""
    data = synthetic_mnist()
    base = TrainingSettings(
        epochs=2,
        batch_size=10,
        lr_schedule="cosine",
        weight_decay=1e-3,
        engine=engine,
        cost="cross-entropy" if engine == "autograd" else "quadratic",
    )
    options = RunOptions(
        runs_dir=str(tmp_path / "runs"), download=False, data_root=str(tmp_path), compile=compile
    )
    out = io.StringIO()
    result = sweep(base, options, seeds=[3, 4], learning_rates=[1.0, 2.5], data=data, out=out)
    taken = {
        ("manual", True): "native C++ steps (--compile)",
        ("manual", None): "reference loop (480 copy-steps do not earn the compile",
        ("autograd", None): "reference loop (the native steps are the manual engine's",
    }[engine, compile]
    assert f"SGD steps of 4 copies: {taken}" in out.getvalue()
    options = dataclasses.replace(options, compile=None)
    assert [(c.learning_rate, c.seed) for c in result.settings] == [
        (1.0, 3),
        (1.0, 4),
        (2.5, 3),
        (2.5, 4),
    ]
    first = None
    alone_options = dataclasses.replace(options, runs_dir=str(tmp_path / "single"))
    for config, network, final, history in zip(
        result.settings, result.networks, result.finals, result.histories, strict=True
    ):
        alone = train(config, alone_options, data=data, out=io.StringIO())
        assert [h["test_accuracy"] for h in history] == pytest.approx(
            [h["test_accuracy"] for h in alone.history], abs=0.011
        )  # per-epoch results, as the single run's (to a digit or two of 200)
        for swept, single in zip(network.parameters(), alone.network.parameters(), strict=True):
            torch.testing.assert_close(swept, single, rtol=1e-4, atol=1e-5)
        assert final["test_cost"] == pytest.approx(alone.final["test_cost"], rel=1e-4)
        checkpoint = load_checkpoint(
            result.sweep_dir / f"lr{config.learning_rate:g}_s{config.seed}" / "last.pt"
        )
        restored, restored_config = network_from_checkpoint(checkpoint)
        assert restored_config == config and checkpoint["step"] == 120
        single = load_checkpoint(alone.run_dir / "last.pt")  # resumable as the single run is
        assert checkpoint["optimizer"] == single["optimizer"]
        assert checkpoint["optimizer_class"] == single["optimizer_class"] == "SGD"
        torch.testing.assert_close(
            restored.layers[0].weight, network.layers[0].weight, rtol=0, atol=0
        )
        first = first if first is not None else network.layers[0].weight
    assert not torch.allclose(
        first, result.networks[-1].layers[0].weight
    )  # the copies really differ


def test_summary_files_hold_every_copy_and_the_mean_and_std_per_rate(fake_mnist_root, tmp_path):
    main(
        [
            "sweep",
            "--data-root",
            str(fake_mnist_root),
            "--no-download",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--epochs",
            "1",
            "--num-seeds",
            "3",
            "--seed",
            "7",
            "--learning-rates",
            "1",
            "3",
        ]
    )
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    runs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir())
    assert len(runs) == 6 and all(
        (sweep_dir / run / "last.pt").is_file()
        and list((sweep_dir / run).glob("events.out.tfevents.*"))
        for run in runs
    )
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert sorted((float(r["learning_rate"]), int(r["seed"])) for r in rows) == [
        (rate, seed) for rate in (1.0, 3.0) for seed in (7, 8, 9)
    ]
    markdown = (sweep_dir / "summary.md").read_text()
    for rate in ("1", "3"):
        accuracies = [
            float(r["test_accuracy"]) for r in rows if f"{float(r['learning_rate']):g}" == rate
        ]
        expected = (
            f"| {rate} | 3 | 0 | {100 * statistics.fmean(accuracies):.2f} "
            f"± {100 * statistics.stdev(accuracies):.2f}% |"
        )
        assert expected in markdown
    assert all(math.isfinite(float(r[name])) for r in rows for name in FINAL_METRICS)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seeds", "1", "1"], "--seeds must be distinct"),
        (["--num-seeds", "0"], "--num-seeds must be a positive integer"),
        (["--learning-rates", "1", "-2"], "--learning-rate must be a finite number > 0"),
        (
            ["--compile", "--engine", "autograd"],
            "--compile in a sweep takes the native steps, which are the manual engine",
        ),
        (["--time-budget", "60"], "--time-budget is not supported by gd-torch sweep"),
        (["--momentum", "0.5"], "--momentum is not supported by gd-torch sweep"),
        (["--threads", "1000000000"], "--threads 1000000000 is more than the"),
    ],
)
def test_bad_sweep_options_are_one_line_errors(arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "--data-root", str(tmp_path), "--no-download", *arguments])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_sweep_settings_vary_only_seed_and_rate():
    base = TrainingSettings(hidden_sizes=(8,), batch_size=3)
    configs = sweep_settings(base, range(2))
    assert [c.seed for c in configs] == [0, 1] and {c.learning_rate for c in configs} == {
        base.learning_rate
    }
    assert {(c.hidden_sizes, c.batch_size) for c in configs} == {((8,), 3)}
    with pytest.raises(GdTorchError):
        sweep_settings(base, [])


def test_a_sweeps_copies_draw_on_one_thread_which_ends_with_the_sweep(tmp_path, monkeypatch):
    made = []

    def counted(name):
        made.append(sweep_module.drawing_thread.__wrapped__(name))
        return made[-1]

    counted.__wrapped__ = sweep_module.drawing_thread
    monkeypatch.setattr(sweep_module, "drawing_thread", counted)
    result = sweep(
        TrainingSettings(epochs=1),
        RunOptions(runs_dir=str(tmp_path), image_every=1, log_every=20),
        [0, 1],
        [1.0, 3.0],
        data=synthetic_mnist(600, 200),
        out=io.StringIO(),
    )
    assert len(made) == 1  # four copies, one thread
    assert not any(thread.name.startswith("sweep logs") for thread in threading.enumerate())
    for row in csv.DictReader((result.sweep_dir / "summary.csv").open()):
        images = tensorboard_images(result.sweep_dir / row["run_dir"])
        assert [event.step for event in images] == [0, 60]  # step 0 and epoch 1's, each copy's


@pytest.mark.parametrize("compile", [None, True])
def test_a_diverging_copy_stops_alone_and_the_others_train_on_and_are_saved(compile, tmp_path):
    """``gd-torch sweep --learning-rates 1e6 3``: the η = 1e6 copy diverges in its first steps,
    on the reference loop and on the native steps."""
    out = io.StringIO()
    result = sweep(
        TrainingSettings(epochs=2),
        RunOptions(runs_dir=str(tmp_path), image_every=0, log_every=20, compile=compile),
        [0, 1],
        [1e6, 3.0],
        data=synthetic_mnist(600, 200),
        out=out,
    )
    rows = list(csv.DictReader((result.sweep_dir / "summary.csv").open()))
    for config, final, row in zip(result.settings, result.finals, rows):
        run_dir = result.sweep_dir / row["run_dir"]
        if config.learning_rate == 1e6:
            assert all(math.isnan(final[name]) for name in FINAL_METRICS)
            assert int(row["diverged_at_step"]) >= 1 and not (run_dir / "last.pt").exists()
            assert (
                f"copy η 1e+06 seed {config.seed} diverged at step {row['diverged_at_step']}"
                in out.getvalue()
            )
        else:
            assert final["test_accuracy"] > 0.2 and row["diverged_at_step"] == ""
            assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2  # trained on, and saved
    summary = (result.sweep_dir / "summary.md").read_text()
    assert "| 1e+06 | 2 | 2 |" in summary and "| 3 | 2 | 0 |" in summary
    assert "diverged: η 1e+06 seed 0 at step" in summary
    hint = out.getvalue().split("Hint: start a new run with a smaller --learning-rate (e.g. ")[1]
    assert float(hint.split(")")[0]) <= 3.0  # a rate that trains, not one that diverges too


def test_a_copy_whose_batch_cost_turns_nan_stops_at_that_step_and_the_other_trains_on(
    tmp_path, monkeypatch
):
    """A NaN in copy 1's gradient at step 25 makes its weights, then its step-26 cost, NaN."""
    data, options = synthetic_mnist(600, 200), RunOptions(image_every=0, log_every=1000)
    base = TrainingSettings(epochs=2)

    def run(name):
        return sweep(
            base,
            dataclasses.replace(options, runs_dir=str(tmp_path / name)),
            [0, 1],
            data=data,
            out=out,
        )

    out = io.StringIO()
    clean = run("clean")
    compute_gradients, calls = STACKED_ENGINES["manual"], []

    def nan_gradient_once(stacked, *arguments):
        batch_costs = compute_gradients(stacked, *arguments)
        calls.append(1)
        if len(calls) == 25:
            stacked.layers[0].weight.grad[1, 3, 100] = float("nan")
        return batch_costs

    monkeypatch.setitem(STACKED_ENGINES, "manual", nan_gradient_once)
    out = io.StringIO()
    poisoned = run("poisoned")
    rows = list(csv.DictReader((poisoned.sweep_dir / "summary.csv").open()))
    assert [row["diverged_at_step"] for row in rows] == ["", "26"]
    assert "seed 1 diverged at step 26 (epoch 1): its batch cost is not finite" in out.getvalue()
    for trained, alone in zip(poisoned.networks[0].parameters(), clean.networks[0].parameters()):
        assert torch.equal(trained, alone)  # copy 0 never saw copy 1's NaN


def test_a_copy_whose_native_cost_turns_nan_inside_a_call_stops_at_that_step(tmp_path, monkeypatch):
    """The native steps check a call's costs after it: copy 1's weights made NaN after step 25,
    in the middle of a call of 60 steps, make its step-26 cost NaN, and it is stopped there;
    copy 0 is bit for bit the copy of a clean sweep."""
    data = synthetic_mnist(600, 200)
    options = RunOptions(image_every=0, log_every=1000, compile=True)

    def run(name, out):
        return sweep(
            TrainingSettings(epochs=2),
            dataclasses.replace(options, runs_dir=str(tmp_path / name)),
            [0, 1],
            data=data,
            out=out,
        )

    clean = run("clean", io.StringIO())
    sgd_steps, calls = native.sgd_steps, []

    def poisoned_after_step_25(weights, *arguments):
        (start, stop), before, after = arguments[7:9], arguments[:7], arguments[9:]
        calls.append((start, stop))
        if start < 25 < stop:  # the call that takes step 25: split around it
            sgd_steps(weights, *before, start, 25, *after)
            before[0][0][1, 3] = float("nan")  # a bias of copy 1's first layer
            start = 25
        sgd_steps(weights, *before, start, stop, *after)

    monkeypatch.setattr(native, "sgd_steps", poisoned_after_step_25)
    out = io.StringIO()
    poisoned = run("poisoned", out)
    assert calls == [(0, 60), (0, 60)]  # two epochs, a call each
    rows = list(csv.DictReader((poisoned.sweep_dir / "summary.csv").open()))
    assert [row["diverged_at_step"] for row in rows] == ["", "26"]
    assert "seed 1 diverged at step 26 (epoch 1): its batch cost is not finite" in out.getvalue()
    for trained, alone in zip(poisoned.networks[0].parameters(), clean.networks[0].parameters()):
        assert torch.equal(trained, alone)


def test_native_sweep_steps_log_and_snapshot_where_the_reference_loop_does(tmp_path, monkeypatch):
    """Calls of native steps end where a step is logged or snapshotted; a smaller last batch
    (600 = 85 · 7 + 5) takes the reference step; weight decay on the weights only: the same
    logged steps, snapshots and weights as the reference loop, to rounding. (Left to choose:
    --compile refuses --snapshot-every, which a single run's compiled calls cannot keep.)"""
    monkeypatch.setattr(sweep_module, "NATIVE_AUTO_STEPS", 1)
    data = synthetic_mnist(600, 200)
    base = TrainingSettings(epochs=2, batch_size=7, weight_decay=1e-3, weight_decay_on="weights")
    results = {}
    for compile in (False, True):
        options = RunOptions(
            runs_dir=str(tmp_path / str(compile)),
            image_every=0,
            log_every=7,
            snapshot_every=9,
            compile=None if compile else False,
        )
        results[compile] = sweep(base, options, [0, 1], [0.5, 3.0], data=data, out=io.StringIO())
    for reference, fast in zip(results[False].networks, results[True].networks, strict=True):
        for mine, theirs in zip(fast.parameters(), reference.parameters()):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    for reference, fast in zip(
        sorted(results[False].sweep_dir.glob("lr*")),
        sorted(results[True].sweep_dir.glob("lr*")),
        strict=True,
    ):
        for tag in ("batch/train_cost", "batch/gradient_norm"):
            (steps, values), (fast_steps, fast_values) = (
                zip(*scalars(run_dir, tag)) for run_dir in (reference, fast)
            )
            assert fast_steps == steps == tuple(range(7, 2 * 86 + 1, 7))
            assert fast_values == pytest.approx(values, rel=1e-4)
        slow, quick = (Trajectory.load(run_dir / FILE_NAME) for run_dir in (reference, fast))
        assert quick.steps == slow.steps and {9, 86, 171, 172} <= set(quick.steps)
        torch.testing.assert_close(quick.points, slow.points, rtol=1e-4, atol=1e-5)


def _no_compiler():
    raise native.NativeUnavailable("no C++ compiler 'c++' on PATH (set CXX)")


def test_a_sweep_whose_native_steps_cannot_be_built_takes_the_reference_loop(tmp_path, monkeypatch):
    """Left to choose, a failed build is a line and the eager steps; asked for, one error."""
    monkeypatch.setattr(native, "library", _no_compiler)
    monkeypatch.setattr(sweep_module, "NATIVE_AUTO_STEPS", 1)
    data, out = synthetic_mnist(600, 200), io.StringIO()
    result = sweep(
        TrainingSettings(epochs=1),
        RunOptions(runs_dir=str(tmp_path / "auto"), image_every=0),
        [0, 1],
        data=data,
        out=out,
    )
    assert (
        "SGD steps of 2 copies: reference loop (the native steps failed to build: no C++ "
        "compiler 'c++' on PATH (set CXX))"
    ) in out.getvalue()
    assert all(math.isfinite(final["test_accuracy"]) for final in result.finals)  # trained
    with pytest.raises(GdTorchError, match=r"^--compile: the native steps failed to build \(no"):
        sweep(
            TrainingSettings(epochs=1),
            RunOptions(runs_dir=str(tmp_path / "asked"), image_every=0, compile=True),
            [0, 1],
            data=data,
            out=io.StringIO(),
        )


def test_a_sweep_whose_every_copy_diverges_ends_with_status_3_and_its_summary(tmp_path):
    from gd_torch.core.guard import Diverged

    with pytest.raises(Diverged, match="every copy diverged") as diverged:
        sweep(
            TrainingSettings(epochs=1),
            RunOptions(runs_dir=str(tmp_path), image_every=0),
            [0],
            [1e6, 1e7],
            data=synthetic_mnist(600, 200),
            out=io.StringIO(),
        )
    assert diverged.value.exit_code == 3
    (sweep_dir,) = tmp_path.iterdir()
    assert (sweep_dir / "summary.csv").exists()


def test_compile_batches_only_the_copies_the_native_steps_can_take():
    """gd-torch compare asks ``unsupported`` per variant: with --compile, a variant of the
    autograd engine runs as single runs (on Inductor's loop) instead of failing as a sweep."""
    from gd_torch.tools.sweep import unsupported

    asked = RunOptions(compile=True, download=False, data_root=".")
    assert unsupported(asked, TrainingSettings()) == []
    assert unsupported(asked, TrainingSettings(engine="autograd")) == [
        "--compile with this engine or dtype"
    ]
    assert (
        unsupported(dataclasses.replace(asked, compile=None), TrainingSettings(engine="autograd"))
        == []
    )


def test_a_sweep_does_not_import_the_compiler(fake_mnist_root, tmp_path):
    """Its copies step with StackedSGD; their checkpoints' optimizer state is made without
    torch.optim, whose first optimizer in a process imports torch._dynamo (seconds)."""
    sweeping = ["sweep", "--data-root", str(fake_mnist_root), "--no-download", "--runs-dir"]
    sweeping += [str(tmp_path / "runs"), "--num-seeds", "2", "--epochs", "1"]
    assert not imported_by_main(sweeping, "torch._dynamo")[0]
    assert len(list((tmp_path / "runs").glob("*/s*/last.pt"))) == 2
