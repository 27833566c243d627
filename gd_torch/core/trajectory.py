"""The path training takes through weight space, kept in the run directory as trajectory.pt.

Gradient descent moves the point θ (every weight and bias, ``gd_torch.core.weight_space``)
downhill on the cost surface. A run keeps that path: θ at step 0, after every epoch and, with
``--snapshot-every N``, after every N-th SGD step. ``gd-torch analyze`` draws it on the cost
surface (``gd_torch.analysis.surface``). The file is one dict, read by
``torch.load(..., weights_only=True)``:

    format        1
    layer_sizes   (784, 16, 16, 10): the network the points belong to
    steps         (S,) int64: the SGD step after which each snapshot was taken, increasing
    epochs        (S,) int64: the epochs finished at that step
    points        (S, P) the snapshots θ, in the run's dtype

P = 13,002 for 784-16-16-10: a snapshot is 52 KB in float32, and the 61 of a default run (step 0
and 60 epochs) 3.2 MB. ``--snapshot-every 100`` at batch 10 adds 60 snapshots an epoch.

It is resumable. The file is rewritten, atomically, after every epoch and when the run ends; a
resumed run keeps the snapshots up to its checkpoint's step and drops the later ones (a crash
after an epoch whose checkpoint was not written leaves them), so it appends where the
checkpoint was and no step appears twice.
"""

from pathlib import Path

import torch
from torch import Tensor

from gd_torch.core.checkpoint import save_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import Network
from gd_torch.core.run import Callback, Run
from gd_torch.core.weight_space import point_of

FORMAT = 1
FILE_NAME = "trajectory.pt"


class Trajectory:
    """Snapshots θ of one network, in the order of their steps."""

    def __init__(self, layer_sizes: tuple[int, ...]):
        self.layer_sizes = tuple(layer_sizes)
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self._points: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def points(self) -> Tensor:
        """(S, P): snapshot i is θ after step ``steps[i]``."""
        return torch.stack(self._points)

    def add(self, step: int, epochs: int, point: Tensor) -> None:
        """Keep θ (P,) after ``step``. A step kept already (an epoch's end that is also an N-th
        step) is kept once, with the later count of epochs finished."""
        if self.steps and step <= self.steps[-1]:
            if step < self.steps[-1]:
                raise ValueError(f"a snapshot of step {step} after one of step {self.steps[-1]}")
            self.epochs[-1] = epochs
            return
        self.steps.append(step)
        self.epochs.append(epochs)
        self._points.append(point.detach().to("cpu", copy=True))

    def until(self, step: int) -> "Trajectory":
        """The snapshots taken at or before ``step``."""
        kept = Trajectory(self.layer_sizes)
        for i, s in enumerate(self.steps):
            if s <= step:
                kept.add(s, self.epochs[i], self._points[i])
        return kept

    def save(self, path: Path) -> None:
        save_checkpoint(  # atomic: a temporary file, then renamed over path
            path,
            {
                "format": FORMAT,
                "layer_sizes": list(self.layer_sizes),
                "steps": torch.tensor(self.steps, dtype=torch.int64),
                "epochs": torch.tensor(self.epochs, dtype=torch.int64),
                "points": self.points,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            trajectory = cls(tuple(state["layer_sizes"]))
            if state["format"] != FORMAT:
                raise ValueError(f"format {state['format']!r}, not {FORMAT}")
            for step, epochs, point in zip(
                state["steps"].tolist(), state["epochs"].tolist(), state["points"], strict=True
            ):
                trajectory.add(step, epochs, point)
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise GdTorchError(f"{path} is not a readable trajectory ({first_line})") from None
        return trajectory


def start_trajectory(
    path: Path, network: Network, resumed: bool, step: int, epochs: int
) -> Trajectory:
    """The trajectory a run starts from at ``step``: a resumed run's own, up to its checkpoint's
    step (it appends there), or a new one whose first snapshot is θ now (step 0, or where a run
    from before trajectories were kept resumes)."""
    if resumed and path.exists():
        return Trajectory.load(path).until(step)
    trajectory = Trajectory(network.sizes)
    trajectory.add(step, epochs, point_of(network))
    return trajectory


class TrajectoryRecorder(Callback):
    """Keeps ``run_dir/trajectory.pt`` for a run that has a run directory (rank 0)."""

    def __init__(self) -> None:
        self.trajectory: Trajectory | None = None
        self.path = Path()  # run_dir/trajectory.pt, once the run starts

    def on_run_start(self, run: Run) -> None:
        if run.run_dir is None:
            return
        self.path = run.run_dir / FILE_NAME
        self.trajectory = start_trajectory(
            self.path, run.network, run.resumed, run.first_step, run.epoch
        )

    def on_step_end(self, run: Run) -> None:
        every = run.options.snapshot_every
        if self.trajectory is not None and every and run.step % every == 0:
            self._add(run, epochs=run.epoch - 1)

    def on_steps_end(self, run: Run, steps: range) -> None:
        """Nothing: a compiled call holds no weights between its steps, so a run with
        --snapshot-every takes the reference loop (gd_torch.core.compiled.choose)."""

    def on_epoch_end(self, run: Run) -> None:
        if self.trajectory is not None:
            self._add(run, epochs=run.epoch)
            self.trajectory.save(self.path)

    def on_run_end(self, run: Run) -> None:
        if self.trajectory is not None:
            self.trajectory.save(self.path)

    def _add(self, run: Run, epochs: int) -> None:
        assert self.trajectory is not None  # started in on_run_start
        self.trajectory.add(run.step, epochs, point_of(run.network))
