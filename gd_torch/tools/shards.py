"""Whole copies across torchrun ranks: which rank trains which, and what they tell each other.

    torchrun --nproc_per_node=2 -m gd_torch sweep --num-seeds 16     # 8 copies on each process
    torchrun --nnodes=2 --nproc_per_node=1 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
             --rdzv-id=sweep -m gd_torch sweep --num-seeds 16        # on each of 2 machines

The copies of a sweep never exchange anything, so, unlike data parallelism of one network
(gd_torch.core.distributed), the ranks do not talk while they train: rank r takes the r-th
contiguous share of the copies still to train (``share``: the shares differ by at most one copy),
trains it as one batched computation, and the ranks meet only before (to agree on the plan, the
sweep directory and what a resumed sweep has already finished) and after (``gather_reports``:
every copy's history and weights, to every rank).

A rank whose share fails still reports, with its error. A rank that is killed cannot: the others
then fail to gather (or are stopped by torchrun's agent, which ends every worker when one dies),
and rank 0 reports the copies it did not hear about, rank by rank (``missing_copies``).
"""

import json
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch.distributed as dist

from gd_torch.core import distributed
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.run_dir import write_json
from gd_torch.core.settings import RunOptions, TrainingSettings, from_dict, to_dict

Value = TypeVar("Value")
PLAN = "sweep.json"  # at the sweep root: every copy's settings, and the run options it began with


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def share(count: int, rank: int, ranks: int) -> range:
    """The indices of ``count`` copies that rank ``rank`` of ``ranks`` trains: contiguous, the
    first ``count % ranks`` ranks one more (as ``torch.tensor_split`` cuts)."""
    size, extra = divmod(count, ranks)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (rank < extra))


def exchange(value: Value) -> list[Value]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in one process)."""
    if distributed.world_size() == 1:
        return [value]
    values = [None] * distributed.world_size()
    dist.all_gather_object(values, value)
    return values


def together(work: Callable[[], Value]) -> Value:
    """``work()`` on every rank; if it fails on any, every rank raises, naming the ranks.

    Run before a collective, so that an error on one rank (no MNIST on that machine, a folder it
    cannot write) does not leave the others waiting for it.
    """
    if distributed.world_size() == 1:
        return work()
    value, failure = None, None
    try:
        value = work()
    except Exception as error:  # anything: the other ranks must hear of it
        if not isinstance(error, GdTorchError):
            traceback.print_exc()
        failure = (describe_error(error), getattr(error, "exit_code", 1))
    failures = exchange(failure)
    failed = [(r, failure) for r, failure in enumerate(failures) if failure is not None]
    if failed:
        by_message = {}
        for r, (message, _) in failed:
            by_message.setdefault(message, []).append(str(r))
        error = GdTorchError(
            "; ".join(
                f"rank {', '.join(ranks)}: {message}" for message, ranks in by_message.items()
            )
        )
        error.exit_code = failed[0][1][1]
        raise error
    return value


def describe_error(error: BaseException) -> str:
    """One line: a GdTorchError's message, else the exception's kind and first line."""
    if isinstance(error, GdTorchError):
        return str(error)
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def gather_reports(report: dict) -> list[dict | None]:
    """Every rank's end-of-share ``report``, on every rank; None for each rank that could not be
    heard (killed or lost: the gather then fails, and only this rank's own report is known)."""
    try:
        return exchange(report)
    except RuntimeError as error:  # a peer's connection closed, or the collective timed out
        print(
            f"gd-torch: the ranks could not gather their results ({describe_error(error)})",
            file=sys.stderr,
            flush=True,
        )
        return [report if r == rank() else None for r in range(distributed.world_size())]


def host() -> str:
    return socket.gethostname()


def copy_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    parts, start = [], None
    for i, index in enumerate(indices):
        start = index if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ", ".join(parts)


def missing_copies(
    shares: list[list[int]], reports: list[dict | None], finished: set[int]
) -> list[str]:
    """One phrase per rank that held copies which did not finish: which, and why."""
    phrases = []
    for r, (held, report) in enumerate(zip(shares, reports)):
        lost = [k for k in held if k not in finished]
        if not lost:
            continue
        if len(shares) == 1:
            phrases.append(f"{report['error'][0]}: copies {copy_ranges(lost)} did not finish")
            continue
        if report is None:
            why = "was not heard from (killed or lost: see torchrun's error report)"
        else:
            why = f"on {report['host']} failed: {report['error'][0]}"
        phrases.append(f"rank {r} {why}; its copies {copy_ranges(lost)} did not finish")
    return phrases


def copy_directories(sweep_dir: Path, configs: list[TrainingSettings]) -> dict[int, Path]:
    """The run directory of each planned copy found in ``sweep_dir`` on this machine: the one
    whose config.json holds that copy's settings."""
    index_of = {config: k for k, config in enumerate(configs)}
    found = {}
    for path in sorted(sweep_dir.iterdir()) if sweep_dir.is_dir() else []:
        try:
            saved = json.loads((path / "config.json").read_text())["settings"]
            k = index_of.get(from_dict(TrainingSettings, saved))
        except (OSError, ValueError, KeyError, TypeError, GdTorchError):
            continue  # not a copy's run directory
        if k is not None:
            found.setdefault(k, path)
    return found


def epoch_checkpoint(run_dir: Path) -> dict | None:
    """The copy's last.pt when a sweep can continue from it: written at the end of an epoch (not
    mid-epoch, as ``gd-torch train --resume`` on the copy might leave it) and readable."""
    try:
        state = load_checkpoint(run_dir / "last.pt")
    except GdTorchError:
        return None  # none yet (stopped in its first epoch): the copy starts again
    return state if state.get("batches_done", 0) == 0 else None


def write_plan(sweep_dir: Path, configs: list[TrainingSettings], options: RunOptions) -> None:
    write_json(
        sweep_dir / PLAN,
        {"copies": [to_dict(config) for config in configs], "options": to_dict(options)},
    )


def read_plan(sweep_dir: str | Path) -> tuple[list[TrainingSettings], RunOptions]:
    """The copies of the sweep in ``sweep_dir``, and the run options it was started with."""
    path = Path(sweep_dir) / PLAN
    if not path.is_file():
        raise GdTorchError(
            f"{sweep_dir} is not a sweep directory: it has no {PLAN} (gd-torch sweep writes one)"
        )
    try:
        plan = json.loads(path.read_text())
        copies = [from_dict(TrainingSettings, values) for values in plan["copies"]]
        return copies, from_dict(RunOptions, plan["options"])
    except (OSError, ValueError, KeyError, TypeError, GdTorchError) as error:
        raise GdTorchError(
            f"{path} is not a readable sweep plan ({describe_error(error)})"
        ) from None


def saved_options(sweep_dir: str | Path) -> RunOptions | None:
    """The run options the sweep began with, when this machine holds its plan (rank 0's always
    does; another machine's rank may not, and then starts from the defaults)."""
    return read_plan(sweep_dir)[1] if (Path(sweep_dir) / PLAN).is_file() else None
