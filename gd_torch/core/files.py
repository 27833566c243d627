"""What gd_torch may write, and how it writes: the one rule that keeps the user's files safe.

    gd_torch replaces a file only inside a run directory that it created itself.
    Anywhere else it only creates files under names that are free.

A run directory is marked when it is made (``mark_run_directory``: the empty file MARKER in it);
run directories made before the marker existed are known by their config.json and versions.json.

Every file is written atomically (``write_file``): to a temporary file with a unique name in the
same folder, flushed to the disk, then given its name, by ``os.replace`` where replacing is
allowed and by ``os.link`` (which fails when the name is taken) where it is not. So a crash, a
full disk or a kill never leaves half a file under the real name, two writers never share a
temporary file, and a stop signal waits for the write to end (``signals.protected``). The same
bytes due under two names in a run directory (best.pt and last.pt of one epoch) are written
once and linked under the second name. The one
exception is a log that only grows (``append_to_file``: trajectory.bin), whose reader drops a
last record a crash cut short.

While a process writes into a run directory, it holds an exclusive lock on the marker
(``writing_run_directory``: ``fcntl.flock``, which the kernel releases when the process ends,
however it ends); a second writer, such as a second --resume of the same run, is refused.
"""

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

from gd_torch.core import signals
from gd_torch.core.errors import GdTorchError, os_error_message

MARKER = ".gd_torch-run"
TEMPORARY_SUFFIX = ".gd_torch-tmp"
OLD_TEMPORARIES = (".last.pt.tmp", ".best.pt.tmp")  # the fixed names of before, left by a kill
LINKLESS = (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)  # no hard link here


def mark_run_directory(path: Path) -> None:
    """Mark ``path``, a directory gd_torch has just created, as one of its run directories."""
    os.close(os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def is_run_directory(path: str | Path) -> bool:
    """Whether gd_torch created ``path`` as a run directory (the marker, or a run of before it:
    its config.json of gd_torch's settings beside a versions.json)."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(config, dict)
        and (
            {"settings", "options"} <= set(config)
            or {"hidden_sizes", "learning_rate"} <= set(config)
        )
        and (path / "versions.json").is_file()
    )


def not_a_run_directory(path: Path, doing: str) -> GdTorchError:
    return GdTorchError(
        f"{path} is not a run directory that gd_torch created (it holds no {MARKER}), and "
        f"{doing}: gd_torch replaces files only in its own run directories (to let it write "
        f"there anyway, mark the folder as one: touch {path / MARKER})"
    )


@contextlib.contextmanager
def writing_run_directory(path: str | Path) -> Iterator[None]:
    """Hold ``path``'s lock while this process writes into it; refuse a run directory that another
    process is writing, and a folder that is not a run directory."""
    path = Path(path)
    if not is_run_directory(path):
        raise not_a_run_directory(path, "writing into it would replace files there")
    marker = path / MARKER
    if not marker.exists():  # a run of before the marker: mark it now
        mark_run_directory(path)
    descriptor = os.open(marker, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GdTorchError(
                f"{path} is being written by another gd-torch process (a run, a resume or an "
                "analyze of it): wait for it to end, or stop it first"
            ) from None
        except OSError as error:  # a file system without locks: go on without
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        _remove_temporaries(path)
        yield
    finally:
        os.close(descriptor)


def _remove_temporaries(run_dir: Path) -> None:
    """Temporary files that a killed process left in ``run_dir``; only the lock holder writes
    there, so none of them is being written."""
    for leftover in run_dir.iterdir():
        if leftover.name.endswith(TEMPORARY_SUFFIX) or leftover.name in OLD_TEMPORARIES:
            leftover.unlink(missing_ok=True)


def may_replace(path: Path) -> bool:
    """The rule: an existing file may be replaced only inside a run directory gd_torch created."""
    return is_run_directory(path.parent)


def refuse_to_replace(path: Path) -> None:
    """Refuse, before any work is done, to write ``path`` when the rule forbids replacing it."""
    if path.exists() and not may_replace(path):
        raise GdTorchError(
            f"{path} exists, and gd_torch replaces files only in the run directories it created: "
            "move it away first"
        )


def write_file(path: str | Path, data: bytes | str, also: Sequence[Path] = ()) -> None:
    """Write ``data`` as ``path``, atomically, replacing an old ``path`` only where the rule
    allows it; and as each of ``also`` the same bytes (best.pt beside last.pt): in a run
    directory a second name of the one file written, so that it is written and flushed to the
    disk once, each name still replaced atomically and alone by later writes."""
    paths = [Path(path), *also]
    for each in paths:
        refuse_to_replace(each)
    _write(paths[0], data, replace=may_replace(paths[0]))
    for copy in paths[1:]:
        if not (may_replace(copy) and _linked(paths[0], copy)):
            _write(copy, data, replace=may_replace(copy))


def _linked(source: Path, path: Path) -> bool:
    """Replace ``path``, atomically, by a second name (a hard link) of the file ``source``, which
    is on the disk already; False, with nothing done, where the file system has no hard links."""
    with signals.protected():
        second = _temporary(path)
        try:
            os.link(source, second)
            os.replace(second, path)
        except OSError as error:
            if error.errno not in LINKLESS:
                raise
            return False
        finally:
            second.unlink(missing_ok=True)
    return True


def append_to_file(path: Path, data: bytes, size: int) -> bool:
    """Append ``data`` to ``path`` and flush it to the disk, if ``path`` is still the ``size``
    bytes its writer left; False, with nothing written, when it is gone or changed."""
    with signals.protected():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return False
        with os.fdopen(descriptor, "ab") as file:
            if os.fstat(descriptor).st_size != size:
                return False
            file.write(data)
            file.flush()
            os.fsync(descriptor)
    return True


def write_new_file(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` under ``path``'s name or, when it is taken, the first free one of
    ``<stem>-2<suffix>``, ``<stem>-3<suffix>``, ...; never replaces a file. Returns the path."""
    path = Path(path)
    for attempt in range(1, 1000):
        candidate = path if attempt == 1 else path.with_name(f"{path.stem}-{attempt}{path.suffix}")
        if candidate.exists():
            continue
        try:
            _write(candidate, data, replace=False)
            return candidate
        except FileExistsError:  # taken between the look and the link
            continue
    raise GdTorchError(f"no free name for {path} (tried {path.stem}-2 ... -999)")


def _write(path: Path, data: bytes | str, replace: bool) -> None:
    if isinstance(data, str):
        data = data.encode()
    with signals.protected():
        temporary = _temporary(path)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            if replace:
                os.replace(temporary, path)
            else:
                _link(temporary, path, data)
        finally:
            temporary.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:  # a name to write under before the file becomes ``path``
    return path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def _link(temporary: Path, path: Path, data: bytes) -> None:
    """Give the written ``temporary`` the name ``path`` only if it is free (FileExistsError)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError as error:  # a file system without hard links (FAT, some network mounts)
        if error.errno not in LINKLESS:
            raise
        with open(path, "xb") as file:  # exclusive: fails when the name is taken
            file.write(data)


def require_writable(folder: Path) -> None:
    """Refuse, before any work is done, a folder this process cannot create files in."""
    try:
        probe = folder / f".gd_torch-probe.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as error:
        raise GdTorchError(f"cannot write into {folder}: {os_error_message(error)}") from None
