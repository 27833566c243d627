"""Each run gets its own new directory under runs/: TensorBoard events, config, versions,
checkpoints."""

import json
import platform
import time
from importlib import metadata
from pathlib import Path

from gd_torch.core import signals
from gd_torch.core.errors import GdTorchError, os_error_message
from gd_torch.core.files import mark_run_directory, write_file
from gd_torch.core.naming import label, single_run_names
from gd_torch.core.settings import TrainingSettings


def default_run_name(settings: TrainingSettings, dry_run: bool = False) -> str:
    """What tells the run apart: the settings changed from the defaults, its learning rate and
    its seed (``b100_lr0.5_s2``; see gd_torch.core.naming)."""
    return label(settings, single_run_names(settings)) + ("_dry-run" if dry_run else "")


def create_run_directory(runs_dir: str | Path, name: str, timestamp: bool = True) -> Path:
    """A new directory ``runs_dir/<name>_<YYYYmmdd-HHMMSS>`` (``runs_dir/<name>`` without the
    timestamp), never one that exists (a -2, -3 ... suffix is added), marked as gd_torch's own
    (``gd_torch.core.files``). The name comes first so that TensorBoard's legends and cards show
    what differs, and the names sort by it, then by time."""
    parent = Path(runs_dir)
    if parent.exists() and not parent.is_dir():
        raise GdTorchError(f"--runs-dir {parent} is a file, not a directory")
    stem = f"{name}_{time.strftime('%Y%m%d-%H%M%S')}" if timestamp else name
    for attempt in range(1, 1000):
        path = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            with signals.protected():  # a stop waits: never a run directory without its marker
                path.mkdir(parents=True)
                mark_run_directory(path)
            return path
        except FileExistsError:
            continue
        except OSError as error:
            raise GdTorchError(
                f"cannot create the run directory {path}: {os_error_message(error)}"
            ) from None
    raise GdTorchError(f"could not find a free run directory name for {parent / stem}")


def library_versions() -> dict:
    import numpy
    import tensorboard
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": metadata.version("torchvision"),  # importing it would take seconds
        "tensorboard": tensorboard.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }


def write_json(path: Path, values: dict) -> None:
    write_file(path, json.dumps(values, indent=2, default=str) + "\n")
