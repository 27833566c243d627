#!/usr/bin/env python3
"""Screenshots of TensorBoard's tabs in headless Chromium (docs/tensorboard-*.png), from a checkout:

python scripts/screenshots.py --data-root ../shared/mnist     # a fresh 2 x 2 sweep, then the shots
python scripts/screenshots.py --logdir runs/<sweep> --only hparams
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gd_torch

from gd_torch.tools.screenshots import main  # noqa: E402

main(sys.argv[1:])
