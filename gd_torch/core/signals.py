"""Signals over the whole life of a gd-torch process: whatever the moment, a stop ends cleanly.

    SIGINT (Ctrl-C), SIGTERM (kill, Slurm, Docker, the torchrun agent), SIGHUP (the terminal
    closed), SIGUSR1 and SIGUSR2 (what batch systems send before a time limit)

each ask the process to stop. What happens depends on the moment:

- during a training run (``training``): the request is recorded, and the run stops at its next
  safe point, after the current SGD step or after the epoch's evaluation and checkpoints, with a
  resumable last.pt (``gd_torch.core.guard``). A second signal of the same kind stops at once,
  keeping the last checkpoint written.
- at any other moment (imports, reading MNIST, building the network, analyze, predict, ...):
  the process stops at once, with one line on stderr and exit status 128 + the signal number
  (130 for SIGINT, 143 for SIGTERM).
- inside a ``protected`` section (an atomic write): the section finishes first, so no file is
  ever left half-written and no temporary file is left behind.

"At once" is ``os._exit`` after one line written straight to the stderr file descriptor, not an
exception: an exception raised by a signal handler lands in whatever code runs at that moment, a
finaliser (tqdm's ``__del__``) included, where Python prints "Exception ignored ..." and goes on.
From Python (``gd_torch.train``) handlers are installed only around a training run, and a stop at
once is ``SystemExit`` there.

A signal that the parent process ignores stays ignored (``nohup`` ignores SIGHUP). After SIGHUP the
terminal is gone, so stdout and stderr, where they were that terminal, go to /dev/null: the run
still stops at its safe point and saves. SIGQUIT (Ctrl-\\) and SIGKILL are not caught: they end the
process at once, as the operating system does; every file gd_torch writes replaces the old one
atomically (trajectory.bin, a log, is appended to, and a record cut short is dropped when it is
read), so the last checkpoint is whole, and --resume continues from it.

This module imports nothing heavy: the command line installs it before importing torch.
"""

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)


class _Lifetime:
    """The process's one record of stop requests (signal handlers are process-wide)."""

    def __init__(self) -> None:
        self.command: str | None = None  # "gd-torch train" while the command line handles signals
        self.installs = 0  # nesting of handling() and training()
        self.previous: dict[int, Any] = {}  # signal number -> the handler before ours
        self.training = 0  # nesting of training(): a first signal is then only a request
        self.requested: int | None = None  # the first stop signal of the current training run
        self.stopped_at_once: Callable[[int], str] = lambda number: ""  # what that leaves
        self.protected = 0  # nesting of protected()
        self.stop_after_protected: int | None = None
        self.leaving = ""  # what a stop at once leaves behind, outside training


_life = _Lifetime()


def name(number: int) -> str:
    return signal.Signals(number).name


def requested() -> int | None:
    """The stop signal received during the current (or last) training run, if any."""
    return _life.requested


def leaving(description: str) -> None:
    """Say what a stop at once would leave behind from now on: the end of its one-line message,
    after "stopped by SIGINT" (" before training started: nothing was written")."""
    _life.leaving = description


@contextmanager
def handling(command: str) -> Iterator[None]:
    """The command line's: every stop signal is handled from here until the command returns."""
    _life.command, _life.leaving = command, ""
    _install()
    try:
        yield
    finally:
        _uninstall()
        _life.command = None


def handling_as(command: str) -> None:
    """The command's name, as its messages start (``gd-torch train``), once it is known."""
    _life.command = command


@contextmanager
def training(stopped_at_once: Callable[[int], str]) -> Iterator[None]:
    """A training run: a first stop signal is only recorded (``requested``), for the run to stop
    at its next safe point; ``stopped_at_once(signal)`` says what a second one leaves behind."""
    _install()
    _life.training += 1
    _life.requested, _life.stopped_at_once = None, stopped_at_once
    try:
        yield
    finally:
        _life.training -= 1
        _uninstall()


@contextmanager
def protected() -> Iterator[None]:
    """A section that a stop at once lets finish (an atomic write: the file, then the rename)."""
    _life.protected += 1
    try:
        yield
    finally:
        _life.protected -= 1
        pending, _life.stop_after_protected = _life.stop_after_protected, None
        if pending is not None and not _life.protected:
            _stop_now(pending)


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # Python runs handlers in the main thread only, and only it may install them
    _life.installs += 1
    if _life.installs > 1:
        return
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:  # nohup: SIGHUP stays ignored
            _life.previous[number] = signal.signal(number, _handle)


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    _life.installs -= 1
    if _life.installs == 0:
        for number, handler in _life.previous.items():
            signal.signal(number, handler)
        _life.previous.clear()


def _handle(number: int, frame: FrameType | None) -> None:
    if number == getattr(signal, "SIGHUP", None):
        _detach_from_terminal()
    if _life.training and _life.requested != number:
        _life.requested = _life.requested or number  # a second kind (torchrun: SIGINT + SIGTERM)
        return
    if _life.protected:
        _life.stop_after_protected = _life.stop_after_protected or number
        return
    _stop_now(number)


def _stop_now(number: int) -> None:
    if _life.command is None:  # from Python: the interpreter's own way to stop
        raise SystemExit(128 + number)
    if _life.training:
        how, leaves = f"stopped at once by a second {name(number)}", _life.stopped_at_once(number)
    else:
        how, leaves = f"stopped by {name(number)}", _life.leaving
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        line = f"{_life.command}: error: {how}{leaves}\n"
        try:
            os.write(2, line.encode(errors="backslashreplace"))
        except OSError:  # stderr was a terminal that is gone
            pass
    os._exit(128 + number)


def _detach_from_terminal() -> None:
    """SIGHUP: the terminal is gone, and writing to it would fail; write to /dev/null instead."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for descriptor in (1, 2):
        try:
            if os.isatty(descriptor):
                os.dup2(devnull, descriptor)
        except OSError:
            pass
    os.close(devnull)
