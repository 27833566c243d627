"""``train_copies`` under torchrun, for tests: copies 0-1 quick (batch 100), 2-3 slow (batch 1).

    torchrun --nproc_per_node=2 tests/copies_script.py DATA_ROOT RUNS_DIR

With 2 ranks, rank 0 trains the quick copies and is done long before rank 1, which a test can
then kill.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch

from gd_torch.core.settings import RunOptions, TrainingSettings  # noqa: E402
from gd_torch.tools.sweep import summarize, train_copies  # noqa: E402

COPIES = [
    TrainingSettings(epochs=4, batch_size=batch, seed=seed, learning_rate=0.5)
    for batch, seed in ((100, 0), (100, 1), (1, 2), (1, 3))
]


def main(data_root: str, runs_dir: str) -> None:
    options = RunOptions(data_root=data_root, download=False, runs_dir=runs_dir, image_every=0)
    summarize(train_copies(COPIES, options, "copies"), options)


if __name__ == "__main__":
    main(*sys.argv[1:])
