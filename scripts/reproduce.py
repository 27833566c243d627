"""gd-torch reproduce, without installing: python scripts/reproduce.py --data-root ../shared/mnist (see gd_torch/reproduce.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gd_torch.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["reproduce", *sys.argv[1:]])
