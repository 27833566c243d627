#!/usr/bin/env python3
"""`gd-torch sweep` from a checkout, installed or not:

python scripts/sweep.py --num-seeds 16 --data-root ../shared/mnist
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch

from gd_torch.cli import main  # noqa: E402

main(["sweep", *sys.argv[1:]])
