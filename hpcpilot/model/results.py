"""What became of work: output files, range attempts and payload runs, as workers report them."""

from __future__ import annotations

from dataclasses import dataclass

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.wire import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file a payload produced: where it is, how big, and its adler32.

    Attributes
    ----------
    path
        Absolute path on the shared filesystem.
    fsize
        Size in bytes.
    adler32
        Adler32 as 8 lower-case hex digits.
    """

    path: str
    fsize: int
    adler32: str


@compact_pickle
@dataclass(frozen=True, slots=True)
class RangeResult:
    """What became of one attempt at one event range.

    Attributes
    ----------
    panda_id
        The job the range belongs to.
    range_id
        The range.
    state
        FINISHED or FAILED (the coordinator decides whether a failure is FATAL).
    output
        The range's output file when it finished and wrote one.
    n_events
        Events processed.
    error_code
        The pilot error code when it failed.
    error_diag
        A short diagnosis when it failed.
    wall_s
        Wall-clock seconds the attempt took.
    cpu_s
        CPU seconds the payload used for it, when known.
    """

    panda_id: int
    range_id: str
    state: RangeState
    output: OutputFile | None = None
    n_events: int = 0
    error_code: ErrorCode | None = None
    error_diag: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0


@compact_pickle
@dataclass(frozen=True, slots=True)
class PayloadResult:
    """What became of one run of a plain (not event-service) job's payload.

    Attributes
    ----------
    panda_id
        The job.
    ok
        Whether the payload succeeded and every declared output exists.
    outputs
        The job's output files that exist, with sizes and checksums.
    exit_code
        The payload's exit code (negative: killed by that signal).
    error_code
        The pilot error code when it failed.
    error_diag
        A short diagnosis when it failed.
    wall_s, cpu_s
        Wall-clock and CPU seconds of the run.
    """

    panda_id: int
    ok: bool
    outputs: tuple[OutputFile, ...] = ()
    exit_code: int | None = None
    error_code: ErrorCode | None = None
    error_diag: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
