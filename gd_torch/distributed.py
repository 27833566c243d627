"""Data-parallel SGD with torchrun: one model, every process computing the gradient on its shard of each mini-batch.

    torchrun --nproc_per_node=2 -m gd_torch.train --epochs 30             # 2 processes on this machine
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29500 --rdzv-id=mnist -m gd_torch.train    # the same command on each of 2 machines

Every rank draws the same initial weights and the same batch order (same seed), so all hold
the same global mini-batch B; rank r takes the disjoint shard B_r (``tensor_split``: sizes
differ by at most one, and a shard is empty when |B| < world size). The engine gives the mean
gradient over the shard, ∇C_r = (1/|B_r|) Σ_{x∈B_r} ∇C_x, and the all-reduce sums

    Σ_r (|B_r|/|B|) ∇C_r = (1/|B|) Σ_{x∈B} ∇C_x = ∇C,

the single-process gradient of the whole batch, also for the smaller last batch. Every rank
then takes the same SGD step, so the weights stay identical. Only rank 0 measures, prints,
logs and checkpoints; the others only train.
"""

import atexit
import os

import torch
import torch.distributed as dist

from gd_torch.config import TrainConfig
from gd_torch.data import Mnist


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA) when launched by it; returns this rank's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(dist.destroy_process_group)
    return device


def is_leader() -> bool:
    """Rank 0, or the only process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def data_parallel(compute_gradients):
    """The engine (from ENGINES) on this rank's shard of the batch, its .grad and cost all-reduced to the whole batch's."""
    if not dist.is_initialized():
        return compute_gradients
    rank, world_size = dist.get_rank(), dist.get_world_size()

    def compute_shard_gradients(network, images, targets, convention):
        shard = torch.arange(len(images), device=images.device).tensor_split(world_size)[rank]  # B_r
        parameters = list(network.parameters())
        if len(shard) == 0:  # nothing to average: this rank adds zeros
            batch_cost = torch.zeros((), device=images.device)
            for parameter in parameters:
                parameter.grad = torch.zeros_like(parameter)
        else:
            batch_cost = compute_gradients(network, images[shard], targets[shard], convention)  # mean over B_r
        weight = len(shard) / len(images)  # |B_r| / |B|
        flat = torch.cat([p.grad.flatten() for p in parameters] + [batch_cost.reshape(1)]) * weight  # one message
        dist.all_reduce(flat)  # Σ_r (|B_r|/|B|) (∇C_r, C_r) = (∇C, C) of the whole batch
        for parameter, gradient in zip(parameters, flat[:-1].split([p.numel() for p in parameters])):
            parameter.grad = gradient.view_as(parameter)
        return flat[-1]

    return compute_shard_gradients


def follow(network, optimizer, config: TrainConfig, data: Mnist, order: torch.Generator) -> None:
    """A rank other than 0: the same epochs of SGD as rank 0's ``train``, and nothing else."""
    from gd_torch.train import train_one_epoch  # here: gd_torch.train imports this module

    step = 0
    for epoch in range(1, (1 if config.dry_run else config.epochs) + 1):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(epoch)
        step = train_one_epoch(network, optimizer, config, data, order, step)
