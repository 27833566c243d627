"""A run as a user lives it, each figure in new processes (``gd-torch bench`` prints them after
the epochs, in seconds and in floor-epochs: seconds ÷ the floor's seconds per epoch):

    whole default run, first     ``gd-torch train`` with its defaults (60 epochs at batch 10, the
                                 fast path chosen automatically), from the command to its last
                                 line, evaluation, logging and checkpoints included, in a new
                                 process with an empty compile cache: it pays every compile
    whole default run, again     the same in a second new process, with the cache the first left:
                                 every later run of the same network and batch size
    compile autograd inductor,   Inductor's first compile on a machine where it never ran: the
    new machine                  compile below, and Inductor's once-per-machine work, which its
                                 cache folder and $TMPDIR keep (a build of a small C++ file for
                                 each vector instruction set it probes; the precompiled headers)
    compile <engine> <path>,     the fast path's first call of STEPS_PER_CALL steps less its
    batch B                      second call (so: the compile alone), in a new process, with an
                                 empty cache (cold: the first run of this engine and batch size)
                                 and then with the cache it left (cached), for each of its steps:
                                 the native steps (the manual engine's on the CPU; their build
                                 serves every batch size) and Inductor's; Inductor's on a machine
                                 where it ran before (the set-up above done)

Each figure takes a new temporary TORCHINDUCTOR_CACHE_DIR and GD_TORCH_CACHE (and $TMPDIR where
the row says "new machine"), so that what the user's own caches hold cannot make it look faster
than it is."""

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gd_torch.core.compiled import STEPS_PER_CALL
from gd_torch.core.data import Mnist, shuffled_order
from gd_torch.core.guard import RunGuard
from gd_torch.core.loop import epoch_function, prepare_data, seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.run import Run
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.core.sgd import sgd
from gd_torch.dashboard.tensorboard import TensorBoard

# (engine, fast path's steps) of the compile rows; the manual engine's Inductor loop runs only
# where the native steps cannot (off the CPU), and is timed for the comparison
COMPILED = (("manual", "native"), ("manual", "inductor"), ("autograd", "inductor"))
FINAL_LINE = re.compile(r"final test accuracy (\d+\.\d+)%")


def new_process(
    arguments: list[str], cache_dir: str, temporary_dir: str | None = None
) -> tuple[float, float, str]:
    """(seconds from the start of ``python -m <arguments>`` to its end, the CPU seconds it and
    the processes it waited for took, what it printed), with its caches in ``cache_dir`` (and
    its temporary files in ``temporary_dir``, where given). The CPU seconds are what a busy
    machine inflates least."""
    environment = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache_dir, "GD_TORCH_CACHE": cache_dir}
    if temporary_dir is not None:  # where Inductor keeps its precompiled headers
        environment["TMPDIR"] = temporary_dir
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", *arguments], capture_output=True, text=True, env=environment
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if finished.returncode:
        last_lines = "\n".join(finished.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"python -m {' '.join(arguments)} failed:\n{last_lines}")
    return seconds, cpu_seconds, finished.stdout


def whole_runs(data_root: str, download: bool, threads: int, progress) -> list[dict]:
    """The default ``gd-torch train`` on the CPU twice, in two new processes sharing one new
    compile cache."""
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir, tempfile.TemporaryDirectory() as runs_dir:
        for name in ("whole default run, first", "whole default run, again"):
            progress(f"{name} (gd-torch train in a new process)")
            seconds, cpu_seconds, printed = new_process(
                [
                    "gd_torch",
                    "train",
                    "--data-root",
                    data_root,
                    "--download" if download else "--no-download",
                    "--runs-dir",
                    runs_dir,
                    "--device",
                    "cpu",
                    "--threads",
                    str(threads),
                ],
                cache_dir,
            )
            accuracy = FINAL_LINE.search(printed)
            # the banner's, or the line after it when compiling failed
            steps = [line for line in printed.splitlines() if line.startswith("SGD steps:")][-1]
            rows.append(
                {
                    "name": name,
                    "batch_size": 10,
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "test_accuracy": float(accuracy.group(1)) / 100 if accuracy else None,
                    "sgd_steps": steps.removeprefix("SGD steps: "),
                }
            )
    return rows


def compile_rows(
    data_root: str, download: bool, threads: int, batch_sizes: list[int], progress
) -> list[dict]:
    """For each engine and batch size: the fast path's compile, cold and then cached; first,
    when Inductor's steps are among them, its first compile on a new machine."""
    rows = []
    inductor = [(engine, path) for engine, path in COMPILED if path == "inductor"]
    with (
        tempfile.TemporaryDirectory() as machine,  # $TMPDIR of a machine new to Inductor
        tempfile.TemporaryDirectory() as inductor_cache,  # its cache, once set up
    ):

        def compile_row(name: str, batch_size: int, engine: str, path: str, cache: str) -> dict:
            progress(f"{name}, batch {batch_size} (a new process)")
            arguments = [engine, path, str(batch_size), data_root, str(download), str(threads)]
            temporary_dir = machine if path == "inductor" else None
            *_, printed = new_process(
                ["gd_torch.tools.bench_run", *arguments], cache, temporary_dir
            )
            return {"name": name, "batch_size": batch_size} | json.loads(printed.splitlines()[-1])

        if inductor:
            engine, path = inductor[-1]
            with tempfile.TemporaryDirectory() as new_cache:
                name = f"compile {engine} {path}, new machine"
                rows.append(compile_row(name, batch_sizes[0], engine, path, new_cache))
            progress("Inductor's set-up in the cache of the rows below (a new process)")
            new_process(["gd_torch.tools.bench_run", "inductor-set-up"], inductor_cache, machine)
        for batch_size in batch_sizes:
            for engine, path in COMPILED:
                with (
                    contextlib.nullcontext(inductor_cache)  # set up, shared by Inductor's rows
                    if path == "inductor"
                    else tempfile.TemporaryDirectory()  # a new one for each engine's native rows
                ) as cache:
                    for state in ("cold", "cached"):
                        name = f"compile {engine} {path}, {state}"
                        rows.append(compile_row(name, batch_size, engine, path, cache))
    return rows


def end_to_end(
    data_root: str,
    download: bool,
    threads: int,
    batch_sizes: list[int],
    floor_seconds_per_epoch: float,
    compile: bool,
    progress,
) -> list[dict]:
    """The whole runs, and (with ``compile``) the compile rows, each with its floor-epochs."""
    rows = whole_runs(data_root, download, threads, progress)
    if compile:
        rows += compile_rows(data_root, download, threads, batch_sizes, progress)
    return [row | {"floor_epochs": row["seconds"] / floor_seconds_per_epoch} for row in rows]


def prepared_run(
    engine: str,
    batch_size: int,
    data: Mnist,
    device: torch.device,
    compile: bool = False,
    log: TensorBoard | None = None,
    log_dir: str | None = None,
    path: str | None = None,
) -> tuple[Run, Callable[[torch.Tensor], None], torch.Generator]:
    """The default run's state at ``batch_size`` as ``gd-torch train`` prepares it, with its epoch
    (the reference loop, or the fast path with ``compile``, its steps ``path``'s: ``native`` or
    ``inductor``, by default the run's own) and the generator of its orders."""
    settings = TrainingSettings(engine=engine, batch_size=batch_size)
    options = RunOptions(compile=compile, image_every=0)  # the data is given: no data_root
    init_generator, order_generator = seeded_generators(settings.seed)
    network = Network(settings.layer_sizes, settings.init, init_generator).to(device)
    optimizer = sgd(settings)(network)
    guard = RunGuard(settings, options.log_every, device, None)
    run = Run(
        settings,
        options,
        network,
        optimizer,
        data,
        device,
        log_dir and Path(log_dir),
        guard,
        [log] if log else [],
        epoch=1,
    )
    run.notify("on_run_start")
    return run, epoch_function(run, path=path), order_generator


def first_call_seconds(
    engine: str, path: str, batch_size: int, data_root: str, download: bool
) -> dict:
    """In this process, on the CPU: the default run's fast path at ``batch_size``, its first call
    (compile and STEPS_PER_CALL steps, or an epoch's when fewer) timed, then a second call of as
    many steps (the steps alone); seconds = the difference, the compile."""
    device = torch.device("cpu")
    options = RunOptions(data_root=data_root, download=download)
    data = prepare_data(TrainingSettings(), options, device)
    run, run_epoch, order_generator = prepared_run(
        engine, batch_size, data, device, compile=True, path=path
    )
    examples = min(STEPS_PER_CALL, len(data.train) // batch_size) * batch_size  # full batches
    seconds = []
    for _ in range(2):
        order = shuffled_order(len(data.train), order_generator)[:examples]
        started = time.perf_counter()
        run_epoch(order)
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds[0] - seconds[1], "first_call": seconds[0], "steps": seconds[1]}


def inductor_set_up() -> None:
    """Inductor's once-per-machine work that its cache folder keeps: it probes which vector
    instructions the processor has, by building a small C++ file for each set."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    pick_vec_isa()


if __name__ == "__main__":
    if sys.argv[1:] == ["inductor-set-up"]:
        inductor_set_up()
        sys.exit()
    engine, path, batch_size, data_root, download, threads = sys.argv[1:]
    torch.set_num_threads(int(threads))
    print(
        json.dumps(first_call_seconds(engine, path, int(batch_size), data_root, download == "True"))
    )
