"""gd-torch compare: is a change better than the baseline, by more than seed noise?

    gd-torch compare --variant "--cost cross-entropy" --variant "--momentum 0.9 --learning-rate 0.3"
    gd-torch compare --seeds 0 1 2 --epochs 1 --variant "--cost cross-entropy"    # a quick look
    gd-torch compare --preset 3b1b --variants variants.toml                        # from a file
    gd-torch compare --resume runs/compare_<time>        # continue a stopped comparison
    tensorboard --logdir runs/compare_<time>             # every run, and the comparison's figure

The baseline is the default settings, or ``--preset``, with the training settings given here;
each variant changes some of them (gd_torch.tools.variants). Every variant and the baseline are
trained with the same seeds, so run i of each starts from the same initial weights and takes
its mini-batches in the same order (``seeded_generators``), and the report compares them in
pairs (gd_torch.tools.significance): a difference between the runs of one seed is the change's,
not the seed's.

The seeds of one variant differ only by their seed, so they are trained as one batched sweep
(gd_torch.tools.sweep) when the sweep can run that variant, and one after another otherwise.
Each finished run's per-epoch results are kept on disk (``results/``) as soon as it ends, so a
stopped comparison continues where it stopped: finished runs are kept, a single run continues
from its last checkpoint, and a variant whose sweep was stopped is trained again. Every run of
the comparison goes through ``train_jobs``: the one function a sharded launcher can take over.
"""

import argparse
import dataclasses
import io
import json
import math
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gd_torch.core import signals
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.data import Mnist, load_mnist
from gd_torch.core.errors import GdTorchError
from gd_torch.core.guard import Diverged, Interrupted
from gd_torch.core.loop import prepare_data
from gd_torch.core.presets import PRESETS, preset_settings
from gd_torch.core.run import Callback
from gd_torch.core.run_dir import create_run_directory, library_versions
from gd_torch.core.settings import (
    RunOptions,
    TrainingSettings,
    add_arguments,
    from_arguments,
    from_dict,
    to_dict,
)
from gd_torch.tools.variants import PAIRED, Variant, check_distinct, from_file, from_options

PLAN = "plan.json"
RESULTS = "results"
EPOCH_KEYS = (
    "train_cost",
    "train_accuracy",
    "test_cost",
    "test_accuracy",
    "validation_cost",
    "validation_accuracy",
)


@dataclass(frozen=True)
class Plan:
    """What a comparison trains: the baseline and its variants (variants[0] is the baseline, with
    no changes), each at every seed."""

    variants: list[Variant]
    seeds: list[int]
    options: RunOptions  # of every run; runs_dir is where the comparison's directory was made
    batched: bool  # train a variant's seeds as one sweep when the sweep can

    def to_dict(self) -> dict:
        return {
            "variants": [
                {"name": v.name, "changes": v.changes, "settings": to_dict(v.settings)}
                for v in self.variants
            ],
            "seeds": self.seeds,
            "options": to_dict(self.options),
            "batched": self.batched,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Plan":
        variants = [
            Variant(v["name"], v["changes"], from_dict(TrainingSettings, v["settings"]))
            for v in values["variants"]
        ]
        return cls(
            variants, values["seeds"], from_dict(RunOptions, values["options"]), values["batched"]
        )


@dataclass(frozen=True)
class Job:
    """One run of the comparison: variant ``variant`` (0 = the baseline) at one seed."""

    variant: int
    settings: TrainingSettings  # the variant's, with the job's seed

    @property
    def key(self) -> str:
        return f"v{self.variant}_s{self.settings.seed}"


def plan_comparison(
    baseline: TrainingSettings,
    variants: list[Variant],
    seeds: list[int],
    options: RunOptions,
    batched: bool = True,
) -> Plan:
    """The plan, refused in one line when it cannot answer the question."""
    if len(seeds) < 2:
        raise GdTorchError(
            f"--seeds must name at least 2 seeds (got {len(seeds)}): one run per variant cannot "
            "tell a change from seed noise"
        )
    if len(set(seeds)) != len(seeds) or any(seed < 0 for seed in seeds):
        raise GdTorchError(
            f"--seeds must be distinct non-negative integers (got {' '.join(map(str, seeds))})"
        )
    if not variants:
        raise GdTorchError("give at least one --variant (or --variants FILE) to compare")
    if options.runs_dir is None:
        raise GdTorchError("a comparison writes its runs and report: give it a runs_dir")
    defaults = TrainingSettings()
    changed = {
        name: value
        for name, value in to_dict(baseline).items()
        if name not in PAIRED and value != getattr(defaults, name)
    }  # the baseline's changes are from the defaults
    baseline_variant = Variant("baseline", changed, baseline)
    return Plan([baseline_variant, *variants], list(seeds), options, batched)


def jobs_of(plan: Plan) -> list[Job]:
    return [
        Job(index, dataclasses.replace(variant.settings, seed=seed))
        for index, variant in enumerate(plan.variants)
        for seed in plan.seeds
    ]


def compare(plan: Plan, directory: Path | None = None, data=None, out=None):
    """Train what the plan's runs that are not finished yet, then write the report; returns
    (the comparison's directory, the report's per-variant summaries).

    ``directory`` None starts a new comparison under ``plan.options.runs_dir``; a directory holds
    one to continue. ``data`` (an ``Mnist``) replaces MNIST from the data folder.
    """
    from gd_torch.tools.compare_report import write_report

    out = out or sys.stdout
    datasets = DataSets(plan.options, data)
    for variant in plan.variants:  # refuse what cannot train before the first run starts
        prepare_data(variant.settings, plan.options, "cpu", datasets.get(variant.settings))
    if directory is None:
        directory = create_run_directory(plan.options.runs_dir, "compare")
        _write_json(directory / PLAN, plan.to_dict() | {"versions": library_versions()})
    (directory / RESULTS).mkdir(exist_ok=True)
    records = {
        job.key: _read_json(directory / RESULTS / f"{job.key}.json") for job in jobs_of(plan)
    }
    pending = [job for job in jobs_of(plan) if records[job.key] is None]
    print(
        f"gd-torch compare: the baseline and {len(plan.variants) - 1} variant(s), seeds "
        f"{' '.join(map(str, plan.seeds))}: {len(records) - len(pending)} of {len(records)} "
        f"runs already finished; comparison {directory}",
        file=out,
        flush=True,
    )

    def kept() -> str:
        done = sum(record is not None for record in records.values())
        return (
            f"{done} of {len(records)} runs finished (kept in {directory / RESULTS}); continue "
            f"with: gd-torch compare --resume {directory}"
        )

    signals.leaving(f" between runs, with {kept()}")  # a stop at once, from the command line
    try:
        for job, record in train_jobs(pending, plan, directory, datasets, out):
            _write_json(directory / RESULTS / f"{job.key}.json", record)
            (directory / RESULTS / f"{job.key}.started").unlink(missing_ok=True)
            records[job.key] = record
            signals.leaving(f" between runs, with {kept()}")
            print(f"  {_run_line(plan, job, record)}", file=out, flush=True)
    except (KeyboardInterrupt, Interrupted) as error:  # from Python; a run stopped cleanly
        number = error.exit_code - 128 if isinstance(error, Interrupted) else signal.SIGINT
        raise Interrupted(
            f"stopped by {signal.Signals(number).name} with {kept()}", number
        ) from None
    by_variant = [
        [records[job.key] for job in jobs_of(plan) if job.variant == index]
        for index in range(len(plan.variants))
    ]
    summaries = write_report(directory, plan.to_dict(), plan.variants, plan.seeds, by_variant, out)
    return directory, summaries


def train_jobs(
    jobs: list[Job], plan: Plan, directory: Path, datasets: "DataSets", out
) -> Iterator[tuple[Job, dict]]:
    """Train the jobs, yielding (job, record) as each finishes: every run of a comparison goes
    through here.

    The jobs of one variant differ only by their seed: they are one batched sweep when the sweep
    can train them (and ``plan.batched``), else single runs, one after another. A record is the
    run's per-epoch results (``history``: EPOCH_KEYS and ``seconds``, the wall time of the epoch
    that is this run's: a sweep's epoch divided by its copies), ``ran`` (how it was trained),
    ``run_dir`` and ``diverged`` (the message, or None).
    """
    from gd_torch.tools.sweep import sweep, unsupported

    for index, variant in enumerate(plan.variants):
        group = [job for job in jobs if job.variant == index]
        if not group:
            continue
        name = variant.name
        data = datasets.get(variant.settings)
        runs_dir = directory / f"v{index}_{_slug(name)}"
        if plan.batched and len(group) > 1 and not unsupported(plan.options, variant.settings):
            print(f"{name}: {len(group)} seeds as one batched sweep", file=out, flush=True)
            for stopped in runs_dir.glob("sweep*"):  # a sweep stopped before its summary
                if not (stopped / "summary.md").is_file():
                    shutil.rmtree(stopped)  # is trained again: keep one log per run
            options = dataclasses.replace(plan.options, runs_dir=str(runs_dir), run_name="sweep")
            result = sweep(
                group[0].settings,
                options,
                [job.settings.seed for job in group],
                data=data,
                out=_EpochLines(out, f"  {name}: "),
            )
            for job, history, final in zip(group, result.histories, result.finals):
                copies = len(group)
                yield (
                    job,
                    {
                        "history": [_epoch(h, copies) for h in history],
                        "ran": f"batched sweep of {copies}",
                        "run_dir": str(result.sweep_dir.relative_to(directory)),
                        "diverged": None if math.isfinite(final["train_cost"]) else "diverged",
                    },
                )
        else:
            for job in group:
                yield job, _train_alone(job, variant, plan, runs_dir, directory, data, out)


def _train_alone(
    job: Job, variant: Variant, plan: Plan, runs_dir: Path, directory: Path, data: Mnist, out
) -> dict:
    """One run by ``gd_torch.train``, continued from its checkpoint when an earlier attempt at
    it was stopped."""
    from gd_torch.api import train

    started = directory / RESULTS / f"{job.key}.started"
    previous = Path(started.read_text()) if started.is_file() else None
    seed = job.settings.seed
    if previous is not None and (previous / "last.pt").is_file():
        state = load_checkpoint(previous / "last.pt")
        if state["epoch"] >= (1 if plan.options.dry_run else job.settings.epochs):
            return _record(state["history"], previous, directory)  # finished, but not recorded
        print(f"{variant.name} seed {seed}: continued from {previous}", file=out, flush=True)
        resume = previous
    else:
        print(f"{variant.name} seed {seed}: trained alone", file=out, flush=True)
        resume = None
    options = dataclasses.replace(plan.options, runs_dir=str(runs_dir), run_name=f"s{seed}")
    try:
        result = train(
            job.settings,
            options,
            data=data,
            resume=resume,
            callbacks=[_NoteRunDirectory(started)],
            out=_EpochLines(out, f"  {variant.name} seed {seed}: "),
        )
    except Diverged as error:
        return {"history": [], "ran": "alone", "run_dir": None, "diverged": str(error)}
    return _record(result.history, result.run_dir, directory)


def _record(history: list[dict], run_dir: Path, directory: Path) -> dict:
    return {
        "history": [_epoch(h, 1) for h in history],
        "ran": "alone",
        "run_dir": str(Path(run_dir).relative_to(directory)),
        "diverged": None,
    }


def _epoch(metrics: dict, copies: int) -> dict:
    """An epoch's results as a comparison keeps them; ``seconds`` is this run's share."""
    kept = {name: metrics[name] for name in EPOCH_KEYS if name in metrics}
    return {"epoch": metrics["epoch"], **kept, "seconds": metrics["seconds"] / copies}


class DataSets:
    """MNIST read once per --validation-size, or the data given from Python."""

    def __init__(self, options: RunOptions, data: Mnist | None):
        self.options, self.given, self.loaded = options, data, {}

    def get(self, settings: TrainingSettings) -> Mnist:
        if self.given is not None:
            return self.given
        size = settings.validation_size
        if size not in self.loaded:
            self.loaded[size] = load_mnist(self.options.data_root, self.options.download, size)
        return self.loaded[size]


class _NoteRunDirectory(Callback):
    """Writes where ``train`` put the run into ``path`` before its first step: a comparison
    stopped during the run continues it from there."""

    def __init__(self, path: Path):
        self.path = path

    def on_run_start(self, run) -> None:
        self.path.write_text(str(run.run_dir))


class _EpochLines(io.TextIOBase):
    """Passes on only the "epoch ..." lines of a run's output, each after ``prefix``."""

    def __init__(self, out, prefix: str):
        self.out, self.prefix, self.pending = out, prefix, ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.startswith("epoch"):
                print(self.prefix + line, file=self.out, flush=True)
        return len(text)


def _run_line(plan: Plan, job: Job, record: dict) -> str:
    name = f"{plan.variants[job.variant].name} seed {job.settings.seed}"
    if record["diverged"] or not record["history"]:
        return f"{name}: diverged"
    last = record["history"][-1]
    return (
        f"{name}: final test accuracy {100 * last['test_accuracy']:.2f}%, training accuracy "
        f"{100 * last['train_accuracy']:.2f}%, {len(record['history'])} epochs ({record['ran']})"
    )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:60] or "variant"


def _write_json(path: Path, values: dict) -> None:
    """Atomically: a stopped comparison never leaves half a record."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values, indent=1, default=str) + "\n")
    temporary.replace(path)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_plan(directory: str | Path) -> tuple[Path, Plan]:
    """A comparison's directory and plan, to continue it."""
    directory = Path(directory)
    if not (directory / PLAN).is_file():
        raise GdTorchError(f"--resume {directory}: no comparison there (it has no {PLAN})")
    try:
        return directory, Plan.from_dict(json.loads((directory / PLAN).read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise GdTorchError(f"--resume {directory}: {PLAN} is damaged ({error})") from None


def variant_values_joined(argv: list[str]) -> list[str]:
    """``--variant --nesterov`` as ``--variant=--nesterov``: argparse reads a value that looks like
    one option (no space in it) as an option of its own, not as the variant."""
    joined = []
    for argument in argv:
        if joined and joined[-1] == "--variant":
            joined[-1] = f"--variant={argument}"
        else:
            joined.append(argument)
    return joined


def add_compare_arguments(parser: argparse.ArgumentParser, settings_title: str, options_title: str):
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar='"OPTIONS"',
        help="a variant: training settings of gd-torch train that change the baseline, in one "
        'string, e.g. --variant "--cost cross-entropy" (repeat for more variants)',
    )
    parser.add_argument(
        "--variants",
        metavar="FILE",
        help="variants from a TOML or JSON file: one table of settings per variant name",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=argparse.SUPPRESS,
        metavar="S",
        help="the seeds every variant is trained with, paired (default: 0 1 2 3 4)",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        help="the baseline starts from a published configuration (default: the defaults)",
    )
    parser.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="train the seeds of a variant as one batched sweep where the sweep can (default: "
        "yes); --no-batch trains every run alone, so that wall times compare like for like",
    )
    parser.add_argument(
        "--resume",
        metavar="COMPARE_DIR",
        help="continue a stopped comparison: its finished runs are kept (run options may change)",
    )
    add_arguments(parser, TrainingSettings, settings_title + ": the baseline's")
    add_arguments(parser, RunOptions, options_title + ": of every run")


def run_compare(arguments: argparse.Namespace) -> None:
    given_settings = [
        name for name in dataclasses.asdict(TrainingSettings()) if hasattr(arguments, name)
    ]
    if arguments.resume:
        plan_given = given_settings + [
            flag
            for flag, given in (
                ("variant", arguments.variant),
                ("variants", arguments.variants),
                ("seeds", hasattr(arguments, "seeds")),
                ("preset", arguments.preset),
            )
            if given
        ]
        if plan_given:
            raise GdTorchError(
                f"--{plan_given[0].replace('_', '-')} cannot be given with --resume: a resumed "
                "comparison keeps its baseline, variants and seeds (run options may change)"
            )
        directory, plan = load_plan(arguments.resume)
        options = from_arguments(arguments, RunOptions, plan.options)
        if options.dry_run != plan.options.dry_run:
            raise GdTorchError("--dry-run cannot change when resuming a comparison")
        plan = dataclasses.replace(
            plan, options=options, batched=getattr(arguments, "batch", plan.batched)
        )
        compare(plan, directory)
        return
    if "seed" in given_settings:
        raise GdTorchError("--seed: a comparison trains every variant at each of its --seeds")
    baseline = from_arguments(
        arguments,
        TrainingSettings,
        preset_settings(arguments.preset) if arguments.preset else TrainingSettings(),
    )
    variants = [from_options(text, baseline) for text in arguments.variant]
    if arguments.variants:
        variants += from_file(arguments.variants, baseline)
    check_distinct(variants)
    plan = plan_comparison(
        baseline,
        variants,
        getattr(arguments, "seeds", list(range(5))),
        from_arguments(arguments, RunOptions),
        getattr(arguments, "batch", True),
    )
    compare(plan)
