"""gd-torch compare: the baseline against variants over paired seeds, its report, its resume."""

import csv
import dataclasses
import io
import json
import math
import signal

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core.data import load_mnist
from gd_torch.core.guard import Interrupted
from gd_torch.core.run_dir import create_run_directory
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.tools import sweep as sweep_module
from gd_torch.tools.compare import compare, plan_comparison
from gd_torch.tools.compare_report import markdown, summarize
from gd_torch.tools.significance import paired_difference
from gd_torch.tools.variants import Variant, from_options
from tests.fakes import synthetic_mnist, write_mnist_files
from tests.test_signals import gd_torch, wait_for_line

DATA = synthetic_mnist()


def compare_dir(runs):
    (directory,) = [path for path in runs.iterdir() if path.name.startswith("compare_")]
    return directory


def test_the_acceptance_command_writes_the_table_the_interval_and_the_figure(
    fake_mnist_root, tmp_path, capsys
):
    runs = tmp_path / "runs"
    main(
        ["compare", "--seeds", "0", "1", "2", "--epochs", "1", "--variant", "--cost cross-entropy"]
        + ["--data-root", str(fake_mnist_root), "--no-download", "--runs-dir", str(runs)]
    )
    printed = capsys.readouterr().out
    directory = compare_dir(runs)
    table = (directory / "compare.md").read_text()
    assert "95% interval, paired t" in table and table.split("\n", 2)[2] in printed
    rows = list(csv.DictReader(open(directory / "compare.csv")))
    assert [row["variant"] for row in rows] == ["baseline", "--cost cross-entropy"]
    assert [row["trained"] for row in rows] == ["batched sweep of 3"] * 2
    report = json.loads((directory / "compare.json").read_text())
    finals = [
        [run["final_test_accuracy"] for run in variant["runs"]] for variant in report["variants"]
    ]
    expected = paired_difference(finals[1], finals[0])
    assert float(rows[1]["final_test_accuracy_difference"]) == pytest.approx(expected.mean)
    assert float(rows[1]["final_test_accuracy_t_low"]) == pytest.approx(expected.t_interval[0])
    assert float(rows[1]["final_test_accuracy_bootstrap_high"]) == pytest.approx(
        expected.bootstrap_interval[1]
    )
    assert float(rows[1]["final_test_accuracy_p_value"]) == pytest.approx(expected.p_value)
    assert (directory / "compare.png").stat().st_size > 10_000
    events = EventAccumulator(str(directory))
    events.Reload()
    assert "compare/accuracy" in events.Tags()["images"]
    assert "compare/report/text_summary" in events.Tags()["tensors"]
    assert len(report["epochs"]["baseline"]) == 3  # every seed's curve


def test_runs_are_the_single_runs_of_their_seed(tmp_path):
    """Paired by seed: run s of a variant is `gd-torch train --seed s` with its settings, exactly
    when trained alone, and to float32 rounding in a batched sweep."""
    baseline = TrainingSettings(epochs=2, lr_schedule="constant")
    variant = from_options("--momentum 0.5 --learning-rate 1", baseline)
    options = RunOptions(runs_dir=str(tmp_path / "runs"))
    for batched in (False, True):
        plan = plan_comparison(baseline, [variant], [3, 5], options, batched)
        directory, summaries = compare(plan, data=DATA, out=io.StringIO())
        assert [s.ran for s in summaries] == [
            "batched sweep of 2" if batched else "alone",
            "alone",  # momentum: the sweep cannot batch it
        ]
        for summary, settings in zip(summaries, (baseline, variant.settings)):
            for seed, run in zip((3, 5), summary.runs):
                alone = train(
                    dataclasses.replace(settings, seed=seed),
                    RunOptions(runs_dir=None),
                    data=DATA,
                    out=io.StringIO(),
                )
                assert run.final_test_cost == pytest.approx(
                    alone.final["test_cost"], rel=1e-4 if batched and summary is summaries[0] else 0
                )
        assert summaries[1].differences["final_test_accuracy"].count == 2


def test_best_is_chosen_on_the_validation_set_when_there_is_one(tmp_path):
    data = type(DATA)(DATA.train[:500], DATA.test, DATA.train[500:])
    baseline = TrainingSettings(epochs=3, validation_size=100)
    plan = plan_comparison(
        baseline,
        [from_options("--learning-rate 1", baseline)],
        [0, 1],
        RunOptions(runs_dir=str(tmp_path)),
    )
    directory, summaries = compare(plan, data=data, out=io.StringIO())
    assert {run.best_by for s in summaries for run in s.runs} == {"validation"}
    assert "epoch chosen on validation" in (directory / "compare.md").read_text()


def record(test_accuracies, seconds=2.0, train_accuracy=0.5):
    return {
        "history": [
            {
                "epoch": epoch,
                "test_accuracy": accuracy,
                "test_cost": 1 - accuracy,
                "train_accuracy": train_accuracy,
                "seconds": seconds,
            }
            for epoch, accuracy in enumerate(test_accuracies, start=1)
        ],
        "ran": "alone",
        "run_dir": None,
        "diverged": None,
    }


def test_the_tables_against_a_hand_computation():
    """Two seeds. Baseline: final 0.95 and 0.96, both reach 90% in epoch 2 (4 s). Variant: final
    0.96 and 0.98 (differences +1 and +2 points: mean +1.5, s = 0.7071, t_{0.975,1} = 12.706, so
    the interval is 1.5 ± 12.706 · 0.5 = [−4.85, +7.85]), at half the seconds per epoch. The
    baseline reaches 96% on one seed only; the second seed of a third variant diverged."""
    baseline = TrainingSettings(epochs=3)
    variants = [
        Variant("baseline", {}, baseline),
        Variant("faster", {"learning_rate": 4.0}, dataclasses.replace(baseline, learning_rate=4.0)),
        Variant("broken", {"learning_rate": 90.0}, dataclasses.replace(baseline, learning_rate=90)),
    ]
    diverged = dict(record([]), diverged="diverged at step 3")
    records = [
        [record([0.5, 0.91, 0.95]), record([0.6, 0.92, 0.96])],
        [record([0.7, 0.95, 0.96], seconds=1.0), record([0.8, 0.93, 0.98], seconds=1.0)],
        [record([0.5, 0.5, 0.5]), diverged],
    ]
    summaries = summarize(variants, records)
    difference = summaries[1].differences["final_test_accuracy"]
    assert difference.mean == pytest.approx(0.015)
    assert difference.t_interval == pytest.approx(
        (0.015 - 12.7062 * 0.005, 0.015 + 12.7062 * 0.005), rel=1e-4
    )
    assert summaries[2].diverged == 1 and summaries[2].differences["final_test_accuracy"].count == 1
    table = markdown(summaries, [0, 1])
    assert "| faster | final test accuracy | +1.50 | [-4.85, +7.85] |" in table
    assert "| baseline | 95.50 ± 0.71 |" in table
    assert "| faster | 2.0 (2.0 s), 2/2 | 2.5 (2.5 s), 2/2 | 3.0 (3.0 s), 2/2 |" in table
    assert "| baseline | 2.0 (4.0 s), 2/2 | 3.0 (6.0 s), 2/2 | 3.0 (6.0 s), 1/2 |" in table
    assert math.isnan(summaries[2].runs[1].final_test_accuracy)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seeds", "1", "--variant", "--cost cross-entropy"], "at least 2 seeds"),
        (["--seeds", "1", "1", "--variant", "--cost cross-entropy"], "must be distinct"),
        (["--variant", "--cost cross-entropy", "--seed", "4"], "--seed: a comparison trains"),
        ([], "give at least one --variant"),
        (["--variant", "--epochs 60"], "is the baseline itself"),
        (["--variant", "--momentum 0.9", "--variant", "--momentum=0.9"], "the same settings"),
        (["--variant", "--cots x"], "unknown option --cots"),
        (["--variant", "--train-size 5000"], "--train-size 5000 is more than the 600 training"),
        (["--resume", "somewhere", "--variant", "--momentum 0.9"], "--variant cannot be given"),
        (["--resume", "somewhere", "--epochs", "3"], "--epochs cannot be given with --resume"),
        (["--resume", "."], "no comparison there"),
    ],
)
def test_mistakes_are_one_line_errors_and_write_nothing(
    arguments, message, fake_mnist_root, tmp_path, capsys
):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit:
        main(
            ["compare", "--data-root", str(fake_mnist_root), "--no-download"]
            + ["--runs-dir", str(runs), *arguments]
        )
    error = capsys.readouterr().err
    assert exit.value.code == 2 and message in error and error.count("\n") == 1
    assert not runs.exists()


def test_a_stopped_comparison_continues_where_it_stopped(tmp_path, capsys):
    """Ctrl-C to a real `gd-torch compare` during its second run: exit 130, the finished run kept;
    --resume continues the stopped run from its checkpoint and trains the rest, and every run
    ends as the same run uninterrupted."""
    root = write_mnist_files(tmp_path / "data", train_count=3000, test_count=200)
    runs = tmp_path / "runs"
    common = ["--data-root", str(root), "--no-download", "--epochs", "3", "--batch-size", "1"]
    process = gd_torch(
        "compare",
        "--seeds",
        "0",
        "1",
        "--no-batch",
        "--variant",
        "--learning-rate 1",
        "--runs-dir",
        str(runs),
        *common,
    )
    wait_for_line(process, "  baseline seed 1: epoch 1/3")
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    directory = compare_dir(runs)
    assert f"continue with: gd-torch compare --resume {directory}" in error
    finished = sorted(path.name for path in (directory / "results").glob("*.json"))
    assert finished == ["v0_s0.json"]
    kept = (directory / "results" / "v0_s0.json").read_bytes()

    main(["compare", "--resume", str(directory), "--data-root", str(root), "--no-download"])
    printed = capsys.readouterr().out
    assert "1 of 4 runs already finished" in printed
    assert "baseline seed 1: continued from" in printed
    assert (directory / "results" / "v0_s0.json").read_bytes() == kept
    report = json.loads((directory / "compare.json").read_text())
    data = load_mnist(str(root), download=False)
    for variant, rate in zip(report["variants"], (3.0, 1.0)):
        for seed, run in zip((0, 1), variant["runs"]):
            settings = TrainingSettings(epochs=3, batch_size=1, learning_rate=rate, seed=seed)
            alone = train(settings, RunOptions(runs_dir=None), data=data, out=io.StringIO())
            assert run["final_test_cost"] == alone.final["test_cost"]


def test_a_stopped_sweep_is_trained_again_and_only_its_finished_log_kept(tmp_path, monkeypatch):
    real_sweep = sweep_module.sweep

    def stopped_in_the_cross_entropy_sweep(base, options, seeds, **keywords):
        if base.cost == "cross-entropy":
            create_run_directory(options.runs_dir, options.run_name)  # what a stopped sweep leaves
            raise KeyboardInterrupt
        return real_sweep(base, options, seeds, **keywords)

    baseline = TrainingSettings(epochs=1)
    plan = plan_comparison(
        baseline,
        [from_options("--cost cross-entropy", baseline)],
        [0, 1],
        RunOptions(runs_dir=str(tmp_path)),
    )
    monkeypatch.setattr(sweep_module, "sweep", stopped_in_the_cross_entropy_sweep)
    with pytest.raises(Interrupted) as stopped:
        compare(plan, data=DATA, out=io.StringIO())
    assert stopped.value.exit_code == 130 and "2 of 4 runs finished" in str(stopped.value)
    directory = compare_dir(tmp_path)
    monkeypatch.setattr(sweep_module, "sweep", real_sweep)
    compare(plan, directory, data=DATA, out=io.StringIO())
    assert len(list((directory / "results").glob("*.json"))) == 4
    (sweep_dir,) = (directory / "v1_cost-cross-entropy").iterdir()
    assert (sweep_dir / "summary.md").is_file()
