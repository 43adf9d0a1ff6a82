"""Payload processes: each in its own session (process group), ended as a group, reaped with rusage.

The pilot only ever signals process groups it created here; it never kills by name. On Linux a payload
also gets SIGKILL when the pilot process that started it dies (``PR_SET_PDEATHSIG``): a worker rank
killed with ``kill -9`` (or by the kernel) leaves no payload running on after it, writing into the work
directory while ``run --resume`` or another rank does that range again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

#: Every process group started here and not yet reaped: killed on an abort (see `kill_all`).
_LIVE: set[ProcessGroup] = set()

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """The C library's ``prctl``, resolved once before any fork (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with(parent: int) -> None:
    """In the child, before exec: ask for SIGKILL when the parent dies; exit if it already has."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl: nobody would kill this child
        os._exit(137)


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a process ended.

    Attributes
    ----------
    returncode
        Exit code, or minus the signal number that killed it.
    cpu_s
        User plus system CPU seconds of the process (and of the children it waited for).
    """

    returncode: int
    cpu_s: float


class ProcessGroup:
    """A child process started as the leader of a new session, so the whole tree can be signalled.

    Parameters
    ----------
    argv
        The command (no shell).
    cwd
        Working directory.
    env
        The complete environment of the child.
    stdout, stderr
        Where its output goes: an open file, or ``subprocess.PIPE``.
    stdin_pipe
        Whether to give it a pipe on stdin (streaming payloads).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdout: IO[bytes] | int,
        stderr: IO[bytes] | int,
        stdin_pipe: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
            preexec_fn=partial(_die_with, os.getpid()) if _PRCTL is not None else None,  # noqa: PLW1509
        )
        self.pid = self.popen.pid
        _LIVE.add(self)
        self.exit: ExitInfo | None = None
        self._kill_deadline: float | None = None

    def poll(self) -> ExitInfo | None:
        """Reap the process if it has ended (never blocks); escalate a pending stop to SIGKILL."""
        if self.exit is not None:
            return self.exit
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            if self._kill_deadline is not None and time.monotonic() >= self._kill_deadline:
                self._signal_group(signal.SIGKILL)
                self._kill_deadline = None
            return None
        returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = returncode
        _LIVE.discard(self)
        self.exit = ExitInfo(returncode, usage.ru_utime + usage.ru_stime)
        return self.exit

    def terminate(self, grace_s: float) -> None:
        """Send SIGTERM to the group; `poll` sends SIGKILL if it still lives after ``grace_s``."""
        if self.exit is not None:
            return
        self._signal_group(signal.SIGTERM)
        self._kill_deadline = time.monotonic() + max(grace_s, 0.0)

    def stop(self, grace_s: float) -> ExitInfo:
        """Terminate the group and wait until the process is reaped (SIGKILL after ``grace_s``)."""
        self.terminate(grace_s)
        delay = 0.001
        while (info := self.poll()) is None:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._signal_group(signal.SIGKILL)  # leftovers of the group, if any survived their leader
        return info

    def wait(self, timeout_s: float) -> ExitInfo | None:
        """Wait up to ``timeout_s`` for the process to end by itself."""
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        while (info := self.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return info

    @property
    def elapsed_s(self) -> float:
        """Seconds since the process was started."""
        return time.monotonic() - self.started

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def kill_all() -> int:
    """SIGKILL every process group this process started and has not reaped; returns how many.

    Payloads run in their own sessions, so an MPI abort of the pilot would not reach them: the abort
    path calls this first. Only groups started here are touched.
    """
    groups = list(_LIVE)
    for group in groups:
        group._signal_group(signal.SIGKILL)
    return len(groups)


def tail_of_file(path: Path, start: int = 0, limit: int = 2000) -> str:
    """The last ``limit`` bytes of a file from offset ``start`` on, decoded leniently, stripped."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
