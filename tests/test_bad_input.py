"""Every mistake a user can make on the command line, tried on the real CLI in a subprocess.

Each case asserts the exit status, that the one-line message names the problem, that there
is no traceback, and that no file that existed before (data, a finished run) was changed.
"""

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gd_torch import train
from gd_torch.core.mnist_files import raw_folder
from gd_torch.core.run_dir import create_run_directory
from gd_torch.core.settings import TrainingSettings
from tests.configs import split
from tests.fakes import write_mnist_files

REPOSITORY = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--data-root", "{data}", "--no-download", "--runs-dir", "{runs}", "--epochs", "1"]
TRAIN_IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def truncate(name: str, size: int):
    def damage(root: Path):
        path = raw_folder(root) / name
        path.write_bytes(path.read_bytes()[:size])

    return damage


def overwrite(name: str, offset: int, value: bytes):
    def damage(root: Path):
        path = raw_folder(root) / name
        data = bytearray(path.read_bytes())
        data[offset : offset + len(value)] = value
        path.write_bytes(bytes(data))

    return damage


def one_label_less(root: Path):
    truncate(LABELS, 8 + 599)(root)
    overwrite(LABELS, 4, struct.pack(">I", 599))(root)


def remove(name: str):
    return lambda root: (raw_folder(root) / name).unlink()


def remove_all(root: Path):
    shutil.rmtree(raw_folder(root))


@dataclass
class Case:
    name: str
    arguments: list[str]
    message: str
    exit_code: int = 2
    damage_data: object = None  # a function of the data root, applied before the run


CASES = [
    Case("zero epochs", [*TRAIN, "--epochs", "0"], "--epochs must be a positive integer"),
    Case(
        "negative batch size",
        [*TRAIN, "--batch-size", "-5"],
        "--batch-size must be a positive integer",
    ),
    Case(
        "batch larger than the data",
        [*TRAIN, "--batch-size", "601"],
        "--batch-size 601 is larger than the 600 training images",
    ),
    Case(
        "zero learning rate",
        [*TRAIN, "--learning-rate", "0"],
        "--learning-rate must be a finite number > 0",
    ),
    Case(
        "nan learning rate",
        [*TRAIN, "--learning-rate", "nan"],
        "--learning-rate must be a finite number > 0",
    ),
    Case(
        "infinite learning rate",
        [*TRAIN, "--learning-rate", "inf"],
        "--learning-rate must be a finite number > 0",
    ),
    Case(
        "learning rate beyond float32", [*TRAIN, "--learning-rate", "1e39"], "(and within float32)"
    ),
    Case(
        "learning rate not a number",
        [*TRAIN, "--learning-rate", "fast"],
        "argument --learning-rate: invalid float value: 'fast'",
    ),
    Case("abbreviated option", [*TRAIN, "--lr", "0.5"], "unrecognized arguments: --lr 0.5"),
    Case(
        "unknown engine",
        [*TRAIN, "--engine", "numpy"],
        "argument --engine: invalid choice: 'numpy'",
    ),
    Case(
        "unknown cost",
        [*TRAIN, "--cost", "cross-entropy"],
        "argument --cost: invalid choice: 'cross-entropy'",
    ),
    Case(
        "empty hidden layer",
        [*TRAIN, "--hidden-sizes", "16", "0"],
        "--hidden-sizes must be positive integers",
    ),
    Case(
        "negative weight decay",
        [*TRAIN, "--weight-decay", "-0.1"],
        "--weight-decay must be a finite number >= 0",
    ),
    Case("negative seed", [*TRAIN, "--seed", "-1"], "--seed must be an integer in 0 .. 2**63 - 1"),
    Case(
        "validation takes all",
        [*TRAIN, "--validation-size", "600"],
        "--validation-size 600 leaves no training images",
    ),
    Case(
        "zero checkpoint interval",
        [*TRAIN, "--checkpoint-every", "0"],
        "--checkpoint-every must be a positive integer",
    ),
    Case(
        "runs dir is a file",
        [*TRAIN, "--runs-dir", "{a_file}"],
        "a_file is a file, not a directory",
    ),
    Case(
        "runs dir unwritable",
        [*TRAIN, "--runs-dir", "{read_only}/runs"],
        "cannot create the run directory",
    ),
    Case(
        "run name escapes the runs dir",
        [*TRAIN, "--run-name", "../escaped"],
        "--run-name must be a plain name",
    ),
    Case(
        "no data and no download",
        [*TRAIN],
        f"{TRAIN_IMAGES} is missing (and --no-download was given)",
        damage_data=remove_all,
    ),
    Case(
        "one file missing",
        [*TRAIN],
        "t10k-labels-idx1-ubyte is missing",
        damage_data=remove("t10k-labels-idx1-ubyte"),
    ),
    Case(
        "empty file",
        [*TRAIN],
        f"{TRAIN_IMAGES}: truncated: 0 bytes",
        damage_data=truncate(TRAIN_IMAGES, 0),
    ),
    Case(
        "truncated images",
        [*TRAIN],
        f"{TRAIN_IMAGES}: truncated: 100016 bytes",
        damage_data=truncate(TRAIN_IMAGES, 16 + 100_000),
    ),
    Case(
        "wrong magic number",
        [*TRAIN],
        f"{LABELS}: wrong magic number 0x00000803",
        damage_data=overwrite(LABELS, 0, struct.pack(">I", 0x803)),
    ),
    Case(
        "wrong image size",
        [*TRAIN],
        "t10k-images-idx3-ubyte: images are 27x28",
        damage_data=overwrite("t10k-images-idx3-ubyte", 8, struct.pack(">I", 27)),
    ),
    Case(
        "label out of range",
        [*TRAIN],
        f"{LABELS}: label 12 out of range 0..9",
        damage_data=overwrite(LABELS, 8 + 5, bytes([12])),
    ),
    Case("fewer labels than images", [*TRAIN], "holds 600 images but", damage_data=one_label_less),
    Case(
        "resume a missing run", [*TRAIN, "--resume", "{runs}/no-such-run"], "no-such-run not found"
    ),
    Case(
        "resume a file that is not a checkpoint",
        [*TRAIN, "--resume", "{a_file}"],
        "a_file is not a readable checkpoint",
    ),
    Case(
        "resume with another learning rate",
        ["train", "--resume", "{run}", "--learning-rate", "2"],
        f"--learning-rate 2.0 (the run has {TrainingSettings().learning_rate})",
    ),
    Case(
        "resume with more epochs",
        ["train", "--resume", "{run}", "--epochs", "2"],
        "--epochs 2 (the run has 1)",
    ),
    Case(
        "resume a finished run", ["train", "--resume", "{run}"], "has already finished its 1 epochs"
    ),
    Case("eval a missing checkpoint", ["eval", "{runs}/nothing.pt"], "nothing.pt not found"),
    Case(
        "check broken data",
        ["check-data", "--data-root", "{data}"],
        "1 of the 4 MNIST files are missing or broken",
        damage_data=truncate(LABELS, 7),
    ),
    Case(
        "diverging run",
        [*TRAIN, "--learning-rate", "1", "--weight-decay", "10"],
        "diverged at step 42 (epoch 1, learning rate 1)",
        exit_code=3,
    ),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A data folder and a 1-epoch run in runs/, to be copied into each case's workspace."""
    workspace = tmp_path_factory.mktemp("workspace")
    write_mnist_files(workspace / "data")
    config = split(
        epochs=1,
        data_root=str(workspace / "data"),
        download=False,
        runs_dir=str(workspace / "runs"),
        run_name="finished",
    )
    train(*config, out=open(os.devnull, "w"))
    torch.set_num_threads(1)
    return workspace


def file_hashes(folder: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_in_one_line_and_damages_nothing(tmp_path, finished_run, case):
    workspace = tmp_path / "workspace"
    shutil.copytree(finished_run, workspace)
    (workspace / "a_file").write_text("not a directory, not a checkpoint\n")
    read_only = workspace / "read_only"
    read_only.mkdir(mode=0o555)
    if "{read_only}" in " ".join(case.arguments) and os.access(read_only, os.W_OK):
        if not Path("/proc/self").is_dir():
            pytest.skip(
                "running as root, where permissions do not apply, "
                "and no /proc to write into instead"
            )
        read_only = Path(
            "/proc"
        )  # as root, nothing refuses a chmod-ed folder; /proc refuses everyone
    if case.damage_data:
        case.damage_data(workspace / "data")
    (run,) = (workspace / "runs").iterdir()
    places = dict(
        data=workspace / "data",
        runs=workspace / "runs",
        run=run,
        a_file=workspace / "a_file",
        read_only=read_only,
    )
    arguments = [argument.format(**places) for argument in case.arguments]
    before = file_hashes(workspace)

    environment = {k: v for k, v in os.environ.items() if k != "GD_TORCH_DATA"} | {
        "PYTHONPATH": str(REPOSITORY)
    }
    result = subprocess.run(
        [sys.executable, "-m", "gd_torch", *arguments],
        cwd=workspace,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == case.exit_code, result.stderr
    assert case.message in result.stderr
    assert "Traceback" not in result.stderr
    message_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(message_lines) == 1, result.stderr
    after = file_hashes(workspace)
    assert {path: after.get(path) for path in before} == before, (
        "an existing file was changed or removed"
    )


def test_an_existing_run_directory_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(
        time, "strftime", lambda _: "20250101-000000"
    )  # two runs started in the same second
    first, second = create_run_directory(tmp_path, "same"), create_run_directory(tmp_path, "same")
    assert (first.name, second.name) == ("same_20250101-000000", "same_20250101-000000-2")
