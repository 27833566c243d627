"""The search behind TrainingSettings' defaults: which settings take 784-16-16-10 to 96%?

Sigmoid everywhere, the quadratic cost and torch.optim.SGD (no momentum) stay fixed; the
search varies learning rate, schedule, epochs, batch size, init and L2 weight decay. Every
candidate trains on the first 50,000 training images and is judged by its accuracy on the
held-out last 10,000 (validation), so the test set is not what the search tunes on.

    python scripts/search_defaults.py --stage 1             # run a stage, appending to the log
    python scripts/search_defaults.py --table               # the Markdown table of all results

Runs already in the log are skipped, so an interrupted stage resumes where it stopped.
The table in docs/defaults-search.md was printed by ``--table``.
"""

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gd_torch.api import train  # noqa: E402
from gd_torch.core.data import load_mnist  # noqa: E402
from gd_torch.core.settings import RunOptions, TrainingSettings, default_data_root  # noqa: E402

VALIDATION_SIZE = 10_000
BASELINE = dict(
    learning_rate=1.5,
    lr_schedule="constant",
    epochs=30,
    batch_size=10,
    init="nielsen-improved",
    weight_decay=0.0,
)

# Each stage: (candidate overrides of BASELINE, seeds). Stage 1 scans one seed widely;
# later stages re-run the leaders on more seeds (see docs/defaults-search.md for why).
STAGES = {
    "1": (
        [
            {},
            dict(lr_schedule="cosine"),
            dict(learning_rate=3.0, lr_schedule="cosine"),
            dict(learning_rate=6.0, lr_schedule="cosine"),
            dict(lr_schedule="cosine", epochs=60),
            dict(lr_schedule="cosine", weight_decay=1e-5),
            dict(lr_schedule="cosine", weight_decay=3e-5),
            dict(lr_schedule="cosine", weight_decay=1e-4),
            dict(lr_schedule="cosine", weight_decay=6e-5),
        ],
        [0],
    ),
    "2": (
        [
            dict(lr_schedule="cosine", epochs=60, weight_decay=3e-5),
            dict(lr_schedule="cosine", epochs=60, weight_decay=1e-4),
            dict(learning_rate=3.0, lr_schedule="cosine", weight_decay=6e-5),
        ],
        [0],
    ),
    "3": ([dict(lr_schedule="cosine", weight_decay=decay) for decay in (3e-5, 1e-4)], [1]),
    "4": (
        [
            dict(learning_rate=3.0, lr_schedule="cosine", epochs=60, weight_decay=6e-5),
            dict(learning_rate=3.0, lr_schedule="cosine", weight_decay=6e-5, init="pytorch"),
            dict(learning_rate=3.0, lr_schedule="linear", weight_decay=6e-5),
        ],
        [0],
    ),
    # the batch size at the same η/batch (so the same steps per example and the same decay per
    # epoch)
    "5": (
        [
            dict(learning_rate=6.0, lr_schedule="cosine", weight_decay=6e-5, batch_size=20),
            dict(learning_rate=1.5, lr_schedule="cosine", weight_decay=6e-5, batch_size=5),
        ],
        [0],
    ),
}


def candidate_key(overrides: dict, seed: int) -> str:
    return json.dumps(BASELINE | overrides | {"seed": seed}, sort_keys=True)


def run_stage(stage: str, data_root: str, log_path: Path, runs_dir: str, engine: str) -> None:
    candidates, seeds = STAGES[stage]
    done = (
        {json.loads(line)["key"] for line in log_path.read_text().splitlines()}
        if log_path.exists()
        else set()
    )
    data = load_mnist(
        data_root, download=False, validation_size=VALIDATION_SIZE
    )  # once for every run
    for overrides in candidates:
        for seed in seeds:
            key = candidate_key(overrides, seed)
            if key in done:
                continue
            settings = TrainingSettings(
                **(BASELINE | overrides),
                seed=seed,
                engine=engine,
                validation_size=VALIDATION_SIZE,
            )
            options = RunOptions(data_root=data_root, runs_dir=runs_dir)
            result = train(settings, options, data=data, out=io.StringIO())
            history = result.history
            record = {
                "key": key,
                "stage": stage,
                "config": BASELINE | overrides,
                "seed": seed,
                "validation_accuracy": history[-1]["validation_accuracy"],
                "best_validation_accuracy": max(h["validation_accuracy"] for h in history),
                "test_accuracy": history[-1]["test_accuracy"],
                "train_accuracy": history[-1]["train_accuracy"],
                "seconds_per_epoch": statistics.mean(h["seconds"] for h in history),
            }
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(
                f"stage {stage} seed {seed} {overrides or 'baseline'}: "
                f"validation {100 * record['validation_accuracy']:.2f}% "
                f"(train {100 * record['train_accuracy']:.2f}%), "
                f"{record['seconds_per_epoch']:.2f} s/epoch",
                flush=True,
            )


def table(log_path: Path) -> str:
    """One row per candidate: validation accuracy mean ± std over its seeds (and test, looked at
    only last)."""
    groups: dict[str, list[dict]] = {}
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        groups.setdefault(json.dumps(record["config"], sort_keys=True), []).append(record)
    lines = [
        "| stage | lr (quadratic) | schedule | epochs | batch | init | weight decay | seeds "
        "| validation % (final) | train % | test % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(records, name):
        values = [100 * r[name] for r in records]
        return f"{statistics.mean(values):.2f}" + (
            f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        )

    for records in groups.values():
        c = records[0]["config"]
        stages = ",".join(sorted({r["stage"] for r in records}))
        lines.append(
            f"| {stages} | {c['learning_rate']:g} | {c['lr_schedule']} | {c['epochs']} "
            f"| {c['batch_size']} | {c['init']} | "
            f"{c['weight_decay']:g} | {len(records)} | {pct(records, 'validation_accuracy')} "
            f"| {pct(records, 'train_accuracy')} | "
            f"{pct(records, 'test_accuracy')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGES), help="run this stage of the search")
    parser.add_argument(
        "--table", action="store_true", help="print the Markdown table of everything in the log"
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=Path("runs/defaults-search/results.jsonl"),
        help="JSON-lines results (default: %(default)s)",
    )
    parser.add_argument(
        "--runs-dir",
        default="runs/defaults-search",
        help="parent of the run directories (default: %(default)s)",
    )
    parser.add_argument(
        "--engine", default="manual", choices=("manual", "autograd"), help="(default: %(default)s)"
    )
    parser.add_argument(
        "--data-root",
        default=default_data_root(),
        help="MNIST folder (default: $GD_TORCH_DATA or ./data)",
    )
    arguments = parser.parse_args()
    arguments.log.parent.mkdir(parents=True, exist_ok=True)
    if arguments.stage:
        run_stage(
            arguments.stage,
            arguments.data_root,
            arguments.log,
            arguments.runs_dir,
            arguments.engine,
        )
    if arguments.table:
        print(table(arguments.log))


if __name__ == "__main__":
    main()
