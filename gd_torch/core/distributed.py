"""Data-parallel SGD with torchrun: one model, every process computing ∇C on its shard of each
mini-batch.

    torchrun --nproc_per_node=2 -m gd_torch train --epochs 30             # 2 processes here
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29500 --rdzv-id=mnist -m gd_torch train   # on each of 2 machines

Every rank runs the same ``train`` loop (gd_torch.core.loop); only rank 0 prints, logs and
checkpoints. Every rank draws the same initial weights and the same batch order (same seed),
so all know the same global mini-batch B; rank r gathers and computes only its disjoint shard
B_r of it (``shard``: sizes differ by at most one, and a shard is empty when |B| < world
size). The engine gives the mean gradient over the shard, ∇C_r = (1/|B_r|) Σ_{x∈B_r} ∇C_x,
and the all-reduce of |B_r| ∇C_r and |B_r| gives

    Σ_r |B_r| ∇C_r / Σ_r |B_r| = (1/|B|) Σ_{x∈B} ∇C_x = ∇C,

the single-process gradient of the whole batch, also for the smaller last batch. Every rank
then takes the same SGD step, so the weights stay identical, and so do the costs the guard
checks: a diverging run stops on every rank at the same step. Requests to stop (Ctrl-C,
SIGTERM, a callback, --time-budget) are agreed with ``any_rank``, so all ranks stop together.
"""

import atexit
import datetime
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from gd_torch.core.engines import Engine, filled_gradients
from gd_torch.core.model import Network


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def start(device: torch.device, timeout: datetime.timedelta | None = None) -> torch.device:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA) when launched by it; returns
    this rank's device. ``timeout``: how long a collective waits for the other ranks (default:
    torch's, 30 minutes for gloo)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    atexit.register(dist.destroy_process_group)
    return device


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_leader() -> bool:
    """Rank 0, or the only process (also before the process group is joined)."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank; every rank must call it at the same point."""
    vote = torch.tensor([float(flag)])
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def shard(batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """This rank's shard B_r of each global mini-batch B of indices: the examples it gathers.
    Only for world size > 1."""
    rank, size = dist.get_rank(), dist.get_world_size()
    return [indices.tensor_split(size)[rank] for indices in batches]


def data_parallel(compute_gradients: Engine) -> Engine:
    """The engine (from ENGINES) on this rank's shard of the batch (the images and targets of
    B_r), its .grad and cost all-reduced to the whole batch's. Only for world size > 1."""

    def compute_shard_gradients(
        network: Network, images: Tensor, targets: Tensor, convention: str
    ) -> Tensor:
        parameters = list(network.parameters())
        if len(images) == 0:  # nothing to average: this rank adds zeros
            batch_cost = torch.zeros((), device=images.device, dtype=images.dtype)
            for parameter in parameters:
                parameter.grad = torch.zeros_like(parameter)
        else:
            batch_cost = compute_gradients(network, images, targets, convention)
        count = torch.ones(1, device=images.device, dtype=images.dtype)
        message = torch.cat(
            [g.flatten() for g in filled_gradients(parameters)] + [batch_cost.reshape(1), count]
        )
        message *= len(images)  # |B_r| (∇C_r, C_r, 1)
        dist.all_reduce(message)  # (Σ_r |B_r| ∇C_r, Σ_r |B_r| C_r, |B|)
        message = message[:-1] / message[-1]  # (∇C, C) of the whole batch
        for parameter, gradient in zip(
            parameters, message[:-1].split([p.numel() for p in parameters])
        ):
            parameter.grad = gradient.view_as(parameter)
        return message[-1]

    return compute_shard_gradients
