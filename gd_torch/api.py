"""The Python API: ``gd_torch.train`` is the core loop with the TensorBoard dashboard and the
trajectory (``trajectory.bin``) attached.

import gd_torch
settings = gd_torch.TrainingSettings(epochs=5, momentum=0.9, learning_rate=0.3)
result = gd_torch.train(settings, gd_torch.RunOptions(data_root="../shared/mnist"))
result.final["test_accuracy"], result.run_dir
"""

from collections.abc import Sequence
from pathlib import Path
from typing import IO

from gd_torch.core import loop
from gd_torch.core.data import Mnist
from gd_torch.core.loop import TrainResult
from gd_torch.core.model import Network
from gd_torch.core.run import Callback
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import OptimizerFactory
from gd_torch.core.trajectory import TrajectoryRecorder
from gd_torch.dashboard.tensorboard import TensorBoard


def train(
    settings: TrainingSettings | None = None,
    options: RunOptions | None = None,
    *,
    data: Mnist | None = None,
    network: Network | None = None,
    optimizer: OptimizerFactory | None = None,
    callbacks: Sequence[Callback] = (),
    tensorboard: bool = True,
    resume: str | Path | None = None,
    out: IO[str] | None = None,
) -> TrainResult:
    """``gd_torch.core.loop.train``, logging to TensorBoard in the run directory unless
    ``tensorboard`` is False, and keeping the path of the weights in ``trajectory.bin`` (with
    ``options.runs_dir`` None nothing is written)."""
    callbacks = [*callbacks, TensorBoard()] if tensorboard else list(callbacks)
    callbacks.append(TrajectoryRecorder())
    return loop.train(
        settings,
        options,
        data=data,
        network=network,
        optimizer=optimizer,
        callbacks=callbacks,
        resume=resume,
        out=out,
    )
