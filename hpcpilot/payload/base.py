"""The payload family: a `SlotRunner` runs one job's work items on one slot of a node.

A slot is ``job.core_count`` cores of the worker's node. A runner is created for one job; the worker
submits items to it one at a time and polls it from its event loop, so every method here returns at
once. Plugins register under the ``hpcpilot.payloads`` entry-point group.
"""

from __future__ import annotations

import os
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hpcpilot.config.schema import PayloadSettings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.command import Command
from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult

#: Placeholders a per-range command may hold.
RANGE_PLACEHOLDERS = (
    "eventRangeID",
    "startEvent",
    "lastEvent",
    "LFN",
    "PFN",
    "GUID",
    "scope",
    "outputFile",
)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One unit of work for a slot: an event range of a job, or a whole plain job.

    Attributes
    ----------
    job
        The job.
    event_range
        The range, or None for a plain job.
    output
        Where the range's output must be written (None for plain jobs).
    attempt
        1 for the first attempt, then 2, 3, ...
    """

    job: Job
    event_range: EventRange | None
    output: Path | None
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class SlotContext:
    """What a runner needs to know about where it runs.

    Attributes
    ----------
    job
        The job whose items it runs.
    job_dir
        The job's directory (working directory of the payloads).
    log_dir
        Where payload stdout/stderr files go.
    slot_name
        A name unique on the node for this runner, used in log file names (``r0003-s01``).
    settings
        Payload settings.
    base_env
        The environment payloads start from.
    wrap
        Puts a payload's command into its environment (modules, container): the job's
        ``environment.chain``, prepared on this node.
    slot_env
        The slot's own variables (its GPU selection, ``CUDA_VISIBLE_DEVICES`` ...).
    cpu_list
        The CPUs the slot's payloads are pinned to, in ``taskset --cpu-list`` form ("" for no pinning).
    cores
        The cores the slot holds: the job's ``coreCount``, or the whole node when the job asks for more
        than the node has (0: the job's ``coreCount``).
    """

    job: Job
    job_dir: Path
    log_dir: Path
    slot_name: str
    settings: PayloadSettings
    base_env: Mapping[str, str]
    wrap: Callable[[Command], Command] = lambda command: command
    slot_env: Mapping[str, str] = field(default_factory=dict)
    cpu_list: str = ""
    cores: int = 0


ItemResult = RangeResult | PayloadResult


class SlotRunner(ABC):
    """Base class of payload plugins: runs one job's items on one slot, one at a time."""

    def __init__(self, context: SlotContext) -> None:
        self.context = context
        self.job = context.job

    @property
    @abstractmethod
    def busy(self) -> bool:
        """Whether an item is in flight."""

    @property
    def closed(self) -> bool:
        """Whether the runner holds no process any more (after `close` or `kill`)."""
        return True

    @abstractmethod
    def submit(self, item: WorkItem) -> None:
        """Start ``item``; only called when not `busy`."""

    @abstractmethod
    def poll(self) -> list[ItemResult]:
        """Results of items that ended since the last call (never blocks)."""

    def wake_in_s(self) -> float | None:
        """Seconds until the in-flight item is known to end, or None if unknown."""
        return None

    def pids(self) -> tuple[int, ...]:
        """Leaders of the process groups running the in-flight item, for the monitors (none here)."""
        return ()

    def log_files(self) -> tuple[Path, ...]:
        """The log files the in-flight item writes to, whose modification shows progress (none here)."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook
        """No more items will come: end any long-lived process gently (never blocks)."""

    def kill(self, code: ErrorCode, diag: str) -> None:  # noqa: B027 - optional hook
        """Stop the in-flight item now; `poll` then reports it failed with ``code`` and ``diag``.

        Process runners send SIGTERM to the item's process group and SIGKILL after
        ``payload.kill_grace_s``. Never blocks.
        """


def payload_env(context: SlotContext, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a payload: the base environment plus the job's and the slot's facts."""
    env = dict(context.base_env)
    env.update(context.slot_env)
    cores = str(context.cores or context.job.core_count)
    env.update(
        {
            "PANDAID": str(context.job.panda_id),
            "HPCPILOT_PANDAID": str(context.job.panda_id),
            "HPCPILOT_SLOT": context.slot_name,
            "ATHENA_CORE_NUMBER": cores,
            "OMP_NUM_THREADS": cores,
        }
    )
    if extra:
        env.update(extra)
    return env


def payload_command(context: SlotContext, argv: list[str], env: Mapping[str, str]) -> Command:
    """The command that starts a payload: ``argv`` in the job's environment, pinned to the slot's CPUs.

    The payload's own variables (those ``env`` adds to or changes in the base environment) are marked
    to be kept in a container's clean environment. CPU pinning (``taskset``) goes outside the
    environment's wrapper, so the container runtime and everything it starts stay on the slot's CPUs.
    """
    base = context.base_env
    keep = frozenset(k for k, v in env.items() if base.get(k) != v)
    command = context.wrap(Command(tuple(argv), dict(env), str(context.job_dir), keep))
    if context.cpu_list:
        command = command.with_argv(("taskset", "--cpu-list", context.cpu_list, *command.argv))
    return command


def job_argv(job: Job) -> list[str]:
    """The job's command line (``transformation`` + ``jobPars``) as an argv list, no shell.

    Raises
    ------
    PayloadError
        If the job has no transformation or its parameters cannot be split (unbalanced quotes).
    """
    if not job.transformation:
        raise PayloadError(
            "job has no transformation to run",
            code=ErrorCode.SETUP_FAILURE,
            context={"PandaID": job.panda_id, "field": "transformation"},
        )
    try:
        return shlex.split(job.transformation) + shlex.split(job.job_pars)
    except ValueError as exc:
        raise PayloadError(
            f"job command line cannot be split: {exc}",
            code=ErrorCode.SETUP_FAILURE,
            context={"PandaID": job.panda_id, "field": "jobPars"},
        ) from None


def has_range_placeholders(job: Job) -> bool:
    """Whether the job's command holds a per-range placeholder such as ``{eventRangeID}``."""
    text = f"{job.transformation} {job.job_pars}"
    return any("{" + name + "}" in text for name in RANGE_PLACEHOLDERS)


def range_values(item: WorkItem) -> dict[str, str]:
    """The placeholder values of a range item."""
    rng = item.event_range
    assert rng is not None and item.output is not None
    return {
        "eventRangeID": rng.range_id,
        "startEvent": str(rng.start_event),
        "lastEvent": str(rng.last_event),
        "LFN": rng.lfn,
        "PFN": rng.pfn,
        "GUID": rng.guid,
        "scope": rng.scope,
        "outputFile": str(item.output),
    }


def substitute(argv: list[str], values: Mapping[str, str]) -> list[str]:
    """Replace ``{name}`` placeholders in every argument; other braces are left alone."""
    out = []
    for arg in argv:
        filled = arg
        for name, value in values.items():
            filled = filled.replace("{" + name + "}", value)
        out.append(filled)
    return out


def output_file(path: Path) -> OutputFile:
    """Size and adler32 of an existing output file."""
    return OutputFile(str(path), path.stat().st_size, adler32_of_file(path))


def finished_range(item: WorkItem, started: float, cpu_s: float, n_events: int | None) -> RangeResult:
    """The result of a range whose payload succeeded: its output checked and checksummed.

    A missing output makes the attempt FAILED with code 1165 (missing output file).
    """
    rng = item.event_range
    assert rng is not None and item.output is not None
    wall = time.monotonic() - started
    if not item.output.is_file():
        return failed_range(
            item,
            ErrorCode.MISSING_OUTPUT_FILE,
            f"payload succeeded but wrote no output {item.output.name}",
            started,
            cpu_s,
        )
    return RangeResult(
        panda_id=item.job.panda_id,
        range_id=rng.range_id,
        state=RangeState.FINISHED,
        output=output_file(item.output),
        n_events=rng.n_events if n_events is None else n_events,
        wall_s=wall,
        cpu_s=cpu_s,
    )


def failed_range(
    item: WorkItem, code: ErrorCode, diag: str, started: float, cpu_s: float = 0.0
) -> RangeResult:
    """The result of a failed range attempt."""
    rng = item.event_range
    assert rng is not None
    return RangeResult(
        panda_id=item.job.panda_id,
        range_id=rng.range_id,
        state=RangeState.FAILED,
        error_code=code,
        error_diag=diag[-1000:],
        wall_s=time.monotonic() - started,
        cpu_s=cpu_s,
    )


def open_log(path: Path) -> int:
    """Open a payload log file for appending; returns the raw descriptor (the caller closes it).

    The coordinator creates every job's log directory; one it could not create (a full disk at the
    time) is created here.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)
