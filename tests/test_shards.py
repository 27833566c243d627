"""Sweeps sharded over torchrun ranks: whole copies per rank, one summary, failures and resume.

Every launch is real: torchrun (gloo on the CPU, loopback only) starting ``python -m gd_torch
sweep`` or ``tests/copies_script.py`` (``train_copies`` with a quick and a slow stack).
"""

import csv
import dataclasses
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gd_torch.cli import main
from gd_torch.core.checkpoint import load_checkpoint
from gd_torch.core.errors import GdTorchError
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.tools import shards
from gd_torch.tools.sweep import sweep, train_copies
from tests.copies_script import COPIES
from tests.fakes import write_mnist_files
from tests.test_distributed import ENVIRONMENT, REPOSITORY, free_port

WAIT_SECONDS = 240


@given(st.integers(0, 200), st.integers(1, 16))
def test_shares_are_whole_contiguous_and_differ_by_at_most_one_copy(count, ranks):
    held = [shards.share(count, rank, ranks) for rank in range(ranks)]
    assert [k for share in held for k in share] == list(range(count))
    sizes = [len(share) for share in held]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_missing_copies_name_each_rank_its_unfinished_copies_and_why():
    held = [[0, 1, 2], [3, 4], [5, 6]]
    reports = [
        {"host": "a", "error": None},
        {"host": "b", "error": ("stopped by SIGTERM in epoch 2", 143)},
        None,
    ]
    assert shards.missing_copies(held, reports, finished={0, 1, 2, 4}) == [
        "rank 1 on b failed: stopped by SIGTERM in epoch 2; its copies 3 did not finish",
        "rank 2 was not heard from (killed or lost: see torchrun's error report); "
        "its copies 5-6 did not finish",
    ]
    assert shards.copy_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


def launch(*arguments, nodes=1, processes=2, rendezvous=None, monitor=0.1) -> list[str]:
    """The torchrun command line: one machine with a fixed master, or one agent of ``nodes``
    meeting at the c10d ``rendezvous`` endpoint; the agent checks its workers every ``monitor``
    seconds (torchrun's default 0.1) and stops the others when one has died."""
    where = (
        [f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous}"]
        + ["--rdzv-id=test"]
        if rendezvous
        else ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        f"--monitor-interval={monitor}",
        *where,
        *map(str, arguments),
    ]


def gd_torch(*arguments) -> list[str]:
    return [sys.executable, "-m", "gd_torch", *map(str, arguments)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPOSITORY,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=REPOSITORY,
        env=ENVIRONMENT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sweep_arguments(data_root: Path, runs_dir: Path, *more) -> list:
    return [
        "sweep",
        "--data-root",
        data_root,
        "--no-download",
        "--runs-dir",
        runs_dir,
        "--image-every",
        "0",
        *more,
    ]


def copy_directories(sweep_dir: Path) -> dict[int, Path]:
    """Each copy's run directory, by its seed."""
    return {
        load_checkpoint(path / "last.pt")["settings"]["seed"]: path
        for path in sweep_dir.iterdir()
        if (path / "last.pt").is_file()
    }


def without_seconds(history: list[dict]) -> list[dict]:
    """A copy's per-epoch metrics but for the wall time, which no two runs share."""
    return [{name: value for name, value in h.items() if name != "seconds"} for h in history]


def summary_rows(sweep_dir: Path) -> dict[int, dict]:
    return {int(row["seed"]): row for row in csv.DictReader(open(sweep_dir / "summary.csv"))}


def test_two_processes_give_each_copy_of_their_shares_bit_for_bit(fake_mnist_root, tmp_path):
    """5 copies on 2 ranks: rank 0 trains copies 0-2 and rank 1 copies 3-4 (uneven shares), each
    as one batched computation, exactly as one process sweeping the same share."""
    launched = run(
        launch(
            "-m",
            "gd_torch",
            *sweep_arguments(
                fake_mnist_root, tmp_path / "runs", "--epochs", "2", "--num-seeds", "5"
            ),
        )
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "rank 0 trains copies 0-2, rank 1 trains copies 3-4" in launched.stdout
    assert launched.stdout.count("summary in ") == 1  # rank 0 alone writes it
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    trained, rows = copy_directories(sweep_dir), summary_rows(sweep_dir)
    assert sorted(rows) == sorted(trained) == [0, 1, 2, 3, 4]

    options = RunOptions(
        data_root=str(fake_mnist_root),
        download=False,
        runs_dir=str(tmp_path / "one"),
        image_every=0,
    )
    for share in ([0, 1, 2], [3, 4]):  # the same shares, each in one process
        alone = sweep(TrainingSettings(epochs=2), options, share, out=io.StringIO())
        for seed, network, final, history in zip(
            share, alone.networks, alone.finals, alone.histories, strict=True
        ):
            saved = load_checkpoint(trained[seed] / "last.pt")
            for name, value in network.state_dict().items():
                assert torch.equal(saved["model"][name], value), (seed, name)
            assert {name: float(rows[seed][name]) for name in final} == final
            assert without_seconds(saved["history"]) == without_seconds(history)


def test_two_machines_over_loopback_gather_one_summary(fake_mnist_root, tmp_path):
    """Two torchrun agents (--nnodes=2, one process each) meet at a c10d rendezvous on this
    machine, as two machines would; rank 0 writes the summary of the copies of both."""
    endpoint = f"127.0.0.1:{free_port()}"
    command = launch(
        "-m",
        "gd_torch",
        *sweep_arguments(
            fake_mnist_root, tmp_path / "runs", "--epochs", "1", "--seeds", "4", "5", "6"
        ),
        nodes=2,
        processes=1,
        rendezvous=endpoint,
    )
    agents = [start(command) for _ in range(2)]
    outputs = [agent.communicate(timeout=WAIT_SECONDS) for agent in agents]
    for agent, (_, stderr) in zip(agents, outputs):
        assert agent.returncode == 0, stderr[-3000:]
    stdout = "".join(out for out, _ in outputs)
    assert "2 processes: rank 0 trains copies 0-1, rank 1 trains copies 2" in stdout
    assert stdout.count("summary in ") == 1
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    trained, rows = copy_directories(sweep_dir), summary_rows(sweep_dir)
    assert sorted(rows) == sorted(trained) == [4, 5, 6]
    for seed, run_dir in trained.items():  # what rank 0 gathered is what each rank trained
        last = load_checkpoint(run_dir / "last.pt")["history"][-1]
        assert float(rows[seed]["test_accuracy"]) == last["test_accuracy"]
        assert float(rows[seed]["train_cost"]) == last["train_cost"]


def test_a_machine_without_the_data_stops_every_rank_naming_it(fake_mnist_root, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [
        start(
            launch(
                "-m",
                "gd_torch",
                *sweep_arguments(root, tmp_path / "runs", "--num-seeds", "2"),
                nodes=2,
                processes=1,
                rendezvous=endpoint,
            )
        )
        for root in (fake_mnist_root, tmp_path / "nowhere")
    ]
    errors = [agent.communicate(timeout=WAIT_SECONDS)[1] for agent in agents]
    assert all(agent.returncode != 0 for agent in agents)
    stderr = "".join(errors)
    assert stderr.count("gd-torch sweep: error: rank ") == 1, stderr[-3000:]  # from rank 0 alone
    assert "nowhere/MNIST/raw/train-images-idx3-ubyte is missing" in stderr
    assert not (tmp_path / "runs").exists()  # stopped before anything was written


class Lines:
    """A process's stdout read as it comes, in a thread (until ``communicate`` takes over: it
    reads what is left and closes the pipe)."""

    def __init__(self, process: subprocess.Popen):
        self.lines, self.seen = queue.Queue(), []
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stdout) -> None:
        try:
            for line in stdout:
                self.lines.put(line)
        except ValueError:  # the pipe closed under the loop by communicate: nothing is lost
            pass

    def wait_for(self, *starts: str) -> None:
        """Until a line has begun with each of ``starts``."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not all(any(line.startswith(start) for line in self.seen) for start in starts):
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no lines starting with {starts} within {WAIT_SECONDS} s: {self.seen}")


def worker(agent: subprocess.Popen, rank: int) -> int:
    """The pid of the agent's worker process of that rank."""
    for path in Path("/proc").iterdir():
        try:
            parent = int((path / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (path / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if parent == agent.pid and f"RANK={rank}".encode() in environment:
            return int(path.name)
    raise AssertionError(f"no worker of rank {rank}")


def test_a_killed_rank_is_reported_and_the_resumed_sweep_trains_only_its_copies(
    fake_mnist_root, tmp_path
):
    """Rank 0 finishes its quick copies 0-1; rank 1, two epochs into its slow copies 2-3, is
    killed. Rank 0 reports rank 1 and its copies and keeps its own; the resumed sweep (in one
    process) leaves copies 0-1 as they are and continues 2-3 from their epoch-2 checkpoints to
    what an uninterrupted sweep gives."""
    agent = start(
        launch("tests/copies_script.py", fake_mnist_root, tmp_path / "runs", monitor=10)
    )  # rank 0 has the time to report before the agent stops it, however loaded the machine
    lines = Lines(agent)
    lines.wait_for("rank 0: epoch 4/4", "rank 1: epoch 2/4")
    os.kill(worker(agent, 1), signal.SIGKILL)
    stderr = agent.communicate(timeout=WAIT_SECONDS)[1]
    assert agent.returncode != 0
    assert stderr.count("rank 1 was not heard from") == 1, stderr[-3000:]
    assert "its copies 2-3 did not finish; 2 of 4 copies finished" in stderr
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(summary_rows(sweep_dir)) == [0, 1]  # the finished copies are in the summary
    before = copy_directories(sweep_dir)
    assert {seed: load_checkpoint(path / "last.pt")["epoch"] for seed, path in before.items()} == {
        0: 4,
        1: 4,
        2: 2,
        3: 2,
    }  # 2 and 3 at their epoch-2 checkpoints
    kept = {seed: (path / "last.pt").read_bytes() for seed, path in before.items()}

    resumed = run(gd_torch("sweep", "--resume", sweep_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: 2 of 4 copies had finished" in resumed.stdout
    assert "epoch 3/4" in resumed.stdout and "epoch 1/4" not in resumed.stdout  # from epoch 2 on
    trained = copy_directories(sweep_dir)
    assert all((trained[seed] / "last.pt").read_bytes() == kept[seed] for seed in (0, 1))
    assert sorted(summary_rows(sweep_dir)) == [0, 1, 2, 3]

    options = RunOptions(
        data_root=str(fake_mnist_root),
        download=False,
        runs_dir=str(tmp_path / "one"),
        image_every=0,
    )
    uninterrupted = train_copies(COPIES[2:], options, out=io.StringIO())
    for copy in uninterrupted.copies:
        state = load_checkpoint(trained[copy.settings.seed] / "last.pt")["model"]
        for name, value in copy.network.state_dict().items():
            assert torch.equal(state[name], value), (copy.settings.seed, name)


def test_an_interrupted_sweep_resumes_bit_for_bit_and_options_may_change(tmp_path):
    """Ctrl-C in epoch 2 of a one-process sweep: exit 130, the epoch-1 checkpoints of every copy
    kept, the resume command printed; resumed, it ends where the uninterrupted sweep ends."""
    data_root = write_mnist_files(tmp_path / "data", train_count=1000, test_count=200)
    more = ["--epochs", "2", "--batch-size", "1", "--learning-rate", "0.5", "--num-seeds", "2"]
    process = start(gd_torch(*sweep_arguments(data_root, tmp_path / "runs", *more)))
    lines = Lines(process)
    lines.wait_for("epoch 1/2")  # printed after its checkpoints; epoch 2 is 1,000 steps long
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=WAIT_SECONDS)[1]
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    assert process.returncode == 130, stderr[-3000:]
    assert (
        "error: stopped by SIGINT in epoch 2: copies 0-1 did not finish; 0 of 2 copies finished; "
        f"continue with: gd-torch sweep --resume {sweep_dir}"
    ) in stderr
    epochs = {
        load_checkpoint(path / "last.pt")["epoch"] for path in copy_directories(sweep_dir).values()
    }
    assert epochs == {1}

    resumed = run(gd_torch("sweep", "--resume", sweep_dir, "--log-every", "7"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 2/2" in resumed.stdout and "epoch 1/2" not in resumed.stdout
    options = RunOptions(
        data_root=str(data_root), download=False, runs_dir=str(tmp_path / "one"), image_every=0
    )
    settings = TrainingSettings(epochs=2, batch_size=1, learning_rate=0.5)
    uninterrupted = sweep(settings, options, [0, 1], out=io.StringIO())
    trained = copy_directories(sweep_dir)
    for seed, network in zip([0, 1], uninterrupted.networks):
        state = load_checkpoint(trained[seed] / "last.pt")
        assert state["options"]["log_every"] == 7
        for name, value in network.state_dict().items():
            assert torch.equal(state["model"][name], value), (seed, name)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seed", "3"], "--seed cannot be given with --resume"),
        (["--learning-rates", "1", "2"], "--learning-rates cannot be given with --resume"),
        (["--num-seeds", "1"], "--num-seeds cannot be given with --resume"),
    ],
)
def test_a_resumed_sweep_keeps_its_copies(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "--resume", str(tmp_path), *arguments])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_resume_needs_a_sweep_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "--resume", str(tmp_path), "--data-root", str(tmp_path), "--no-download"])
    assert exit.value.code == 2
    assert f"{tmp_path} is not a sweep directory: it has no sweep.json" in capsys.readouterr().err


def test_copies_that_do_not_share_their_data_are_refused(tmp_path):
    options = RunOptions(runs_dir=str(tmp_path), data_root=str(tmp_path), download=False)
    base = TrainingSettings(epochs=1)
    with pytest.raises(GdTorchError, match="the copies of a sweep share --validation-size"):
        train_copies([base, dataclasses.replace(base, validation_size=10, seed=1)], options)
    with pytest.raises(GdTorchError, match="the copies of a sweep must differ"):
        train_copies([base, base], options)
