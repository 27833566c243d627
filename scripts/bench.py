"""Thin entry point: ``python scripts/bench.py [options]`` is ``gd-torch bench [options]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gd_torch.cli import main  # noqa: E402

main(["bench", *sys.argv[1:]])
