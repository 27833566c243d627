"""The fast path's steps without PyTorch's operators: BP1-BP4 and SGD's update in a small C++
file (``native_steps.cpp``), compiled once per machine and called through ctypes on the tensors'
own memory.

Why: a step of the 784-16-16-10 network at batch 10 is about 0.5 MFLOP, some 15 µs of
arithmetic, and an eager step spends ten times that in the dispatch of its two dozen operators.
Inductor's compiled loop (gd_torch.core.compiled) removes most of the dispatch, but takes 20 s to
compile per shape; this file takes about four, once, and serves every shape and every number of
copies: one run (K = 1) and a sweep's K stacked networks (gd_torch.tools.sweep).

The math is that of gd_torch.core.manual, in the same order: forward, BP1, then from the last
layer back BP2 (with W^l before its update), BP3, BP4 and w ← w − η (∇C + λ w). Its steps equal
the eager ones to float32 rounding (its sums add up in another order), not bit for bit. The
first layer reads each digit by its nonzero pixels only (``NonzeroInputs``, made once per run),
and ``evaluate`` is the same forward pass, for the epoch's cost and accuracy.

The library is built with the C++ compiler of ``$CXX`` (default ``c++``) into
``$GD_TORCH_CACHE`` (default ``~/.cache/gd_torch``), named by a hash of the source, the compiler
and its flags, so that a changed source or compiler builds anew and a cached library is never
stale. ``NativeUnavailable`` says why it could not be built.
"""

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gd_torch.core.cost import COST_SCALES

SOURCE = Path(__file__).with_name("native_steps.cpp")
# -march=native: this processor's vector instructions; on x86, 256-bit vectors even where GCC's
# tuning for the processor prefers 128 (it does for AMD's first Zen, which some VMs report: 18%
# off a step here); -funroll-loops: 5% more
FLAGS = (
    "-O3",
    "-funroll-loops",
    "-march=native",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-std=c++17",
) + (("-mprefer-vector-width=256",) if platform.machine().lower() in ("x86_64", "amd64") else ())
TYPES = {torch.float32: "float", torch.float64: "double"}  # the library's <verb>_<type>
VERBS = ("steps", "count_nonzero", "gather_nonzero", "evaluate", "sigmoid")
BUILD_TIMEOUT = 300  # seconds a build may take: a partial file older than that is a dead build's
SCALARS = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}


class NativeUnavailable(RuntimeError):
    """The C++ steps could not be built or loaded here (no compiler, a failed build)."""


def takes(engine: str, dtype: torch.dtype, device: torch.device | None = None) -> bool:
    """Whether the native steps can take a run's steps: the manual engine's (they are BP1-BP4),
    in float32 or float64, on the CPU (``device`` None: not known yet)."""
    on_cpu = device is None or device.type == "cpu"
    return engine == "manual" and dtype in TYPES and on_cpu


def cache_directory() -> Path:
    """Where the built library is kept: ``$GD_TORCH_CACHE``, else ``$XDG_CACHE_HOME/gd_torch``,
    else ``~/.cache/gd_torch``."""
    if os.environ.get("GD_TORCH_CACHE"):
        return Path(os.environ["GD_TORCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gd_torch"


def _compiler() -> str:
    compiler = os.environ.get("CXX", "c++")
    found = shutil.which(compiler)
    if found is None:
        raise NativeUnavailable(f"no C++ compiler {compiler!r} on PATH (set CXX)")
    return found


_building = threading.Lock()  # one build at a time in a process (build_ahead's thread and a call)


@functools.cache  # once per process
def build_ahead() -> None:
    """Start building the library in a thread when no build is cached, so that the compiler
    runs on another core while the run prepares (its optimizer, banner, TensorBoard's start,
    step 0's evaluation); the first call of ``library`` then waits for it, or says why it
    failed."""

    def build() -> None:
        try:
            library()
        except Exception:  # said by the caller's own call of library()
            pass

    threading.Thread(target=build, name="gd_torch native build", daemon=True).start()


@functools.cache
def library() -> ctypes.CDLL:
    """The built library, built first if no cached build of this source exists."""
    with _building:
        return _load_or_build()


def _load_or_build() -> ctypes.CDLL:
    compiler = _compiler()
    key = hashlib.sha256(
        b"\0".join(
            [SOURCE.read_bytes(), compiler.encode(), " ".join(FLAGS).encode(), _cpu().encode()]
        )
    ).hexdigest()[:16]
    built = cache_directory() / f"native_steps_{key}.so"
    if not built.exists():
        _build(compiler, built)
    try:
        loaded = ctypes.CDLL(str(built))
    except OSError as failure:
        raise NativeUnavailable(f"cannot load {built}: {failure}") from failure
    for verb in VERBS:
        for type_name in TYPES.values():
            getattr(loaded, f"{verb}_{type_name}").restype = None
    return loaded


def _cpu() -> str:
    """What -march=native compiles for: the processor's model and feature flags, where Linux
    says them, so that a cache shared between machines never hands one the other's build."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def _build(compiler: str, built: Path) -> None:
    """Compile SOURCE into ``built``, atomically: concurrent builds (two torchrun ranks) each
    write their own file and rename it into place."""
    try:
        built.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_builds(built.parent)
        handle, partial = tempfile.mkstemp(dir=built.parent, suffix=".so.partial")
        os.close(handle)
    except OSError as failure:
        raise NativeUnavailable(f"cannot write to {built.parent}: {failure}") from failure
    command = [compiler, *FLAGS, "-shared", "-fPIC", str(SOURCE), "-o", partial]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if finished.returncode != 0:
            first_line = (finished.stderr.strip().splitlines() or ["no message"])[0]
            raise NativeUnavailable(f"{Path(compiler).name} failed: {first_line}")
        os.replace(partial, built)
    finally:
        Path(partial).unlink(missing_ok=True)


def _layer_sizes(
    weights: Sequence[Tensor], biases: Sequence[Tensor], copies: tuple[int, ...] = ()
) -> list[int]:
    """[n_0, n_1, ..., n_L] of layers whose W^l are ``weights[l]`` (*copies, n_l, n_{l-1}) and
    b^l ``biases[l]`` (*copies, n_l), refusing layers that do not fit together: the library
    reads each tensor by these sizes."""
    sizes = [weights[0].shape[-1], *(weight.shape[-2] for weight in weights)]
    for l, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        expected = (*copies, sizes[l + 1], sizes[l]), (*copies, sizes[l + 1])
        if (tuple(weight.shape), tuple(bias.shape)) != expected:
            raise ValueError(
                f"layer {l + 1}: weights {tuple(weight.shape)} and biases {tuple(bias.shape)}, "
                f"not {expected[0]} and {expected[1]}"
            )
    return sizes


def _remove_dead_builds(folder: Path) -> None:
    """Remove the partial files of builds that cannot still be running: a process killed while
    it built leaves its own behind. A build in progress is younger than BUILD_TIMEOUT."""
    dead_before = time.time() - BUILD_TIMEOUT
    for partial in folder.glob("*.so.partial"):
        with contextlib.suppress(OSError):  # gone already: another process removed it
            if partial.stat().st_mtime < dead_before:
                partial.unlink()


@dataclass(frozen=True)
class NonzeroInputs:
    """The input activations a^0 of N examples by their nonzero entries only (compressed rows):
    example e's are ``values[p]`` at pixel ``columns[p]`` for ``starts[e] <= p < starts[e + 1]``.
    Four in five pixels of an MNIST digit are black (a^0 = 0), and a black pixel adds nothing to
    z^1 = W^1 a^0 + b^1 nor to ∂C/∂W^1 = δ^1 (a^0)^T: the first layer's products then take a
    fifth of the work."""

    starts: Tensor  # (N + 1,) int64
    columns: Tensor  # (nonzeros,) int32
    values: Tensor  # (nonzeros,), the images' dtype
    pixels: int  # n_0, the length of a dense row

    def pointers(self) -> tuple[ctypes.c_void_p, ...]:  # the library's three arguments
        parts = (self.starts, self.columns, self.values)
        return tuple(ctypes.c_void_p(part.data_ptr()) for part in parts)


# id(images) -> (images._version when compressed, the NonzeroInputs), while the images live
_compressed: dict[int, tuple[int, NonzeroInputs]] = {}


def nonzero_inputs(images: Tensor) -> NonzeroInputs:
    """``images`` (N, n_0), by their nonzero activations, in two passes of the library (a
    tenth of the time of PyTorch's ``nonzero``). Each tensor is compressed once: while it lives
    and is not changed in place (its version counter), a second call returns the same inputs,
    so that a run's steps and its evaluation, and a sweep's stacks, share one copy."""
    key = id(images)
    known = _compressed.get(key)
    if known is not None and known[0] == images._version:
        return known[1]
    inputs = _compress(images)
    if known is None:  # forgotten with the tensor, before its id can be another's
        weakref.finalize(images, _compressed.pop, key, None)
    _compressed[key] = (images._version, inputs)
    return inputs


def _compress(images: Tensor) -> NonzeroInputs:
    _checked(images, _computed_in(images.dtype), "images")
    count, pixels = images.shape
    starts = torch.empty(count + 1, dtype=torch.int64)
    shape = (ctypes.c_void_p(images.data_ptr()), ctypes.c_int64(count), ctypes.c_int64(pixels))
    _function("count_nonzero", images.dtype)(*shape, ctypes.c_void_p(starts.data_ptr()))
    columns = torch.empty(int(starts[-1]), dtype=torch.int32)
    values = torch.empty(int(starts[-1]), dtype=images.dtype)
    _function("gather_nonzero", images.dtype)(
        *shape, ctypes.c_void_p(columns.data_ptr()), ctypes.c_void_p(values.data_ptr())
    )
    return NonzeroInputs(starts, columns, values, pixels)


def _computed_in(dtype: torch.dtype) -> torch.dtype:
    if dtype not in TYPES:
        raise ValueError(f"the native steps compute in float32 or float64, not {dtype}")
    return dtype


def _function(verb: str, dtype: torch.dtype) -> Any:  # the library's function, e.g. steps_float
    return getattr(library(), f"{verb}_{TYPES[dtype]}")


def _pointers(tensors: Sequence[Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(tensor.data_ptr() for tensor in tensors))


def _checked(tensor: Tensor, dtype: torch.dtype, what: str) -> Tensor:
    if tensor.device.type != "cpu" or tensor.dtype != dtype or not tensor.is_contiguous():
        raise ValueError(f"{what}: a contiguous {dtype} tensor on the CPU, not {tensor.dtype}")
    return tensor


def sgd_steps(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    weight_gradients: Sequence[Tensor],
    bias_gradients: Sequence[Tensor],
    inputs: NonzeroInputs,
    targets: Tensor,
    indices: Tensor,
    batch_size: int,
    start: int,
    stop: int,
    learning_rates: Tensor,
    weight_decay: float,
    convention: str,
    costs: Tensor,
    norms: Tensor,
    decay_biases: bool = True,
) -> None:
    """SGD steps start, ..., stop − 1 of K copies, in place (see ``native_steps.cpp``):

    - ``weights[l]``, ``biases[l]``: W^{l+1} (K, n_{l+1}, n_l) and b^{l+1} (K, n_{l+1}) of every
      copy, updated; ``weight_gradients``, ``bias_gradients``: same shapes, left with the last
      step's ∂C/∂W and ∂C/∂b;
    - ``inputs`` (``nonzero_inputs`` of the images, (N, 784)) and one-hot ``targets`` (N, 10):
      the training examples;
    - ``indices`` (K, M) int64: copy k's step s takes the examples ``indices[k, s·B : (s+1)·B]``
      (B = ``batch_size``);
    - ``learning_rates`` (K,): η_k; ``weight_decay``: λ, of the biases too unless not
      ``decay_biases``;
    - ``costs``, ``norms`` (S, K): step s's C and ‖∇C‖ of copy k are written at [s, k].
    """
    dtype = _computed_in(weights[0].dtype)  # the network's: everything else must match it
    copies, layers = weights[0].shape[0], len(weights)
    sizes = _layer_sizes(weights, biases, (copies,))
    gradients, parameters = (*weight_gradients, *bias_gradients), (*weights, *biases)
    if [gradient.shape for gradient in gradients] != [parameter.shape for parameter in parameters]:
        raise ValueError("the gradients' shapes are not those of the weights and biases")
    if indices.dtype != torch.int64 or indices.dim() != 2 or indices.shape[0] != copies:
        raise ValueError(f"indices: int64 (K = {copies}, M), not {indices.dtype} {indices.shape}")
    if stop * batch_size > indices.shape[1] or not 0 <= start <= stop:
        raise ValueError(
            f"steps {start}..{stop} of {batch_size} go past {indices.shape[1]} indices"
        )
    if costs.shape[0] < stop or norms.shape[0] < stop:
        raise ValueError(f"costs and norms need rows for steps up to {stop}")
    if inputs.pixels != sizes[0] or len(inputs.starts) != len(targets) + 1:
        raise ValueError(
            f"inputs: {len(inputs.starts) - 1} examples of {inputs.pixels} pixels, for "
            f"{len(targets)} targets and a first layer of {sizes[0]} inputs"
        )
    for group, what in (
        (weights, "weights"),
        (biases, "biases"),
        (weight_gradients, "weight gradients"),
        (bias_gradients, "bias gradients"),
        ((inputs.values, targets, learning_rates, costs, norms), "examples, rates, costs, norms"),
    ):
        for tensor in group:
            _checked(tensor, dtype, what)
    _checked(indices, torch.int64, "indices")
    _checked(inputs.starts, torch.int64, "input starts")
    _checked(inputs.columns, torch.int32, "input columns")
    scalar = SCALARS[dtype]
    cross_entropy = convention == "cross-entropy"
    _function("steps", dtype)(
        ctypes.c_int64(copies),
        ctypes.c_int64(layers),
        (ctypes.c_int64 * len(sizes))(*sizes),
        _pointers(weights),
        _pointers(biases),
        _pointers(weight_gradients),
        _pointers(bias_gradients),
        *inputs.pointers(),
        ctypes.c_void_p(targets.data_ptr()),
        ctypes.c_void_p(indices.data_ptr()),
        ctypes.c_int64(indices.stride(0)),
        ctypes.c_int64(batch_size),
        ctypes.c_int64(start),
        ctypes.c_int64(stop),
        ctypes.c_void_p(learning_rates.data_ptr()),
        scalar(weight_decay),
        ctypes.c_int64(decay_biases),
        ctypes.c_int64(cross_entropy),
        scalar(1.0 if cross_entropy else COST_SCALES[convention]),
        ctypes.c_void_p(costs.data_ptr()),
        ctypes.c_void_p(norms.data_ptr()),
    )


def evaluate(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    inputs: NonzeroInputs,
    targets: Tensor,
    labels: Tensor,
    convention: str,
) -> tuple[float, int]:
    """(Σ_x C_x, the number classified right) of one network, W^l ``weights[l]`` and b^l
    ``biases[l]``, over the examples of ``inputs`` (their one-hot ``targets`` and ``labels``):
    ``gd_torch.core.evaluate.totals`` by the native steps' forward pass."""
    dtype = _computed_in(weights[0].dtype)
    sizes = _layer_sizes(weights, biases)
    if inputs.pixels != sizes[0] or not len(inputs.starts) == len(targets) + 1 == len(labels) + 1:
        raise ValueError(
            f"inputs: {len(inputs.starts) - 1} examples of {inputs.pixels} pixels, for "
            f"{len(targets)} targets, {len(labels)} labels and {sizes[0]} inputs"
        )
    for tensor in (*weights, *biases, inputs.values, targets):
        _checked(tensor, dtype, "weights, biases, examples")
    _checked(labels, torch.int64, "labels")
    total_cost, correct = ctypes.c_double(), ctypes.c_int64()
    cross_entropy = convention == "cross-entropy"
    _function("evaluate", dtype)(
        ctypes.c_int64(len(weights)),
        (ctypes.c_int64 * len(sizes))(*sizes),
        _pointers(weights),
        _pointers(biases),
        *inputs.pointers(),
        ctypes.c_void_p(targets.data_ptr()),
        ctypes.c_void_p(labels.data_ptr()),
        ctypes.c_int64(len(labels)),
        ctypes.c_int64(cross_entropy),
        SCALARS[dtype](1.0 if cross_entropy else COST_SCALES[convention]),
        ctypes.byref(total_cost),
        ctypes.byref(correct),
    )
    return total_cost.value, correct.value


def sigmoid(z: Tensor) -> Tensor:
    """σ(z) elementwise, as the library's forward pass computes it (in float32, by its own
    vectorised e^x): for the tests that hold it to torch.sigmoid."""
    dtype = _computed_in(z.dtype)
    z = _checked(z.contiguous(), dtype, "z")
    a = torch.empty_like(z)
    _function("sigmoid", dtype)(
        ctypes.c_void_p(z.data_ptr()), ctypes.c_int64(z.numel()), ctypes.c_void_p(a.data_ptr())
    )
    return a
