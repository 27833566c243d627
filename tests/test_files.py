"""The one rule for what gd_torch writes: replace only in its own run directories, atomically,
one writer at a time."""

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gd_torch import train
from gd_torch.core import files
from gd_torch.core.errors import GdTorchError
from gd_torch.core.files import (
    MARKER,
    TEMPORARY_SUFFIX,
    is_run_directory,
    mark_run_directory,
    write_file,
    write_new_file,
    writing_run_directory,
)
from gd_torch.core.run_dir import create_run_directory
from tests.configs import split
from tests.fakes import synthetic_mnist

REPOSITORY = Path(__file__).resolve().parents[1]


def test_a_new_run_directory_is_marked_and_only_there_are_files_replaced(tmp_path):
    run_dir = create_run_directory(tmp_path, "run")
    assert (run_dir / MARKER).is_file() and is_run_directory(run_dir)
    write_file(run_dir / "config.json", "one")
    write_file(run_dir / "config.json", "two")  # inside a run directory: replaced
    assert (run_dir / "config.json").read_text() == "two"

    (tmp_path / "notes.txt").write_text("the user's")
    write_file(tmp_path / "new.txt", "created")  # elsewhere a free name may be created
    with pytest.raises(GdTorchError, match="notes.txt exists, and gd_torch replaces files only"):
        write_file(tmp_path / "notes.txt", "overwritten")
    assert (tmp_path / "notes.txt").read_text() == "the user's"
    assert (tmp_path / "new.txt").read_text() == "created"


def test_a_run_directory_of_before_the_marker_is_recognised_by_its_files(tmp_path):
    old = tmp_path / "old_run"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"settings": {}, "options": {}}))
    assert not is_run_directory(old)  # config.json alone could be anyone's
    (old / "versions.json").write_text("{}")
    assert is_run_directory(old)
    with writing_run_directory(old):  # and it is marked when written
        pass
    assert (old / MARKER).is_file()


def test_write_new_file_never_replaces_and_takes_the_next_free_name(tmp_path):
    (tmp_path / "digit.prepared.png").write_bytes(b"the user's")
    first = write_new_file(tmp_path / "digit.prepared.png", b"a")
    second = write_new_file(tmp_path / "digit.prepared.png", b"b")
    assert (first.name, second.name) == ("digit.prepared-2.png", "digit.prepared-3.png")
    assert (tmp_path / "digit.prepared.png").read_bytes() == b"the user's"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    mark_run_directory(tmp_path)
    write_file(tmp_path / "last.pt", b"good")

    def fails(*arguments):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fails)
    with pytest.raises(OSError):
        write_file(tmp_path / "last.pt", b"half")
    assert (tmp_path / "last.pt").read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "last.pt"]


def test_the_same_bytes_under_two_names_are_written_once_and_each_name_replaced_alone(tmp_path):
    run_dir = create_run_directory(tmp_path, "run")
    write_file(run_dir / "best.pt", b"epoch 1")
    fsyncs = []
    real_fsync = os.fsync
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
        write_file(run_dir / "last.pt", b"epoch 2", also=[run_dir / "best.pt"])
    assert len(fsyncs) == 1  # one file written and flushed, under both names
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    assert last.read_bytes() == best.read_bytes() == b"epoch 2"
    assert last.stat().st_ino == best.stat().st_ino
    write_file(last, b"epoch 3")  # a later write of one name leaves the other as it was
    assert (last.read_bytes(), best.read_bytes()) == (b"epoch 3", b"epoch 2")
    assert sorted(p.name for p in run_dir.iterdir()) == [MARKER, "best.pt", "last.pt"]


def test_without_hard_links_the_second_name_is_written_again(tmp_path, monkeypatch):
    run_dir = create_run_directory(tmp_path, "run")

    def no_links(*arguments):
        raise OSError(1, "Operation not permitted")  # EPERM: FAT, some network mounts

    monkeypatch.setattr(os, "link", no_links)
    write_file(run_dir / "last.pt", b"epoch 1", also=[run_dir / "best.pt"])
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    assert last.read_bytes() == best.read_bytes() == b"epoch 1"
    assert last.stat().st_ino != best.stat().st_ino


def test_a_second_name_that_may_not_be_replaced_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"the user's")
    with pytest.raises(GdTorchError, match="best.pt exists, and gd_torch replaces files only"):
        write_file(tmp_path / "last.pt", b"epoch 1", also=[tmp_path / "best.pt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    assert (tmp_path / "best.pt").read_bytes() == b"the user's"


def test_concurrent_writers_of_one_file_never_share_a_temporary(tmp_path):
    """Each write has its own temporary name, so the file always holds one writer's whole
    bytes, never a mix."""
    mark_run_directory(tmp_path)
    payloads = [bytes([k]) * 200_000 for k in range(8)]
    threads = [
        threading.Thread(target=lambda p=p: [write_file(tmp_path / "f", p) for _ in range(5)])
        for p in payloads
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (tmp_path / "f").read_bytes() in payloads
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TEMPORARY_SUFFIX)]


def test_a_run_directory_has_one_writer_and_a_folder_that_is_not_one_has_none(tmp_path):
    run_dir = create_run_directory(tmp_path, "run")
    holder = subprocess.Popen(  # another process holds the lock
        [
            sys.executable,
            "-c",
            "import sys, time; from gd_torch.core.files import writing_run_directory\n"
            f"with writing_run_directory({str(run_dir)!r}):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GdTorchError, match="is being written by another gd-torch process"):
            with writing_run_directory(run_dir):
                pass
    finally:
        holder.kill()
        holder.wait()
    with writing_run_directory(run_dir):  # the kernel released the killed process's lock
        pass
    with pytest.raises(GdTorchError, match="is not a run directory that gd_torch created"):
        with writing_run_directory(tmp_path):
            pass


def test_temporaries_a_killed_writer_left_are_removed_by_the_next_writer(tmp_path):
    run_dir = create_run_directory(tmp_path, "run")
    left = run_dir / f".last.pt.1234abcd{TEMPORARY_SUFFIX}"
    left.write_bytes(b"half")
    (run_dir / "user.tmp").write_bytes(b"not ours")
    with writing_run_directory(run_dir):
        pass
    assert not left.exists() and (run_dir / "user.tmp").exists()


def test_resume_into_a_folder_that_is_not_a_run_directory_is_refused_and_writes_nothing(tmp_path):
    data = synthetic_mnist(600, 200)
    stopped = train(
        *split(epochs=2, time_budget=1e-9, runs_dir=str(tmp_path / "runs")),
        data=data,
        out=io.StringIO(),
    )  # stopped after epoch 1 by its time budget: resumable
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "model.pt").write_bytes((stopped.run_dir / "last.pt").read_bytes())
    (folder / "config.json").write_text("the user's own")
    before = sorted(folder.iterdir())
    with pytest.raises(GdTorchError, match="downloads is not a run directory that gd_torch"):
        train(
            *split(epochs=2, runs_dir=str(tmp_path / "runs")), data=data, resume=folder / "model.pt"
        )
    assert sorted(folder.iterdir()) == before
    assert (folder / "config.json").read_text() == "the user's own"


def test_a_second_resume_of_a_run_being_written_is_refused(tmp_path):
    data = synthetic_mnist(600, 200)
    settings, options = split(epochs=2, time_budget=1e-9, runs_dir=str(tmp_path / "runs"))
    stopped = train(settings, options, data=data, out=io.StringIO())
    settings, options = split(epochs=2, runs_dir=str(tmp_path / "runs"))
    with writing_run_directory(stopped.run_dir):  # as a first resume holds it
        with pytest.raises(GdTorchError, match="is being written by another gd-torch process"):
            train(settings, options, data=data, resume=stopped.run_dir, out=io.StringIO())
    resumed = train(settings, options, data=data, resume=stopped.run_dir, out=io.StringIO())
    assert [epoch["epoch"] for epoch in resumed.history] == [1, 2]


def test_a_resumed_run_whose_save_fails_keeps_its_config(tmp_path, monkeypatch):
    data = synthetic_mnist(600, 200)
    settings, options = split(epochs=2, time_budget=1e-9, runs_dir=str(tmp_path / "runs"))
    stopped = train(settings, options, data=data, out=io.StringIO())
    config = (stopped.run_dir / "config.json").read_bytes()
    last = (stopped.run_dir / "last.pt").read_bytes()
    real_write = files._write

    def disk_full_for_checkpoints(path, data, replace):
        if path.suffix == ".pt":
            raise OSError(28, "No space left on device", str(path))
        real_write(path, data, replace)

    monkeypatch.setattr(files, "_write", disk_full_for_checkpoints)
    settings, options = split(epochs=2, log_every=7, runs_dir=str(tmp_path / "runs"))
    with pytest.raises(GdTorchError) as error:
        train(settings, options, data=data, resume=stopped.run_dir, out=io.StringIO())
    message = str(error.value)
    assert "no space left on the device; the run stopped at step 120" in message  # a file
    assert f"its last checkpoint is kept: {stopped.run_dir / 'last.pt'}" in message
    assert (stopped.run_dir / "config.json").read_bytes() == config  # not --log-every 7 yet
    assert (stopped.run_dir / "last.pt").read_bytes() == last
