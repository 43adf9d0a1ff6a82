"""What one file transfer is and how it ended: pure data shared by copytools and staging clients."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Checksum


class Direction(enum.Enum):
    """Which way a file moves; decides the error codes of a failure."""

    IN = "in"  # into the job directory (stage-in)
    OUT = "out"  # out of it (stage-out of outputs and logs)

    @property
    def failed_code(self) -> ErrorCode:
        """1099 stage-in failed / 1137 stage-out failed."""
        return ErrorCode.STAGE_IN_FAILED if self is Direction.IN else ErrorCode.STAGE_OUT_FAILED

    @property
    def timeout_code(self) -> ErrorCode:
        """1151 stage-in timeout / 1152 stage-out timeout."""
        return ErrorCode.STAGE_IN_TIMEOUT if self is Direction.IN else ErrorCode.STAGE_OUT_TIMEOUT

    @property
    def checksum_code(self) -> ErrorCode:
        """1171 stage-in checksum mismatch / 1172 stage-out checksum mismatch."""
        if self is Direction.IN:
            return ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
        return ErrorCode.STAGE_OUT_CHECKSUM_MISMATCH


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file to move.

    Attributes
    ----------
    lfn
        The file's logical name (named in every error).
    source, destination
        A local path or a URL (``root://host:port//path``, ``davs://...``, ``rucio://scope:lfn``).
    direction
        Stage-in or stage-out.
    fsize
        The expected size in bytes, when known.
    checksum
        The expected checksum, when known: verified after the copy.
    guid
        The file's GUID, when known (``rucio upload --guid``).
    overwrite
        A stage-out may replace a different file already at the destination
        (``data.stageout_overwrite``); without it the local tools refuse to (a stage-in always may:
        its destination is the job's own directory).
    """

    lfn: str
    source: str
    destination: str
    direction: Direction
    fsize: int | None = None
    checksum: Checksum | None = None
    guid: str | None = None
    overwrite: bool = False


@dataclass(frozen=True, slots=True)
class TransferResult:
    """How one transfer ended.

    Attributes
    ----------
    transfer
        What was asked.
    ok
        Whether the file arrived, with the expected size and checksum.
    tool
        The copytool that moved it (or tried last).
    attempts
        Attempts over all tools.
    seconds
        Wall time over all attempts.
    fsize
        Size of the file that arrived (None on failure).
    checksum
        Its checksum as computed or confirmed (None on failure).
    error_code, error_diag
        Why it failed (None and "" when ok).
    """

    transfer: Transfer
    ok: bool
    tool: str = ""
    attempts: int = 0
    seconds: float = 0.0
    fsize: int | None = None
    checksum: Checksum | None = None
    error_code: ErrorCode | None = None
    error_diag: str = ""
