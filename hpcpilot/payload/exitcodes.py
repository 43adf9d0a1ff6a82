"""Map a payload's exit status to a PanDA pilot error code."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from hpcpilot.model.errors import ErrorCode

_SIGNAL_CODES: dict[int, ErrorCode] = {
    signal.SIGTERM: ErrorCode.SIGTERM,
    signal.SIGQUIT: ErrorCode.SIGQUIT,
    signal.SIGSEGV: ErrorCode.SIGSEGV,
    signal.SIGXCPU: ErrorCode.SIGXCPU,
    signal.SIGBUS: ErrorCode.SIGBUS,
    signal.SIGUSR1: ErrorCode.SIGUSR1,
    signal.SIGINT: ErrorCode.SIGINT,
}


def signal_code(signum: int) -> ErrorCode:
    """The PanDA error code of a signal (``1201`` SIGTERM, ... ``1200`` any other)."""
    return _SIGNAL_CODES.get(signum, ErrorCode.KILL_SIGNAL)


def error_for_exit(returncode: int) -> tuple[ErrorCode | None, str]:
    """Return the error code and a diagnosis for a payload's exit status.

    Parameters
    ----------
    returncode
        The exit code, or minus the signal that killed the process (as `subprocess` reports it).
        Codes 129-192 are read as a shell's ``128 + signal``.

    Returns
    -------
    tuple
        ``(None, "")`` for success, else the code (``1201`` SIGTERM ... ``1200`` other signals,
        ``1305`` any other non-zero exit) and a short diagnosis.
    """
    if returncode == 0:
        return None, ""
    signum = -returncode if returncode < 0 else returncode - 128 if 128 < returncode <= 192 else 0
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return _SIGNAL_CODES.get(signum, ErrorCode.KILL_SIGNAL), f"payload killed by {name}"
    return ErrorCode.PAYLOAD_EXECUTION_FAILURE, f"payload exited with code {returncode}"


# --- the kernel's OOM killer ------------------------------------------------------------------

#: Where cgroup filesystems are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def oom_kill_count(text: str) -> int | None:
    """The ``oom_kill`` counter of a cgroup's ``memory.events`` (v2) or ``memory.oom_control`` (v1).

    None if the text has no such counter (an old kernel).
    """
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def oom_files(cgroup_text: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Candidate files holding the OOM-kill counter of the cgroup described by ``/proc/self/cgroup``.

    cgroup v2 (the ``0::/path`` line): ``memory.events`` of the cgroup, at ``root`` or at
    ``root/unified`` (hybrid systems). cgroup v1 (the ``N:memory:/path`` line):
    ``memory/<path>/memory.oom_control``. Where the cgroup's own path is not visible (a cgroup
    namespace), the mount's root comes after it. Best first.
    """
    found: list[Path] = []
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip().lstrip("/")
        if controllers == "":
            for mount in (root, root / "unified"):
                found += [mount / rel / "memory.events", mount / "memory.events"]
        elif "memory" in controllers.split(","):
            mount = root / "memory"
            found += [mount / rel / "memory.oom_control", mount / "memory.oom_control"]
    unique: list[Path] = []
    for candidate in found:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def _read_text(path: Path) -> str:
    return path.read_text()


class OomCounter:
    """Reads the OOM-kill counter of the pilot's cgroup, to tell the kernel's SIGKILL from others.

    A payload that dies of a SIGKILL the pilot did not send was killed by the kernel's OOM killer if
    the counter grew while it ran: it fails with 1212 (payload out of memory), not 1200.

    Parameters
    ----------
    read
        Reads a file's text (raises OSError when it cannot).
    cgroup_text
        The text of ``/proc/self/cgroup`` (read through ``read`` when None).
    root
        Where cgroup filesystems are mounted.
    """

    def __init__(
        self,
        read: Callable[[Path], str] = _read_text,
        cgroup_text: str | None = None,
        root: Path = CGROUP_ROOT,
    ) -> None:
        self._read = read
        self._cgroup_text = cgroup_text
        self._root = root
        self._file: Path | None = None
        self._resolved = False

    def count(self) -> int | None:
        """The counter now; None where it cannot be read (no cgroup, no permission, old kernel)."""
        if not self._resolved:
            self._resolved = True
            self._file = self._find()
        if self._file is None:
            return None
        try:
            return oom_kill_count(self._read(self._file))
        except OSError:
            return None

    def _find(self) -> Path | None:
        try:
            text = (
                self._cgroup_text if self._cgroup_text is not None else self._read(Path("/proc/self/cgroup"))
            )
        except OSError:
            return None
        for candidate in oom_files(text, self._root):
            try:
                if oom_kill_count(self._read(candidate)) is not None:
                    return candidate
            except OSError:
                continue
        return None


_COUNTER: OomCounter | None = None


def oom_counter() -> OomCounter:
    """The process's shared `OomCounter` (the cgroup's file is looked up once)."""
    global _COUNTER  # noqa: PLW0603 - one lookup per process
    if _COUNTER is None:
        _COUNTER = OomCounter()
    return _COUNTER


def killed_by_oom(returncode: int, before: int | None, after: int | None) -> bool:
    """Whether a payload that ended with ``returncode`` was killed by the kernel's OOM killer.

    It died of SIGKILL (``-9``, or a shell's ``137``) and the cgroup's ``oom_kill`` counter grew
    between its start (``before``) and its end (``after``).
    """
    sigkill = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    return sigkill and before is not None and after is not None and after > before


# --- why an item's process ended ---------------------------------------------------------------


def classify_exit(
    returncode: int,
    *,
    killed: tuple[ErrorCode, str] | None = None,
    timed_out: bool = False,
    limit_s: float = 0.0,
    oom_before: int | None = None,
    oom_after: int | None = None,
    subject: str = "payload",
) -> tuple[ErrorCode, str]:
    """The error code and diagnosis of an item whose process ended without delivering it.

    The one chain every process-based runner (`hpcpilot.payload.process_runner`,
    `hpcpilot.payload.streaming`) uses, first match wins:

    1. the pilot killed it (`SlotRunner.kill`): the code and diagnosis it was killed with;
    2. it ran over ``payload.timeout_s``: 1213 (the pilot's SIGTERM is not read as a signal);
    3. it died of SIGKILL while the cgroup's OOM-kill counter grew: 1212;
    4. its exit status (`error_for_exit`): a signal's code, or 1305;
    5. it exited 0 (a streaming payload that ended without answering its range): 1305.

    Parameters
    ----------
    returncode
        The exit code, or minus the signal that killed it (as `subprocess` reports it).
    killed
        The code and diagnosis `SlotRunner.kill` was called with, if it was.
    timed_out
        Whether the runner stopped it for running over its time limit.
    limit_s
        That limit (``payload.timeout_s``), for the diagnosis.
    oom_before, oom_after
        The cgroup's OOM-kill counter when it started and when it ended (None: unreadable).
    subject
        What ran over the time limit, for the diagnosis (``payload``, ``range``).

    Returns
    -------
    tuple
        ``(code, diagnosis)``.
    """
    if killed is not None:
        return killed
    if timed_out:
        return ErrorCode.REACHED_MAX_TIME, f"{subject} exceeded its time limit of {limit_s} s"
    if killed_by_oom(returncode, oom_before, oom_after):
        return ErrorCode.PAYLOAD_OUT_OF_MEMORY, "payload killed by the kernel's OOM killer"
    code, diag = error_for_exit(returncode)
    if code is None:
        return ErrorCode.PAYLOAD_EXECUTION_FAILURE, "payload exited without reporting the range"
    return code, diag
