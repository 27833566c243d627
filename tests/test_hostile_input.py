"""The bad-input promise, tested generatively: Hypothesis draws option values for every command.

Numbers of every sign and magnitude (nan and inf too), empty and odd strings with control
characters, paths to files, folders, images, checkpoints and to nothing. Whatever is drawn, a
command must end in exit status 0, or in a non-zero status with exactly one line on stderr and no
traceback; and no file that existed before may change, except inside a run directory gd_torch
created (the write rule of ``gd_torch.core.files``). ``gd_torch.cli.main`` runs in-process for
speed; a few examples run as a real ``python -m gd_torch`` in a subprocess.

Each example gives 1-3 options hostile values over a base command line that keeps a valid run
short (600 synthetic digits, one epoch: ``--time-budget`` stops it after the first; which is
why --epochs and --time-budget are never drawn together). A few values that are valid but start
minutes of work are drawn from their invalid ranges only: ``--compile`` (30 s of compiling),
``--download`` (no network in CI), bench's ``--sweep`` mode (torchrun processes) and a bench of
more than 2 repeats; hidden layers are drawn small or absurd, not in between (a 10⁶-wide layer
fits in memory and takes minutes). The examples are fixed (``derandomize``), so CI is repeatable;
``GD_TORCH_HOSTILE_EXAMPLES=2000 pytest tests/test_hostile_input.py`` draws that many new ones.
"""

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from gd_torch import train
from gd_torch.cli import main
from gd_torch.core.files import MARKER, TEMPORARY_SUFFIX
from tests.configs import split
from tests.fakes import write_mnist_files

REPOSITORY = Path(__file__).resolve().parents[1]


def number_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


NUMBER = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([0, -1, 2, 10**9, 10**18, 2**63, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-50, 1e-40, 1e-300, 1e300, 1e39, -0.0, 5e-324, 0.5, 3.0]),
).map(number_text)
ODD_TEXT = st.one_of(
    st.sampled_from(["", " ", "-", "--", "nan", "-inf", "1e999", "0x10", "1_000", "١٢", "3.0.1"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6),
    st.text(st.sampled_from("\n\r\t\x00\x1b\x7f\u2028 ab/.-"), min_size=1, max_size=5),
)
# the kinds of paths, made concrete in each example's workspace (see ``concrete``)
PATH = st.sampled_from(
    [
        "data",
        "text_file",
        "digit.png",
        "folder",
        "runs",
        "finished",
        "finished/last.pt",
        "stopped",
        "stopped/last.pt",
        "nothing",
        "nothing/deeper",
        "",
        "line\nbreak",
        "/dev/null",
        "/proc/self/mem",
        "/proc/no_such_folder",
    ]
)
SMALL_OR_ABSURD = st.one_of(st.integers(-2, 40), st.sampled_from([10**9, 10**12, 10**30])).map(str)
ANY = st.one_of(NUMBER, ODD_TEXT, PATH)


def values(strategy, least: int = 1, most: int = 3):
    return st.lists(strategy, min_size=least, max_size=most)


def one(strategy):
    return values(strategy, 1, 1)


FLAG = st.just([])  # an option that takes no value


def choice(*names):
    return one(st.one_of(st.sampled_from(names), ODD_TEXT))


TRAINING = {
    "--hidden-sizes": values(st.one_of(SMALL_OR_ABSURD, ODD_TEXT), 0),
    "--init": choice("pytorch", "nielsen", "nielsen-improved"),
    "--cost": choice("quadratic", "nielsen", "mse"),
    "--engine": choice("manual", "autograd"),
    "--learning-rate": one(NUMBER),
    "--momentum": one(NUMBER),
    "--nesterov": FLAG,
    "--weight-decay": one(NUMBER),
    "--lr-schedule": choice("constant", "cosine", "linear"),
    "--epochs": one(st.one_of(NUMBER, ODD_TEXT)),
    "--batch-size": one(st.one_of(NUMBER, ODD_TEXT)),
    "--seed": one(NUMBER),
    "--validation-size": one(NUMBER),
    "--dtype": choice("float32", "float64"),
    "--data-root": one(PATH),
    "--device": choice("auto", "cpu", "cuda", "mps"),
    "--threads": one(st.one_of(NUMBER, st.sampled_from(["1", "2", "3"]))),
    "--no-compile": FLAG,
    "--compile=": one(ODD_TEXT),  # --compile takes no value: argparse refuses
    "--runs-dir": one(PATH),
    "--run-name": one(st.one_of(ODD_TEXT, st.sampled_from(["ok", "..", "a/b", "x" * 300]))),
    "--log-every": one(NUMBER),
    "--image-every": one(NUMBER),
    "--checkpoint-every": one(NUMBER),
    "--time-budget": one(NUMBER),
    "--dry-run": FLAG,
}
BASE_TRAIN = ["--data-root", "data", "--no-download", "--runs-dir", "runs", "--epochs", "1"]
FAST = ["--time-budget", "1e-9", "--image-every", "0"]
COMMANDS = {  # name: (the base command line, the options that may be drawn)
    "train": (
        ["train", *BASE_TRAIN, *FAST],
        TRAINING
        | {
            "--preset": choice("3b1b", "nielsen-30", "sgd-100", "full-batch-gd"),
            "--resume": one(PATH),
        },
    ),
    "sweep": (
        ["sweep", *BASE_TRAIN, "--image-every", "0"],
        {k: v for k, v in TRAINING.items() if k not in ("--time-budget",)}
        | {
            "--seeds": values(st.one_of(st.integers(-1, 5).map(str), NUMBER)),
            "--num-seeds": one(st.one_of(st.integers(-1, 3).map(str), SMALL_OR_ABSURD, ODD_TEXT)),
            "--learning-rates": values(NUMBER),
        },
    ),
    "bench": (
        [
            "bench",
            "--data-root",
            "data",
            "--no-download",
            "--batch-sizes",
            "600",
            "--repeats",
            "1",
            "--tutorial-examples",
            "10",
            "--no-compile",
        ],
        {
            "--batch-sizes": values(st.one_of(SMALL_OR_ABSURD, st.just("600"), ODD_TEXT)),
            "--repeats": one(st.one_of(st.integers(-2, 2).map(str), ODD_TEXT)),
            "--tutorial-examples": one(st.one_of(NUMBER, ODD_TEXT)),
            "--threads": one(st.one_of(NUMBER, st.sampled_from(["1", "2"]))),
            "--devices": values(
                st.one_of(st.sampled_from(["cpu", "cuda", "mps", "auto"]), ODD_TEXT)
            ),
            "--json": FLAG,
            "--data-root": one(PATH),
            "--copies": one(NUMBER),  # the --sweep mode's: refused without it
            "--epochs": one(NUMBER),
        },
    ),
    "bench --sweep": (
        ["bench", "--sweep", "--data-root", "data"],
        {  # invalid ranges only: a valid bench --sweep runs torchrun for minutes
            "--copies": values(st.one_of(st.integers(-3, 0).map(str), st.just("10000000000000"))),
            "--train-images": one(st.one_of(st.integers(-3, 0).map(str), st.just("100000"))),
            "--epochs": one(st.integers(-3, 0).map(str)),
            "--repeats": one(NUMBER),  # the engine bench's: refused with --sweep
            "--json": FLAG,
        },
    ),
    "reproduce": (
        [
            "reproduce",
            "--data-root",
            "data",
            "--no-download",
            "--runs-dir",
            "runs",
            "--configurations",
            "default",
            "--seeds",
            "0",
            "--epochs",
            "1",
        ],
        {
            "--configurations": values(
                st.one_of(
                    st.sampled_from(["default", "sgd-100", "3b1b", "full-batch-gd-same-time"]),
                    ODD_TEXT,
                )
            ),
            "--seeds": values(st.one_of(st.integers(-1, 3).map(str), NUMBER)),
            "--engines": values(st.one_of(st.sampled_from(["manual", "autograd"]), ODD_TEXT)),
            "--epochs": one(st.one_of(st.integers(-1, 1).map(str), ODD_TEXT)),
            "--data-root": one(PATH),
            "--runs-dir": one(PATH),
        },
    ),
    "analyze": (
        ["analyze", "finished/last.pt", "--data-root", "data", "--no-download"],
        {
            "checkpoint": one(PATH),
            "--top": one(st.one_of(NUMBER, ODD_TEXT)),
            "--one-weight-rate": one(NUMBER),
            "--data-root": one(PATH),
        },
    ),
    "predict": (
        ["predict", "finished/last.pt", "digit.png"],
        {"checkpoint": one(PATH), "images": values(PATH), "--show": FLAG},
    ),
    "eval": (
        ["eval", "finished/last.pt", "--data-root", "data", "--no-download"],
        {"checkpoint": one(PATH), "--data-root": one(PATH)},
    ),
    "check-data": (["check-data"], {"--data-root": one(ANY)}),
}
WEIGHTS = {  # how often each command is drawn: the slow ones less
    "train": 6,
    "sweep": 3,
    "bench": 1,
    "bench --sweep": 1,
    "reproduce": 2,
    "analyze": 1,
    "predict": 2,
    "eval": 2,
    "check-data": 2,
}


@st.composite
def command_lines(draw) -> list[str]:
    """A base command line of one command with 1-3 of its options given hostile values."""
    name = draw(st.sampled_from([n for n, weight in WEIGHTS.items() for _ in range(weight)]))
    base, options = COMMANDS[name]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True))
    if {"--epochs", "--time-budget"} <= set(chosen):  # both valid and large: a long run
        chosen.remove("--time-budget")
    argv = list(base)
    for option in chosen:
        drawn = draw(options[option])
        if option == "checkpoint":  # the positional arguments replace the base's
            argv[1] = drawn[0]
        elif option == "images":
            argv[2:3] = drawn
        elif option.endswith("="):
            argv.append(option + drawn[0])
        else:
            argv += [option, *drawn]
    return argv


def concrete(argv: list[str], workspace: Path) -> list[str]:
    """The path kinds of ``PATH`` as paths in this example's workspace."""
    places = {
        "finished": next(workspace.glob("runs/finished_*")),
        "stopped": next((workspace / "runs" / "stopped").iterdir()),
    }
    result = []
    for argument in argv:
        head, _, tail = argument.partition("/")
        if head in places:
            result.append(str(places[head] / tail) if tail else str(places[head]))
        elif argument in ("data", "text_file", "digit.png", "folder", "runs", "nothing") or (
            argument.startswith("nothing/")
        ):
            result.append(str(workspace / argument))
        else:
            result.append(argument)
    return result


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """What each example starts from: MNIST files, a finished run, a run stopped after 1 of 2
    epochs, an image, a text file and an empty folder."""
    workspace = tmp_path_factory.mktemp("template")
    write_mnist_files(workspace / "data")
    for runs_dir, values in (
        ("runs", dict(epochs=1, run_name="finished")),
        ("runs/stopped", dict(epochs=2, time_budget=1e-9)),
    ):
        train(
            *split(
                data_root=str(workspace / "data"),
                download=False,
                runs_dir=str(workspace / runs_dir),
                image_every=0,
                **values,
            ),
            out=io.StringIO(),
        )
    digit = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(digit).line([(30, 10), (30, 70)], fill=0, width=8)
    digit.save(workspace / "digit.png")
    (workspace / "text_file").write_text("not an image, not a checkpoint, not MNIST\n")
    (workspace / "folder").mkdir()
    torch.set_num_threads(1)
    return workspace


def hashes(folder: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def check_the_promise(workspace: Path, before: dict, code, stdout: str, stderr: str, argv) -> None:
    shown = f"argv={argv!r}\nexit={code!r}\nstderr={stderr[-3000:]!r}\nstdout={stdout[-1500:]!r}"
    assert isinstance(code, int), shown
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, shown
    if code != 0:
        lines = stderr.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0].strip(), shown  # exactly one line, and not empty
    after = hashes(workspace)
    for path, digest in before.items():
        if after.get(path) != digest:  # changed or removed: only inside gd_torch's run directories
            assert (path.parent / MARKER).is_file() and path.name != MARKER, f"{path}\n{shown}"
    leftovers = [p for p in workspace.rglob(f"*{TEMPORARY_SUFFIX}")]
    assert not leftovers, f"temporary files left: {leftovers}\n{shown}"


def in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
                code = 0
            except SystemExit as exit:
                code = 0 if exit.code is None else exit.code
    finally:
        os.chdir(previous)
        torch.set_num_threads(1)
    return code, out.getvalue(), err.getvalue()


def fresh_workspace(template: Path, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("example")
    shutil.rmtree(workspace)
    shutil.copytree(template, workspace, symlinks=True)
    return workspace


@pytest.mark.parametrize("name", [name for name in COMMANDS if name != "bench --sweep"])
def test_every_base_command_line_succeeds(template, tmp_path_factory, name):
    """The hostile values are drawn over these: were a base refused, every example would keep the
    promise by refusing. (bench --sweep's base is valid too, but runs torchrun for minutes.)"""
    workspace = fresh_workspace(template, tmp_path_factory)
    argv = concrete(COMMANDS[name][0], workspace)
    before = hashes(workspace)
    code, stdout, stderr = in_process(argv, workspace)
    assert code == 0, stderr
    check_the_promise(workspace, before, code, stdout, stderr, argv)
    shutil.rmtree(workspace)


# CI runs a fixed budget of fixed examples; GD_TORCH_HOSTILE_EXAMPLES=2000 explores new ones
EXPLORE = int(os.environ.get("GD_TORCH_HOSTILE_EXAMPLES", 0))
HYPOTHESIS = dict(
    deadline=timedelta(seconds=90),
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@settings(max_examples=EXPLORE or 150, **HYPOTHESIS)
@given(argv=command_lines())
def test_any_option_values_end_in_success_or_one_line_and_replace_nothing(
    template, tmp_path_factory, argv
):
    workspace = fresh_workspace(template, tmp_path_factory)
    argv = concrete(argv, workspace)
    before = hashes(workspace)
    code, stdout, stderr = in_process(argv, workspace)
    check_the_promise(workspace, before, code, stdout, stderr, argv)
    shutil.rmtree(workspace)


@settings(max_examples=EXPLORE // 20 or 4, **HYPOTHESIS)
@given(argv=command_lines())
def test_the_same_holds_for_the_real_command_in_a_subprocess(template, tmp_path_factory, argv):
    """What in-process runs cannot see: output that bypasses sys.stderr (C++ warnings, Python's
    own traceback printer, warnings printed at exit), and the real exit status."""
    workspace = fresh_workspace(template, tmp_path_factory)
    argv = concrete(argv, workspace)
    before = hashes(workspace)
    environment = {k: v for k, v in os.environ.items() if k != "GD_TORCH_DATA"}
    finished = subprocess.run(
        [sys.executable, "-m", "gd_torch", *argv],
        cwd=workspace,
        env=environment | {"PYTHONPATH": str(REPOSITORY)},
        capture_output=True,
        timeout=300,
    )
    stdout = finished.stdout.decode(errors="backslashreplace")
    stderr = finished.stderr.decode(errors="backslashreplace")
    check_the_promise(workspace, before, finished.returncode, stdout, stderr, argv)
    shutil.rmtree(workspace)
