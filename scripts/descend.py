#!/usr/bin/env python3
"""`gd-torch descend` from a checkout, installed or not:

python scripts/descend.py --data-root ../shared/mnist
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch

from gd_torch.cli import main  # noqa: E402

main(["descend", *sys.argv[1:]])
