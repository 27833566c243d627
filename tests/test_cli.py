"""The command line, run as a user runs it: in a subprocess."""

import subprocess
import sys

import pytest
import torch

from gd_torch.core.mnist_files import raw_folder
from gd_torch.core.trajectory import FILE_NAME, Trajectory


def gd_torch(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gd_torch", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_train_then_eval(tmp_path, fake_mnist_root):
    trained = gd_torch(
        "train",
        "--data-root",
        fake_mnist_root,
        "--runs-dir",
        tmp_path / "runs",
        "--epochs",
        2,
        "--no-download",
    )
    assert trained.returncode == 0, trained.stderr
    assert "hidden_sizes" in trained.stdout and "epoch 2/2" in trained.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert Trajectory.load(run_dir / FILE_NAME).epochs == [0, 1, 2]  # step 0 and every epoch
    evaluated = gd_torch("eval", run_dir / "last.pt", "--data-root", fake_mnist_root)
    assert evaluated.returncode == 0, evaluated.stderr
    last_epoch_accuracy = (
        trained.stdout.split("epoch 2/2")[1].split("test accuracy ")[1].split("%")[0]
    )
    assert f"test accuracy {last_epoch_accuracy}%" in evaluated.stdout


def test_dry_run(tmp_path, fake_mnist_root):
    result = gd_torch(
        "train",
        "--dry-run",
        "--data-root",
        fake_mnist_root,
        "--runs-dir",
        tmp_path,
        "--no-download",
    )
    assert result.returncode == 0 and "epoch 1/1" in result.stdout


@pytest.mark.parametrize(
    "arguments,problem",
    [
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
        (["--hidden-sizes", "16", "-3"], "--hidden-sizes must be positive integers"),
        (["--hidden-sizes", "sixteen"], "invalid int value: 'sixteen'"),
        (["--engine", "numpy"], "invalid choice: 'numpy'"),
        (["--data-root", "/nonexistent/mnist", "--no-download"], "put the four uncompressed files"),
    ],
)
def test_wrong_input_gives_one_clear_line_and_no_traceback(tmp_path, arguments, problem):
    result = gd_torch("train", "--runs-dir", tmp_path, *arguments)
    assert result.returncode != 0
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_idx_file_names_the_file(tmp_path, fake_mnist_root):
    path = raw_folder(fake_mnist_root) / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    result = gd_torch(
        "train", "--data-root", fake_mnist_root, "--runs-dir", tmp_path, "--no-download"
    )
    assert (
        result.returncode == 2
        and f"{path}: truncated" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_eval_of_a_file_that_is_no_checkpoint(tmp_path):
    bogus = tmp_path / "last.pt"
    bogus.write_text("not a checkpoint")
    result = gd_torch("eval", bogus)
    assert (
        result.returncode == 2
        and "is not a readable checkpoint" in result.stderr
        and "Traceback" not in result.stderr
    )
    torch.save({"model": {}}, bogus)
    assert "missing optimizer, settings, options, epoch, step" in gd_torch("eval", bogus).stderr


def test_check_data_on_synthetic_files_says_they_are_not_official(fake_mnist_root):
    result = gd_torch("check-data", "--data-root", fake_mnist_root)
    assert result.returncode == 0
    assert result.stdout.count("sound IDX file, but not the official one") == 4


def test_check_data_reports_missing_files(tmp_path):
    result = gd_torch("check-data", "--data-root", tmp_path)
    assert (
        result.returncode == 2
        and result.stdout.count("missing") == 4
        and "4 of the 4 MNIST files" in result.stderr
    )


def test_check_data_confirms_the_official_files(mnist_root):
    result = gd_torch("check-data", "--data-root", mnist_root)
    assert result.returncode == 0 and result.stdout.count("official (md5 matches)") == 4


@pytest.mark.parametrize("command", ["analyze", "predict", "bench", "reproduce", "sweep"])
def test_scripts_are_thin_entry_points_to_the_same_commands(command):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / f"{command}.py"
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith(f"usage: gd-torch {command}")
