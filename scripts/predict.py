#!/usr/bin/env python3
"""`gd-torch predict` from a checkout, installed or not:

python scripts/predict.py runs/<run>/last.pt my-digit.png --show
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch

from gd_torch.cli import main  # noqa: E402

main(["predict", *sys.argv[1:]])
