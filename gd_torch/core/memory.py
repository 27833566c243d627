"""How much memory a network needs, estimated before it is built, against what the device has.

A network of layer sizes n_0, ..., n_L holds P = Σ_l (n_{l-1} + 1) n_l weights and biases. To
train it, memory holds, in the run's float type (4 or 8 bytes a number):

    4 P                              the weights, their gradients, the optimizer's state and
                                     one copy (the state_dict a checkpoint serialises)
    4 B Σ_l n_l                      a mini-batch of B: z, a, δ and σ' of every layer
    3 E max_l n_l                    evaluation, in chunks of E = 10,000 digits

and K copies of a sweep K times that. An estimate, not a measurement: it is there to refuse, with
a number, a network that cannot fit (``--hidden-sizes 10000000000`` would need terabytes), before
the allocator fails with a traceback in the middle of building it.
"""

import os
from pathlib import Path

import torch

from gd_torch.core.errors import GdTorchError

EVALUATION_CHUNK = 10_000  # gd_torch.core.evaluate's batch_size


def parameter_count(layer_sizes: tuple[int, ...]) -> int:
    """P = Σ_l (n_{l-1} + 1) n_l: every weight and bias."""
    return sum((n_in + 1) * n_out for n_in, n_out in zip(layer_sizes, layer_sizes[1:]))


def training_bytes(
    layer_sizes: tuple[int, ...], dtype: torch.dtype, batch_size: int = 1, copies: int = 1
) -> int:
    """The estimate of the module docstring, in bytes."""
    element = torch.finfo(dtype).bits // 8
    per_copy = (
        4 * parameter_count(layer_sizes)
        + 4 * batch_size * sum(layer_sizes)
        + 3 * EVALUATION_CHUNK * max(layer_sizes)
    )
    return copies * element * per_copy


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: the GPU's free memory, else the machine's available memory
    (within its cgroup's limit, as in a container); None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    available = _meminfo_available()
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            room = int(Path(limit).read_text()) - int(Path(usage).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        available = room if available is None else min(available, room)
    return available


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # macOS and other POSIX systems: all of physical memory is the best bound known
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(what: str, needed: int, device: torch.device) -> None:
    """Refuse, with the numbers, ``what`` when it needs more memory than ``device`` has free."""
    available = available_bytes(device)
    if available is not None and needed > available:
        where = f"the GPU {device}" if device.type == "cuda" else "this machine"
        raise GdTorchError(
            f"{what} needs about {size(needed)} of memory, and {where} has "
            f"{size(available)} free: choose smaller sizes"
        )


def require_network_memory(
    layer_sizes: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int = 1,
    copies: int = 1,
) -> None:
    """``require_memory`` for training (or loading) ``copies`` networks of ``layer_sizes``."""
    network = "-".join(map(str, layer_sizes))
    count = parameter_count(layer_sizes)
    what = f"the {network} network ({count:,} weights and biases" + (
        f", {copies:,} copies)" if copies > 1 else ")"
    )
    require_memory(what, training_bytes(layer_sizes, dtype, batch_size, copies), device)


def size(count: int) -> str:
    """Bytes for a person: 1.3 TB, 870 MB, 12 kB (and ~1e40 B beyond exabytes)."""
    for power, unit in enumerate(("B", "kB", "MB", "GB", "TB", "PB", "EB")):
        if count < 1000 ** (power + 1):
            return f"{count / 1000**power:.3g} {unit}"  # below 1000: a float holds it
    return f"~1e{len(str(int(count))) - 1} B"
