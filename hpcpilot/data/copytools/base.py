"""The copytool family: one plugin moves one file from a source to a destination.

A copytool says which URL schemes it handles (``file`` for a local path), whether it needs the
network, and moves one `Transfer`. Tools that run a command (``xrdcp``, ``gfal-copy``, ``rucio``) build
its argv with a pure method and run it through the injected runner, so their argv and error parsing
are tested on recorded output. Plugins register under the ``hpcpilot.copytools`` entry-point group.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from hpcpilot.data.transfer import Direction, Transfer
from hpcpilot.model.errors import ErrorCode, StagingError
from hpcpilot.model.job import Checksum
from hpcpilot.runtime.commands import CommandResult, run_command


def scheme_of(location: str) -> str:
    """The URL scheme of a location: ``root``, ``davs``, ``rucio`` ..., or ``file`` for a path."""
    scheme = urlsplit(location).scheme
    return scheme.lower() if len(scheme) > 1 else "file"


def local_path(location: str) -> str:
    """The filesystem path of a local location: a plain path, or the path of a ``file://`` URL."""
    if location[:7].lower() == "file://":
        return unquote(urlsplit(location).path)
    return location


class Failure(enum.Enum):
    """What a failed transfer's output shows: decides its error code and whether to try again."""

    CHECKSUM = "checksum mismatch"
    MISSING = "no such file"
    NO_REPLICA = "no replica"
    AUTH = "authentication failed"
    DENIED = "permission denied"
    NO_SPACE = "no space left"
    TIMEOUT = "timed out"
    NETWORK = "network error"
    NOT_INSTALLED = "command not found"
    OTHER = "failed"

    def code(self, direction: Direction) -> ErrorCode:
        """The PanDA error code of this failure in ``direction``.

        Checksum 1171/1172, timeout 1151/1152, a missing file 1103, no replica 1100, an
        authentication failure 1163 (no valid proxy or token), no space 1098 on stage-in (the local
        disk; a full remote storage is a stage-out failure, 1137), anything else 1099/1137.
        """
        if self is Failure.CHECKSUM:
            return direction.checksum_code
        if self is Failure.TIMEOUT:
            return direction.timeout_code
        if self is Failure.MISSING:
            return ErrorCode.NO_SUCH_FILE
        if self is Failure.NO_REPLICA:
            return ErrorCode.REPLICA_NOT_FOUND
        if self is Failure.AUTH:
            return ErrorCode.NO_PROXY
        if self is Failure.NO_SPACE and direction is Direction.IN:
            return ErrorCode.NO_LOCAL_SPACE
        return direction.failed_code

    @property
    def retryable(self) -> bool:
        """Whether another attempt may help: after a timeout, a network error or an unknown error."""
        return self in {Failure.TIMEOUT, Failure.NETWORK, Failure.OTHER}


#: (pattern, failure) pairs of a copytool's messages, the first that matches wins: `failure_rules`.
FailureRules = tuple[tuple[re.Pattern[str], Failure], ...]


def failure_rules(*rules: tuple[str, Failure]) -> FailureRules:
    """Compile a copytool's (regular expression, failure) rules, case-insensitive, in order."""
    return tuple((re.compile(pattern, re.IGNORECASE), failure) for pattern, failure in rules)


def match_failure(rules: FailureRules, text: str) -> Failure | None:
    """The failure of the first rule whose pattern is found in ``text``, or None."""
    for pattern, failure in rules:
        if pattern.search(text):
            return failure
    return None


class Copytool(ABC):
    """Base class of copytools.

    Parameters
    ----------
    run
        Runs an argv with a timeout and an environment (`hpcpilot.runtime.commands.run_command`),
        injected for tests.
    env
        The environment of the commands it runs (default: the pilot's).
    """

    #: URL schemes this tool can read from or write to (``file``: a local path).
    schemes: ClassVar[frozenset[str]] = frozenset({"file"})
    #: Whether the tool needs the outside network (workers never use such tools).
    network: ClassVar[bool] = False

    def __init__(
        self,
        run: Callable[..., CommandResult] = run_command,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.run = run
        self.env = env

    def handles(self, transfer: Transfer) -> bool:
        """Whether this tool can move ``transfer`` (both ends in its schemes)."""
        return scheme_of(transfer.source) in self.schemes and scheme_of(transfer.destination) in self.schemes

    def command_error(
        self,
        transfer: Transfer,
        result: CommandResult,
        failure: Failure,
        what: str,
    ) -> StagingError:
        """The `StagingError` of a command that failed with ``failure``: ``what`` happened.

        The message names the LFN; the context holds the command, its exit code and the tail of its
        stderr (or stdout), so a job's error diagnostics say what the tool said.
        """
        return StagingError(
            f"{what} ({transfer.lfn})",
            code=failure.code(transfer.direction),
            retryable=failure.retryable,
            context={
                "command": shlex.join(result.argv),
                "exit_code": result.returncode,
                "stderr": result.stderr_tail(300),
            },
        )

    def run_error(
        self,
        transfer: Transfer,
        result: CommandResult,
        classify: Callable[[str], Failure],
        detail: Callable[[str], str],
        timeout_s: float = 0.0,
    ) -> StagingError:
        """The `StagingError` of a failed run of the tool's command.

        Code 124 from the runner (killed at its time limit) is a timeout, 127 a tool that is not
        installed; anything else is what ``classify`` finds in its output, described by ``detail``.
        """
        tool = os.path.basename(result.argv[0]) if result.argv else type(self).__name__
        if result.returncode == 124:
            after = f" after {timeout_s:g} s" if timeout_s else ""
            return self.command_error(transfer, result, Failure.TIMEOUT, f"{tool} timed out{after}")
        if result.returncode == 127:
            return self.command_error(transfer, result, Failure.NOT_INSTALLED, f"{tool} is not installed")
        text = f"{result.stderr}\n{result.stdout}"
        failure = classify(text)
        return self.command_error(transfer, result, failure, f"{tool}: {failure.value}: {detail(text)}")

    @abstractmethod
    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Move one file.

        Returns
        -------
        Checksum or None
            The checksum the tool confirmed on the destination (a tool that verifies end to end, as
            ``xrdcp --cksum``), or None when the client must compute it itself (a local destination).

        Raises
        ------
        StagingError
            With the code of what went wrong (``transfer.direction`` gives 1099/1137, 1151/1152,
            1171/1172; a missing source 1103 / replica 1100), ``retryable`` when another attempt may
            help, and the command and its stderr tail in the context.
        """
