"""Each run gets its own new directory under runs/: TensorBoard events, config, versions,
checkpoints."""

import json
import platform
import time
from pathlib import Path

from gd_torch.core import signals
from gd_torch.core.errors import GdTorchError, os_error_message
from gd_torch.core.files import mark_run_directory, write_file
from gd_torch.core.settings import TrainingSettings


def default_run_name(settings: TrainingSettings, dry_run: bool = False) -> str:
    hidden = "-".join(map(str, settings.hidden_sizes)) or "none"
    return (
        f"h{hidden}_{settings.engine}_b{settings.batch_size}_lr{settings.learning_rate:g}"
        f"_s{settings.seed}" + ("_dry-run" if dry_run else "")
    )


def create_run_directory(runs_dir: str | Path, name: str) -> Path:
    """A new directory ``runs_dir/<YYYYmmdd-HHMMSS>_<name>``, never one that exists (a -2, -3
    ... suffix is added), marked as gd_torch's own (``gd_torch.core.files``)."""
    parent = Path(runs_dir)
    if parent.exists() and not parent.is_dir():
        raise GdTorchError(f"--runs-dir {parent} is a file, not a directory")
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}_{name}"
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
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "tensorboard": tensorboard.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }


def write_json(path: Path, values: dict) -> None:
    write_file(path, json.dumps(values, indent=2, default=str) + "\n")
