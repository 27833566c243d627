"""Reproduce published results: named configurations, each trained over several seeds, in one
table.

    gd-torch reproduce --data-root ../shared/mnist  # default list, 5 seeds: ~18 min on 2 CPU cores
    gd-torch reproduce --configurations nielsen-30 nielsen-100 --seeds 0 1 2 \\
        --engines manual autograd
    tensorboard --logdir runs/reproduce_<time>      # every run side by side, HPARAMS tab

A configuration is ``default`` (TrainingSettings' defaults, i.e. plain ``gd-torch train``), a
preset (``gd_torch.core.presets``), or ``full-batch-gd-same-time``: full-batch gradient descent
allowed as many seconds of SGD steps as sgd-100 took, on average, earlier in the same
reproduction. The table (printed, and written as reproduce.md and reproduce.csv) sits in the
parent directory of all the runs.
"""

import argparse
import csv
import io
import itertools
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import write_file
from gd_torch.core.presets import PRESETS, PUBLISHED, preset_settings
from gd_torch.core.settings import ENGINE_NAMES, RunOptions, TrainingSettings, default_data_root

TIME_MATCHED = {
    "full-batch-gd-same-time": ("full-batch-gd", "sgd-100")
}  # name: (preset, whose SGD time it gets)
CONFIGURATIONS = ("default", *PRESETS, *TIME_MATCHED)
DEFAULT_CONFIGURATIONS = (
    "default",
    "3b1b",
    "nielsen-30",
    "sgd-100",
    "full-batch-gd",
    "full-batch-gd-same-time",
)
UNTIL_THE_BUDGET = 1_000_000  # epochs of a time-matched run: its time budget stops it long before


@dataclass
class Row:
    """One configuration and engine over its seeds; accuracies are fractions, one per seed."""

    name: str
    config: TrainingSettings  # of the first seed
    training_images: int
    time_budget: float  # seconds of SGD steps each seed may take (0: none)
    final: list[float]
    best: list[float]
    epochs: list[int]
    seconds_per_epoch: list[float]
    sgd_seconds: list[float]

    def cells(self) -> dict[str, str]:
        """The Markdown table's row."""
        final = [100 * a for a in self.final]
        epochs = f"{statistics.mean(self.epochs):.0f}" + (
            " (time)" if self.name in TIME_MATCHED else ""
        )
        return {
            "configuration": self.name,
            "engine": self.config.engine,
            "network": "-".join(map(str, self.config.layer_sizes)),
            "epochs": epochs,
            "batch": f"{self.config.batch_size:,}",
            "η (cost)": f"{self.config.learning_rate:g} ({self.config.cost})",
            "test accuracy %": f"{statistics.mean(final):.2f} ± {_std(final):.2f}",
            "min–max %": f"{min(final):.2f}–{max(final):.2f}",
            "best epoch %": f"{100 * statistics.mean(self.best):.2f}",
            "s/epoch": f"{statistics.mean(self.seconds_per_epoch):.2f}",
            "seeds": str(len(self.final)),
            "published": PUBLISHED.get(self.name, ""),
        }

    def values(self) -> dict:
        """The CSV's row: plain numbers."""
        return {
            "configuration": self.name,
            "engine": self.config.engine,
            "layer_sizes": "-".join(map(str, self.config.layer_sizes)),
            "epochs_mean": statistics.mean(self.epochs),
            "batch_size": self.config.batch_size,
            "learning_rate": self.config.learning_rate,
            "cost": self.config.cost,
            "lr_schedule": self.config.lr_schedule,
            "weight_decay": self.config.weight_decay,
            "init": self.config.init,
            "training_images": self.training_images,
            "seeds": len(self.final),
            "test_accuracy_mean": statistics.mean(self.final),
            "test_accuracy_std": _std(self.final),
            "test_accuracy_min": min(self.final),
            "test_accuracy_max": max(self.final),
            "best_epoch_accuracy_mean": statistics.mean(self.best),
            "seconds_per_epoch": statistics.mean(self.seconds_per_epoch),
            "sgd_seconds_mean": statistics.mean(self.sgd_seconds),
            "published": PUBLISHED.get(self.name, ""),
        }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def configuration(name: str, **overrides) -> TrainingSettings:
    """The settings of a named configuration (``default``, a preset, or a time-matched one)."""
    if name == "default":
        return TrainingSettings(**overrides)
    if name in TIME_MATCHED:
        return preset_settings(TIME_MATCHED[name][0], **(overrides | {"epochs": UNTIL_THE_BUDGET}))
    return preset_settings(name, **overrides)


def markdown(rows: list[Row]) -> str:
    cells = [row.cells() for row in rows]
    header = list(cells[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c[h] for h in header) + " |" for c in cells]) + "\n"


def reproduce(
    names, seeds, engines, epochs: int | None, data_root: str, download: bool, runs_dir: str, out
) -> tuple[Path, list[Row]]:
    """Train every configuration × engine × seed under one new parent directory; returns it and
    the table's rows."""
    from gd_torch.api import train
    from gd_torch.core.data import load_mnist
    from gd_torch.core.naming import varying
    from gd_torch.core.run_dir import create_run_directory
    from gd_torch.dashboard.tensorboard import TensorBoard, TrainingLog

    unknown = [name for name in names if name not in CONFIGURATIONS]
    if unknown:
        raise GdTorchError(
            f"unknown configuration {', '.join(unknown)}; choose from: {', '.join(CONFIGURATIONS)}"
        )

    def overrides(engine: str) -> dict:
        return dict(engine=engine) | ({"epochs": epochs} if epochs else {})

    for option, values in (("--configurations", names), ("--seeds", seeds), ("--engines", engines)):
        if not values or len(set(values)) != len(values):  # a repeat would count twice
            raise GdTorchError(f"{option} must be distinct values, at least one")
    group = []  # every run, checked before the first one trains
    for position, name in enumerate(names):
        if name in TIME_MATCHED and TIME_MATCHED[name][1] not in names[:position]:
            raise GdTorchError(
                f"{name} needs {TIME_MATCHED[name][1]} earlier in --configurations, "
                f"to know its time budget"
            )
        for engine, seed in itertools.product(engines, seeds):
            try:
                group.append(configuration(name, **overrides(engine), seed=seed))
            except GdTorchError as error:
                raise GdTorchError(f"{name}, engine {engine}, seed {seed}: {error}") from None
    parent = create_run_directory(runs_dir, "reproduce")
    root = TrainingLog(parent)  # HPARAMS: one experiment for all the runs, at their root
    root.experiment(group, varying(group))
    root.close()
    datasets = {}  # validation_size -> Mnist: MNIST is read once per split
    rows: dict[tuple[str, str], Row] = {}
    for name in names:
        for engine in engines:
            budget = 0.0
            if name in TIME_MATCHED:
                budget = statistics.mean(rows[TIME_MATCHED[name][1], engine].sgd_seconds)
            row = None
            for seed in seeds:
                config = configuration(name, **overrides(engine), seed=seed)
                options = RunOptions(
                    data_root=data_root,
                    download=download,
                    runs_dir=str(parent),
                    run_name=f"{name}_{engine}_s{seed}",
                    time_budget=budget,
                )
                if config.validation_size not in datasets:
                    datasets[config.validation_size] = load_mnist(
                        data_root, download, config.validation_size
                    )
                data = datasets[config.validation_size]
                history = train(
                    config,
                    options,
                    data=data,
                    out=io.StringIO(),
                    tensorboard=False,
                    callbacks=[TensorBoard(trial=options.run_name, grouped=True)],
                ).history
                row = row or Row(name, config, len(data.train), budget, [], [], [], [], [])
                row.final.append(history[-1]["test_accuracy"])
                row.best.append(max(h["test_accuracy"] for h in history))
                row.epochs.append(len(history))
                row.seconds_per_epoch.append(statistics.mean(h["seconds"] for h in history))
                row.sgd_seconds.append(history[-1]["sgd_seconds"])
                print(
                    f"{name} {engine} seed {seed}: test accuracy {100 * row.final[-1]:.2f}% "
                    f"(best epoch {100 * row.best[-1]:.2f}%), "
                    f"{len(history)} epochs, {row.seconds_per_epoch[-1]:.2f} s/epoch",
                    file=out,
                    flush=True,
                )
            rows[name, engine] = row
    table = markdown(list(rows.values()))
    write_file(parent / "reproduce.md", table)
    values = io.StringIO()
    writer = csv.DictWriter(values, fieldnames=list(next(iter(rows.values())).values()))
    writer.writeheader()
    writer.writerows(row.values() for row in rows.values())
    write_file(parent / "reproduce.csv", values.getvalue())
    print(
        f"\n{table}\ntable written to {parent / 'reproduce.md'} and reproduce.csv; "
        f"view the runs with: tensorboard --logdir {parent}",
        file=out,
        flush=True,
    )
    return parent, list(rows.values())


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configurations",
        nargs="+",
        default=list(DEFAULT_CONFIGURATIONS),
        choices=CONFIGURATIONS,
        metavar="NAME",
        help=f"what to train, in order: {', '.join(CONFIGURATIONS)} "
        f"(default: {' '.join(DEFAULT_CONFIGURATIONS)})",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=list(range(5)),
        metavar="SEED",
        help="seeds of every configuration (default: 0 1 2 3 4)",
    )
    parser.add_argument(
        "--engines", nargs="+", default=["manual"], choices=ENGINE_NAMES, help="(default: manual)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train every configuration this many epochs (default: each its own)",
    )
    parser.add_argument(
        "--data-root",
        default=default_data_root(),
        help="MNIST folder (default: $GD_TORCH_DATA or ./data)",
    )
    parser.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when missing (default: yes)",
    )
    parser.add_argument(
        "--runs-dir",
        default="runs",
        help="where the reproduction's parent directory is made (default: runs)",
    )


def run_reproduce(arguments: argparse.Namespace) -> None:
    if arguments.epochs is not None and arguments.epochs < 1:
        raise GdTorchError("--epochs must be a positive integer")
    if any(seed < 0 for seed in arguments.seeds):
        raise GdTorchError("--seeds must be non-negative integers")
    reproduce(
        arguments.configurations,
        arguments.seeds,
        arguments.engines,
        arguments.epochs,
        arguments.data_root,
        arguments.download,
        arguments.runs_dir,
        sys.stdout,
    )
