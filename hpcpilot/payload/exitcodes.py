"""Map a payload's exit status to a PanDA pilot error code."""

from __future__ import annotations

import signal

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
