"""The path training takes through weight space, kept in the run directory as trajectory.bin.

Gradient descent moves the point θ (every weight and bias, ``gd_torch.core.weight_space``)
downhill on the cost surface. A run keeps that path: θ at step 0, after every epoch and, with
``--snapshot-every N``, after every N-th SGD step. ``gd-torch analyze`` draws it on the cost
surface (``gd_torch.analysis.surface``). The file is a log that only grows: one line of JSON,
then one record per snapshot, little-endian::

    gd_torch trajectory {"format": 2, "layer_sizes": [784, 16, 16, 10], "dtype": "float32"}\n
    step int64 | epochs int64 | θ: P values of the dtype      (the first snapshot)
    step int64 | epochs int64 | θ: P values of the dtype      (the next, ...)

``step``: the SGD step after which the snapshot was taken, increasing; ``epochs``: the epochs
finished at that step. P = 13,002 for 784-16-16-10: a snapshot is 52 KB in float32, and the 61
of a default run 3.2 MB. ``--snapshot-every 100`` at batch 10 adds 60 snapshots an epoch.
``records(path)`` reads it as a NumPy structured array.

After every epoch and when the run ends, the snapshots taken since the last save are appended,
so a save costs what it adds, not the whole path again (which made a run's saves grow with the
square of its length). A record a crash cut short is dropped by the reader. A resumed run keeps
the snapshots up to its checkpoint's step and drops the later ones (a crash after an epoch whose
checkpoint was not written leaves them), writing the file anew once, so it appends where the
checkpoint was and no step appears twice. Runs from before this log kept trajectory.pt (format 1,
one ``torch.save`` dict rewritten every epoch), which ``Trajectory.load`` reads too.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import append_to_file, write_file
from gd_torch.core.model import Network
from gd_torch.core.run import Callback, Run
from gd_torch.core.settings import DTYPES
from gd_torch.core.weight_space import parameter_count, point_of

FORMAT = 2
FILE_NAME = "trajectory.bin"
LEGACY_FILE_NAME = "trajectory.pt"  # format 1, from runs before the log
MAGIC = b"gd_torch trajectory "


class Trajectory:
    """Snapshots θ of one network, in the order of their steps."""

    def __init__(self, layer_sizes: tuple[int, ...]):
        self.layer_sizes = tuple(layer_sizes)
        self.parameters = parameter_count(self.layer_sizes)  # P, the length of every point
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self._points: list[Tensor] = []
        self._saved: tuple[Path, int, int] | None = None  # path, snapshots and bytes of a save

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def points(self) -> Tensor:
        """(S, P): snapshot i is θ after step ``steps[i]``."""
        return torch.stack(self._points)

    def add(self, step: int, epochs: int, point: Tensor) -> None:
        """Keep θ (P,) after ``step``. A step kept already (an epoch's end that is also an N-th
        step) is kept once, with the later count of epochs finished."""
        if point.shape != (self.parameters,):
            raise ValueError(f"a point of shape {tuple(point.shape)} for {self.layer_sizes}")
        if self._points and point.dtype != self._points[0].dtype:
            raise ValueError(f"a {point.dtype} point in a {self._points[0].dtype} trajectory")
        if self.steps and step <= self.steps[-1]:
            if step < self.steps[-1]:
                raise ValueError(f"a snapshot of step {step} after one of step {self.steps[-1]}")
            self.epochs[-1] = epochs
            if self._saved and self._saved[1] == len(self):
                self._saved = None  # the snapshot saved last changed: the next save writes anew
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
        """Write the snapshots to ``path``: the ones taken since this trajectory's last save
        there appended to it, else the whole file, atomically."""
        path = Path(path)
        if self._saved and self._saved[0] == path:
            _, saved, size = self._saved
            new = self._records(saved)
            if append_to_file(path, new, size):
                self._saved = (path, len(self), size + len(new))
                return
        whole = self._header() + self._records(0)
        write_file(path, whole)
        self._saved = (path, len(self), len(whole))

    def _dtype_name(self) -> str:
        dtype = self._points[0].dtype if self._points else torch.float32
        return str(dtype).removeprefix("torch.")

    def _header(self) -> bytes:
        header = {"format": FORMAT, "layer_sizes": list(self.layer_sizes)}
        return MAGIC + json.dumps(header | {"dtype": self._dtype_name()}).encode() + b"\n"

    def _records(self, start: int) -> bytes:
        """The records of snapshots ``start`` onwards."""
        records = np.empty(len(self) - start, record_dtype(self.layer_sizes, self._dtype_name()))
        records["step"], records["epochs"] = self.steps[start:], self.epochs[start:]
        if len(records):
            records["point"] = torch.stack(self._points[start:]).numpy()
        return records.tobytes()

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        """The trajectory in ``path``: a trajectory.bin, or a run's trajectory.pt of before."""
        try:
            with open(path, "rb") as file:
                zipped = file.read(2) == b"PK"  # torch.save's zip: trajectory.pt, format 1
            layer_sizes, steps, epochs, points = (_format_1 if zipped else _format_2)(path)
            trajectory = cls(layer_sizes)
            for step, epochs_done, point in zip(steps, epochs, points, strict=True):
                trajectory.add(step, epochs_done, point)
        except OSError:
            raise
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise GdTorchError(f"{path} is not a readable trajectory ({first_line})") from None
        return trajectory


Snapshots = tuple[tuple[int, ...], list[int], list[int], Tensor]  # sizes, steps, epochs, points


def _format_2(path: str | Path) -> Snapshots:
    layer_sizes, entries = records(path)
    values = entries["point"]  # little-endian, made the machine's own order for torch
    points = torch.from_numpy(values.astype(values.dtype.newbyteorder("=")))
    return layer_sizes, entries["step"].tolist(), entries["epochs"].tolist(), points


def _format_1(path: str | Path) -> Snapshots:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["format"] != 1:
        raise ValueError(f"format {state['format']!r}, not 1")
    layer_sizes = tuple(state["layer_sizes"])
    return layer_sizes, state["steps"].tolist(), state["epochs"].tolist(), state["points"]


def record_dtype(layer_sizes: tuple[int, ...], dtype: str) -> np.dtype:
    """One snapshot's record in trajectory.bin, as a NumPy structured dtype."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    point = (np.dtype(dtype).newbyteorder("<"), (parameter_count(layer_sizes),))
    return np.dtype([("step", "<i8"), ("epochs", "<i8"), ("point", *point)])


def records(path: str | Path) -> tuple[tuple[int, ...], np.ndarray]:
    """trajectory.bin as (layer sizes, its records: ``step``, ``epochs``, ``point`` (S, P)),
    without a last record a crash cut short."""
    data = Path(path).read_bytes()
    line, _, body = data.partition(b"\n")
    if not line.startswith(MAGIC):
        raise ValueError("no gd_torch trajectory header")
    header = json.loads(line.removeprefix(MAGIC))
    if header.get("format") != FORMAT:
        raise ValueError(f"format {header.get('format')!r}, not {FORMAT}")
    layer_sizes = tuple(header["layer_sizes"])
    dtype = record_dtype(layer_sizes, header["dtype"])
    return layer_sizes, np.frombuffer(body, dtype, count=len(body) // dtype.itemsize)


def saved_trajectory(run_dir: Path) -> Path | None:
    """The run's trajectory file: trajectory.bin, or the trajectory.pt of a run from before."""
    for name in (FILE_NAME, LEGACY_FILE_NAME):
        if (run_dir / name).exists():
            return run_dir / name
    return None


def start_trajectory(
    run_dir: Path, network: Network, resumed: bool, step: int, epochs: int
) -> Trajectory:
    """The trajectory a run starts from at ``step``: a resumed run's own, up to its checkpoint's
    step (it appends there), or a new one whose first snapshot is θ now (step 0, or where a run
    from before trajectories were kept resumes)."""
    if resumed and (saved := saved_trajectory(run_dir)):
        return Trajectory.load(saved).until(step)
    trajectory = Trajectory(network.sizes)
    trajectory.add(step, epochs, point_of(network))
    return trajectory


class TrajectoryRecorder(Callback):
    """Keeps ``run_dir/trajectory.bin`` for a run that has a run directory (rank 0)."""

    def __init__(self) -> None:
        self.trajectory: Trajectory | None = None
        self.path = Path()  # run_dir/trajectory.bin, once the run starts

    def on_run_start(self, run: Run) -> None:
        if run.run_dir is None:
            return
        self.path = run.run_dir / FILE_NAME
        self.trajectory = start_trajectory(
            run.run_dir, run.network, run.resumed, run.first_step, run.epoch
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
