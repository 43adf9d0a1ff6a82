"""Running a short external command (``sbatch``, ``squeue``, ``qstat`` ...) and capturing its output.

Plugins never call `subprocess` themselves: they get a `CommandRunner` (this module's `run_command` in
production, a replay of recorded output in tests).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """How a command ended.

    Attributes
    ----------
    argv
        The command.
    returncode
        Its exit code (127: not found, 124: timed out).
    stdout, stderr
        What it printed.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether it exited 0."""
        return self.returncode == 0

    def stderr_tail(self, limit: int = 500) -> str:
        """The end of stderr (or stdout when stderr is empty), for error messages."""
        text = (self.stderr or self.stdout).strip()
        return text[-limit:]


CommandRunner = Callable[[Sequence[str]], CommandResult]
"""Runs an argv (no shell) and returns its `CommandResult`."""


class EnvCommandRunner(Protocol):
    """Runs an argv (no shell) in a given environment (None: this process's), as `run_command` does."""

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        """Run ``argv`` with the environment ``env``."""
        ...


def run_command(
    argv: Sequence[str],
    timeout_s: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> CommandResult:
    """Run ``argv`` without a shell and capture its output.

    Parameters
    ----------
    argv
        The command.
    timeout_s
        Seconds before it is killed (result code 124).
    env
        Its environment (default: this process's).
    cwd
        Its working directory.

    Returns
    -------
    CommandResult
        A missing executable gives code 127 and the error on stderr; a timeout, 124.
    """
    args = tuple(argv)
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        return CommandResult(args, 127, "", f"{args[0]}: command not found ({exc})")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return CommandResult(args, 124, out, f"{args[0]}: timed out after {timeout_s:g} s")
    return CommandResult(args, done.returncode, done.stdout, done.stderr)
