"""Every mistake a user can make on the command line, tried on the real CLI in a subprocess.

Each case asserts the exit status, that the one-line message names the problem, that there
is no traceback, and that no file that existed before (data, a finished run) was changed.
The cases after the first block are one or more for each class of failure the README's "Bad
input" lists: wrong data, resources, overwriting, untrusted checkpoints, signals, sweeps,
meaningless values, the other commands, concurrent writers and images.
"""

import fcntl
import hashlib
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

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


def legacy_files_of_other_digits(root: Path):
    """torchvision's legacy layout beside raw/, holding 50 other training digits."""
    from tests.fakes import synthetic_digits

    (root / "MNIST" / "processed").mkdir()
    torch.save(synthetic_digits(50, seed=9), root / "MNIST" / "processed" / "training.pt")
    torch.save(synthetic_digits(200, seed=2), root / "MNIST" / "processed" / "test.pt")


def unreadable(name: str):
    """A data file whose reads fail (EIO) even for root: a link to /proc/self/mem."""

    def damage(root: Path):
        (raw_folder(root) / name).unlink()
        (raw_folder(root) / name).symlink_to("/proc/self/mem")

    return damage


def edited_checkpoint(key: str, value):
    """The stopped run's last.pt with one value edited, as edited.pt beside it."""

    def prepare(workspace: Path):
        (run,) = (workspace / "runs" / "stopped").iterdir()
        state = torch.load(run / "last.pt", weights_only=True)
        (state["settings"] if key in state["settings"] else state)[key] = value
        torch.save(state, run / "edited.pt")

    return prepare


class RunsCode:
    def __reduce__(self):  # what a malicious checkpoint holds: unpickling it runs a command
        return (os.system, ("echo ran > was_run",))


def malicious_checkpoint(workspace: Path):
    torch.save({"model": RunsCode()}, workspace / "malicious.pt")


def checkpoint_outside_a_run_directory(workspace: Path):
    (run,) = (workspace / "runs" / "stopped").iterdir()
    (workspace / "downloads").mkdir()
    shutil.copy(run / "last.pt", workspace / "downloads" / "model.pt")
    (workspace / "downloads" / "config.json").write_text("the user's own\n")


def a_figure_of_the_users(workspace: Path):
    checkpoint_outside_a_run_directory(workspace)
    (workspace / "downloads" / "noise.png").write_bytes(b"the user's own figure")


def prepared_image_there(workspace: Path):
    (workspace / "digit.prepared.png").write_bytes(b"the user's own picture")


def huge_image(workspace: Path):
    Image.new("1", (12_000, 12_000), 1).save(workspace / "huge.png")


def sixteen_bit_image(workspace: Path):
    levels = (255 - np.asarray(Image.open(workspace / "digit.png"))).astype("<u2") * 257
    Image.frombytes("I;16", (levels.shape[1], levels.shape[0]), levels.tobytes()).save(
        workspace / "deep.png"
    )


@dataclass
class Case:
    name: str
    arguments: list[str]
    message: str
    exit_code: int = 2
    damage_data: object = None  # a function of the data root, applied before the run
    prepare: object = None  # a function of the workspace, applied before the run
    file_size_limit: int | None = None  # bytes any file may grow to (ulimit -f): a full disk
    signal_after: float | None = None  # seconds after which the run gets SIGINT
    locked: bool = False  # another process holds the stopped run's lock


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
        [*TRAIN, "--cost", "hinge"],
        "argument --cost: invalid choice: 'hinge'",
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
    # 1. silent wrong data
    Case(
        "legacy files that differ from raw",
        [*TRAIN],
        "processed/training.pt (torchvision's legacy layout, which it reads instead of raw/) "
        "holds 50 training images that differ from the 600",
        damage_data=legacy_files_of_other_digits,
    ),
    Case(
        "check-data describes the legacy files",
        ["check-data", "--data-root", "{data}"],
        "holds 50 training images that differ",
        damage_data=legacy_files_of_other_digits,
    ),
    # 2. resources
    Case(
        "a network too large for memory",
        [*TRAIN, "--hidden-sizes", "10000000000"],
        "the 784-10000000000-10 network (7,950,000,000,010 weights and biases) needs about",
    ),
    Case(
        "a full disk during a run",
        [*TRAIN, "--epochs", "2"],
        "the file grew beyond the size this system allows",
        file_size_limit=40_000,
    ),
    Case(
        "a full disk during a resumed run keeps its config",
        ["train", "--resume", "{stopped}", "--log-every", "7"],
        "; the run stopped at step",
        file_size_limit=40_000,
    ),
    Case(
        "a data file that cannot be read",
        [*TRAIN],
        "train-labels-idx1-ubyte: cannot be read (input/output error",
        damage_data=unreadable(LABELS),
    ),
    Case(
        "check-data on a file that cannot be read",
        ["check-data", "--data-root", "{data}"],
        "1 of the 4 MNIST files are missing or broken",
        damage_data=unreadable(TRAIN_IMAGES),
    ),
    # 3. overwriting the user's files
    Case(
        "predict --show beside an existing prepared image",
        ["predict", "{checkpoint}", "{workspace}/digit.png", "--show"],
        "digit.prepared-2.png",
        exit_code=0,
        prepare=prepared_image_there,
    ),
    Case(
        "resume a checkpoint in a folder that is not a run directory",
        ["train", "--resume", "{workspace}/downloads/model.pt"],
        "downloads is not a run directory that gd_torch created",
        prepare=checkpoint_outside_a_run_directory,
    ),
    Case(
        "analyze where a figure of the user's is",
        ["analyze", "{workspace}/downloads/model.pt", "--data-root", "{data}", "--no-download"],
        "noise.png exists, and gd_torch replaces files only in the run directories it created",
        prepare=a_figure_of_the_users,
    ),
    # 4. untrusted checkpoints
    Case(
        "eval a checkpoint that would run code",
        ["eval", "{workspace}/malicious.pt"],
        "holds Python objects other than tensors and plain values, which gd_torch never",
        prepare=malicious_checkpoint,
    ),
    Case(
        "resume an edited checkpoint with a negative epoch",
        ["train", "--resume", "{stopped}/edited.pt"],
        "edited.pt is not a checkpoint gd_torch can use: its epoch is -4",
        prepare=edited_checkpoint("epoch", -4),
    ),
    Case(
        "predict with a checkpoint whose hidden sizes are a number",
        ["predict", "{stopped}/edited.pt", "{workspace}/digit.png"],
        "edited.pt holds settings this gd_torch cannot use",
        prepare=edited_checkpoint("hidden_sizes", 16),
    ),
    # 5. signals at any moment
    Case(
        "Ctrl-C while torch is importing",
        [*TRAIN],
        "gd-torch: error: stopped by SIGINT; nothing was written",
        exit_code=130,
        signal_after=0.3,
    ),
    # 6. one bad copy of a sweep
    Case(
        "a diverging copy of a sweep",
        ["sweep", *TRAIN[1:], "--learning-rates", "1e6", "3", "--image-every", "0"],
        "copy η 1e+06 seed 0 diverged at step",
        exit_code=0,
    ),
    # 7. values that are valid but mean nothing
    Case(
        "a learning rate that is 0 in float32",
        [*TRAIN, "--learning-rate", "1e-50"],
        "--learning-rate must be at least 1.18e-38, the smallest normal float32 number",
    ),
    Case(
        "a divergence hint that does not diverge too",
        [*TRAIN, "--learning-rate", "1", "--weight-decay", "10"],
        "smaller --learning-rate (e.g. 0.1) or --weight-decay (now 10) (η λ = 10 ≥ 2",
        exit_code=3,
    ),
    Case(
        "a learning rate whose every step rounds away",
        [*TRAIN, "--learning-rate", "1e-30"],
        "note: epoch 1 changed no weight or bias: at learning rate 1e-30",
        exit_code=0,
    ),
    Case(
        "more threads than CPUs",
        [*TRAIN, "--threads", "100000"],
        "--threads 100000 is more than the",
    ),
    # 8. the other commands
    Case("bench --repeats 0", ["bench", "--repeats", "0"], "--repeats must be a positive integer"),
    Case(
        "bench --sweep with an option of the engine bench",
        ["bench", "--sweep", "--batch-sizes", "5"],
        "--batch-sizes does not apply to gd-torch bench --sweep",
    ),
    Case(
        "analyze --one-weight-rate inf",
        ["analyze", "{checkpoint}", "--one-weight-rate", "inf"],
        "--one-weight-rate must be a finite number > 0, not inf",
    ),
    Case(
        "reproduce with a seed twice",
        ["reproduce", "--seeds", "1", "1", "--data-root", "{data}", "--runs-dir", "{runs}"],
        "--seeds must be distinct values",
    ),
    Case(
        "sweep with a learning rate that is not a number",
        ["sweep", *TRAIN[1:], "--learning-rates", "3", "nan"],
        "--learning-rates nan: --learning-rate must be a finite number > 0",
    ),
    Case(
        "predict a folder",
        ["predict", "{checkpoint}", "{runs}"],
        "runs is a folder, not an image",
    ),
    Case(
        "a run name with a line break",
        [*TRAIN, "--run-name", "two\nlines"],
        "--run-name must be a plain name (no / or .., no control characters)",
    ),
    # 9. concurrent writers
    Case(
        "resume a run that another process is writing",
        ["train", "--resume", "{stopped}"],
        "is being written by another gd-torch process",
        locked=True,
    ),
    # 10. images
    Case(
        "predict a huge image",
        ["predict", "{checkpoint}", "{workspace}/huge.png"],
        "huge.png is 12000x12000 pixels: gd_torch reads images of up to 64 megapixels",
        prepare=huge_image,
    ),
    Case(
        "predict a 16-bit image",
        ["predict", "{checkpoint}", "{workspace}/deep.png"],
        "deep.png: ",  # its digit and activations: read like any 8-bit image
        exit_code=0,
        prepare=sixteen_bit_image,
    ),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A data folder, a 1-epoch run in runs/, a run stopped after 1 of 2 epochs in
    runs/stopped/ and a drawn digit, to be copied into each case's workspace."""
    workspace = tmp_path_factory.mktemp("workspace")
    write_mnist_files(workspace / "data")
    for runs_dir, values in (
        ("runs", dict(epochs=1, run_name="finished")),
        ("runs/stopped", dict(epochs=2, time_budget=1e-9, image_every=0)),
    ):
        config = split(
            data_root=str(workspace / "data"),
            download=False,
            runs_dir=str(workspace / runs_dir),
            **values,
        )
        train(*config, out=open(os.devnull, "w"))
    digit = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(digit).line([(30, 10), (30, 70)], fill=0, width=8)
    digit.save(workspace / "digit.png")
    torch.set_num_threads(1)
    return workspace


def file_hashes(folder: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
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
    if case.prepare:
        case.prepare(workspace)
    (run,) = (path for path in (workspace / "runs").iterdir() if path.name != "stopped")
    (stopped,) = (workspace / "runs" / "stopped").iterdir()
    places = dict(
        data=workspace / "data",
        runs=workspace / "runs",
        run=run,
        stopped=stopped,
        checkpoint=run / "last.pt",
        workspace=workspace,
        a_file=workspace / "a_file",
        read_only=read_only,
    )
    arguments = [argument.format(**places) for argument in case.arguments]
    before = file_hashes(workspace)

    environment = {k: v for k, v in os.environ.items() if k != "GD_TORCH_DATA"} | {
        "PYTHONPATH": str(REPOSITORY)
    }

    def limits():
        if case.file_size_limit:  # writing beyond it fails with EFBIG, as a full disk fails
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.file_size_limit,) * 2)

    lock = os.open(stopped / ".gd_torch-run", os.O_RDONLY)
    if case.locked:
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "gd_torch", *arguments],
            cwd=workspace,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limits,
        )
        if case.signal_after:
            time.sleep(case.signal_after)
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        os.close(lock)

    assert process.returncode == case.exit_code, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    message_lines = [line for line in stderr.splitlines() if "error:" in line]
    if case.exit_code:
        assert case.message in stderr
        assert len(message_lines) == 1, stderr
    else:
        assert case.message in stdout and not message_lines, stderr
    after = file_hashes(workspace)
    assert {path: after.get(path) for path in before} == before, (
        "an existing file was changed or removed"
    )
    assert not (workspace / "was_run").exists()  # the malicious checkpoint's command never ran


def test_an_existing_run_directory_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(
        time, "strftime", lambda _: "20250101-000000"
    )  # two runs started in the same second
    first, second = create_run_directory(tmp_path, "same"), create_run_directory(tmp_path, "same")
    assert (first.name, second.name) == ("same_20250101-000000", "same_20250101-000000-2")
