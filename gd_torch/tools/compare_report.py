"""The report of ``gd-torch compare``: tables, files, and the figure of accuracy over epochs.

Written into the comparison's directory and printed:

    compare.md    three tables: the results per variant (mean ± sample std over the seeds), the
                  paired differences to the baseline (95% intervals and p-values), and the time
                  to reach 90/95/96% test accuracy
    compare.csv   one row per variant, plain numbers
    compare.json  the same, with every run's values and every epoch's accuracies
    compare.png   training and test accuracy over the epochs: the mean of the seeds as a line and
                  their range (lowest to highest) as a band, per variant; also in TensorBoard
                  (IMAGES, tag compare/accuracy; the tables in TEXT, tag compare/report)

"Best" is the test accuracy (and cost) at the epoch of the best validation accuracy when the
runs hold out a validation set: an honest estimate. Without one it is the best test accuracy of
the epochs, a choice made on the test set, optimistic by the epoch-to-epoch noise; the tables say
which.
"""

import csv
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gd_torch.tools.significance import PairedDifference, paired_difference
from gd_torch.tools.variants import Variant

THRESHOLDS = (0.90, 0.95, 0.96)  # test accuracies whose epochs and seconds to reach are reported


@dataclass
class RunValues:
    """What the report reads from one run's record; NaN when it diverged."""

    final_test_accuracy: float
    final_test_cost: float
    final_train_accuracy: float
    best_test_accuracy: float
    best_test_cost: float
    best_by: str  # "validation" or "test"
    seconds_per_epoch: float
    reached: dict[float, tuple[int, float] | None]  # threshold: (epoch, seconds so far)

    @classmethod
    def of(cls, record: dict) -> "RunValues":
        history = record["history"]
        if record["diverged"] or not history:
            return cls(*[math.nan] * 5, "test", math.nan, {t: None for t in THRESHOLDS})
        last = history[-1]
        best_by = "validation" if "validation_accuracy" in last else "test"
        best = max(reversed(history), key=lambda h: h[f"{best_by}_accuracy"])  # the latest best
        reached, seconds = {}, 0.0
        for epoch in history:
            seconds += epoch["seconds"]
            for threshold in THRESHOLDS:
                if threshold not in reached and epoch["test_accuracy"] >= threshold:
                    reached[threshold] = (epoch["epoch"], seconds)
        return cls(
            last["test_accuracy"],
            last["test_cost"],
            last["train_accuracy"],
            best["test_accuracy"],
            best["test_cost"],
            best_by,
            statistics.fmean(epoch["seconds"] for epoch in history),
            {threshold: reached.get(threshold) for threshold in THRESHOLDS},
        )


@dataclass
class Summary:
    """One variant (or the baseline) over its seeds."""

    name: str
    changes: str  # as gd-torch train options; "" for the baseline
    cost: str  # its cost convention (costs of different conventions do not compare)
    ran: str
    runs: list[RunValues]
    differences: dict[str, PairedDifference] = field(default_factory=dict)  # to the baseline

    def values(self, name: str) -> list[float]:
        return [getattr(run, name) for run in self.runs]

    @property
    def diverged(self) -> int:
        return sum(not math.isfinite(run.final_test_accuracy) for run in self.runs)


def summarize(variants: list[Variant], records: list[list[dict]]) -> list[Summary]:
    """Each variant's runs (``records[i]``: variant i's, in seed order; variants[0] is the
    baseline), with its paired differences to the baseline."""
    summaries = []
    for variant, runs in zip(variants, records, strict=True):
        summaries.append(
            Summary(
                variant.name,
                variant.describe(),
                variant.settings.cost,
                ", ".join(sorted({run["ran"] for run in runs})),
                [RunValues.of(run) for run in runs],
            )
        )
    baseline = summaries[0]
    for summary in summaries[1:]:
        for measure in ("final_test_accuracy", "best_test_accuracy"):
            summary.differences[measure] = paired_difference(
                summary.values(measure), baseline.values(measure)
            )
    return summaries


def _mean_std(values: list[float], percent: bool = True) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    scale, digits = (100, 2) if percent else (1, 4)
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{scale * statistics.fmean(finite):.{digits}f} ± {scale * std:.{digits}f}"


def _points(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{100 * value:+.2f}"


def _interval(interval: tuple[float, float]) -> str:
    return f"[{_points(interval[0])}, {_points(interval[1])}]"


def _p_value(p: float) -> str:
    return "—" if not math.isfinite(p) else f"{p:.2g}" if p >= 1e-4 else "< 0.0001"


def _reach(summary: Summary, threshold: float) -> str:
    reached = [run.reached[threshold] for run in summary.runs if run.reached[threshold]]
    if not reached:
        return f"— (0/{len(summary.runs)})"
    epochs = statistics.fmean(epoch for epoch, _ in reached)
    seconds = statistics.fmean(seconds for _, seconds in reached)
    return f"{epochs:.1f} ({seconds:.1f} s), {len(reached)}/{len(summary.runs)}"


def markdown(summaries: list[Summary], seeds: list[int]) -> str:
    best_by = {run.best_by for summary in summaries for run in summary.runs}
    best = (
        "best test accuracy % (epoch chosen on validation)"
        if best_by == {"validation"}
        else "best test accuracy % (epoch chosen on test: optimistic)"
    )
    lines = [
        f"Seeds {' '.join(map(str, seeds))}, paired: run i of every variant starts from the same "
        "initial weights and draws the same mini-batches. Mean ± sample std over the seeds.",
        "",
        f"| variant | final test accuracy % | {best} | final test cost | best test cost "
        "| final training accuracy % | s/epoch | trained | diverged |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in summaries:
        seconds = [run.seconds_per_epoch for run in s.runs]
        lines.append(
            f"| {s.name} "
            f"| {_mean_std(s.values('final_test_accuracy'))} "
            f"| {_mean_std(s.values('best_test_accuracy'))} "
            f"| {_mean_std(s.values('final_test_cost'), False)} ({s.cost}) "
            f"| {_mean_std(s.values('best_test_cost'), False)} "
            f"| {_mean_std(s.values('final_train_accuracy'))} "
            f"| {_mean_std(seconds, False)} | {s.ran} | {s.diverged} |"
        )
    lines += [
        "",
        f"The baseline: `{summaries[0].changes}` over the defaults."
        if summaries[0].changes
        else "The baseline: the defaults.",
        *(f"{s.name}: `{s.changes}`." for s in summaries[1:] if not s.name.startswith("--")),
        "s/epoch: the wall time of an epoch of training and evaluation (of a batched sweep: "
        "divided by its copies).",
        "",
        "Paired difference to the baseline, variant − baseline, in points of test accuracy:",
        "",
        "| variant | measure | mean | 95% interval, paired t | 95% interval, bootstrap "
        "| p-value (paired t) | better on |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries[1:]:
        for measure, d in s.differences.items():
            lines.append(
                f"| {s.name} | {measure.replace('_', ' ')} | {_points(d.mean)} "
                f"| {_interval(d.t_interval)} | {_interval(d.bootstrap_interval)} "
                f"| {_p_value(d.p_value)} | {d.wins} of {d.count} seeds |"
            )
    lines += [
        "",
        "Time to reach a test accuracy: mean epochs (and seconds of training and evaluation) "
        "over the seeds that reached it, and how many did:",
        "",
        "| variant | " + " | ".join(f"{100 * t:.0f}%" for t in THRESHOLDS) + " |",
        "|---|" + "---:|" * len(THRESHOLDS),
    ]
    for s in summaries:
        lines.append(f"| {s.name} | " + " | ".join(_reach(s, t) for t in THRESHOLDS) + " |")
    return "\n".join(lines) + "\n"


def _csv_row(summary: Summary) -> dict:
    row = {"variant": summary.name, "changes": summary.changes, "cost": summary.cost}
    for name in (
        "final_test_accuracy",
        "best_test_accuracy",
        "final_test_cost",
        "best_test_cost",
        "final_train_accuracy",
        "seconds_per_epoch",
    ):
        finite = [v for v in summary.values(name) if math.isfinite(v)]
        row[f"{name}_mean"] = statistics.fmean(finite) if finite else math.nan
        row[f"{name}_std"] = statistics.stdev(finite) if len(finite) > 1 else math.nan
    for measure in ("final_test_accuracy", "best_test_accuracy"):
        d = summary.differences.get(measure)
        row |= {
            f"{measure}_difference": d.mean if d else "",
            f"{measure}_t_low": d.t_interval[0] if d else "",
            f"{measure}_t_high": d.t_interval[1] if d else "",
            f"{measure}_bootstrap_low": d.bootstrap_interval[0] if d else "",
            f"{measure}_bootstrap_high": d.bootstrap_interval[1] if d else "",
            f"{measure}_p_value": d.p_value if d else "",
        }
    for threshold in THRESHOLDS:
        reached = [run.reached[threshold] for run in summary.runs if run.reached[threshold]]
        row[f"epochs_to_{100 * threshold:.0f}"] = (
            statistics.fmean(epoch for epoch, _ in reached) if reached else ""
        )
        row[f"seconds_to_{100 * threshold:.0f}"] = (
            statistics.fmean(seconds for _, seconds in reached) if reached else ""
        )
        row[f"seeds_reaching_{100 * threshold:.0f}"] = len(reached)
    row |= {"trained": summary.ran, "diverged": summary.diverged, "seeds": len(summary.runs)}
    return row


def figure(variants: list[Variant], records: list[list[dict]]):
    """Training and test accuracy over the epochs: per variant the mean over the seeds, and the
    band from the lowest to the highest seed."""
    from matplotlib.figure import Figure  # matplotlib is loaded only when the report is drawn
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    lowest = 1.0
    for variant, runs in zip(variants, records, strict=True):
        histories = [run["history"] for run in runs if run["history"]]
        if not histories:
            continue
        epochs = min(len(h) for h in histories)
        x = [h["epoch"] for h in histories[0][:epochs]]
        for axis, split in zip(axes, ("train", "test")):
            rows = [
                [100 * h[f"{split}_accuracy"] for h in history[:epochs]] for history in histories
            ]
            columns = list(zip(*rows))
            mean = [statistics.fmean(column) for column in columns]
            line = axis.plot(x, mean, marker="o" if epochs < 10 else None, label=variant.name)[0]
            axis.fill_between(
                x,
                [min(c) for c in columns],
                [max(c) for c in columns],
                alpha=0.2,
                color=line.get_color(),
            )
            lowest = min(lowest, *(min(c) / 100 for c in columns))
    for axis, split in zip(axes, ("training", "test")):
        axis.set_title(f"{split} accuracy (mean of {len(records[0])} seeds, band: their range)")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if lowest < 0.2:
            axis.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance (10%)")
    axes[0].set_ylabel("accuracy %")
    axes[1].legend(loc="best", fontsize=8)
    return fig


def write_report(
    directory: Path, plan: dict, variants: list[Variant], seeds: list[int], records, out
) -> list[Summary]:
    """compare.md, .csv, .json and .png, and the figure and tables in TensorBoard.

    ``records[i]`` holds variant i's run records in the order of ``seeds``; ``plan`` is the plan
    as a dict, for compare.json."""
    from torch.utils.tensorboard import SummaryWriter

    summaries = summarize(variants, records)
    table = markdown(summaries, seeds)
    (directory / "compare.md").write_text(f"# gd-torch compare, {directory.name}\n\n{table}")
    rows = [_csv_row(summary) for summary in summaries]
    with (directory / "compare.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    curves = {
        variant.name: {
            str(seed): [
                {k: h[k] for k in ("epoch", "train_accuracy", "test_accuracy")}
                for h in run["history"]
            ]
            for seed, run in zip(seeds, runs, strict=True)
        }
        for variant, runs in zip(variants, records, strict=True)
    }
    report = {
        "plan": plan,
        "variants": [
            row
            | {
                "runs": [
                    asdict(run) | {"reached": {str(t): r for t, r in run.reached.items()}}
                    for run in summary.runs
                ]
            }
            for row, summary in zip(rows, summaries)
        ],
        "epochs": curves,
    }
    (directory / "compare.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    fig = figure(variants, records)
    fig.savefig(directory / "compare.png")
    writer = SummaryWriter(str(directory))
    try:
        writer.add_figure("compare/accuracy", fig, 0)
        writer.add_text("compare/report", table, 0)
    finally:
        writer.close()
    print(
        f"\n{table}\nreport in {directory / 'compare.md'}, compare.csv, compare.json and "
        f"compare.png; every run and the figure: tensorboard --logdir {directory}",
        file=out,
        flush=True,
    )
    return summaries
