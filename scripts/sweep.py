#!/usr/bin/env python3
"""Same as ``gd-torch sweep ...``, from a checkout: scripts/sweep.py --num-seeds 16 --epochs 30 --data-root ../shared/mnist"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch, installed or not

from gd_torch.cli import main  # noqa: E402

main(["sweep", *sys.argv[1:]])
