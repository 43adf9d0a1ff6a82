"""The communicator family: how rank 0 talks to the workload manager.

Only rank 0 ever holds a communicator. Every method returns promptly: a workload manager that answers
later (Harvester polls its directory every few minutes) is asked again on a later call.
Plugins register under the ``hpcpilot.communicators`` entry-point group.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import HpcPilotError
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState


@dataclass(frozen=True, slots=True)
class BadJob:
    """A job definition that could not be parsed: it fails with the error's code, the rest run on.

    Attributes
    ----------
    panda_id
        The job's PandaID if it could be read, else None.
    error
        What is wrong with it (names the source and the field).
    """

    panda_id: int | None
    error: HpcPilotError


@dataclass(frozen=True, slots=True)
class JobBatch:
    """What one request for jobs brought.

    Attributes
    ----------
    jobs
        Jobs ready to run.
    bad
        Definitions that could not be parsed.
    exhausted
        True when no more jobs will ever come.
    """

    jobs: tuple[Job, ...] = ()
    bad: tuple[BadJob, ...] = ()
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class RangeBatch:
    """What one request for event ranges brought.

    Attributes
    ----------
    ranges
        Ranges ready to process (possibly none yet).
    exhausted
        True when the job will get no more ranges.
    errors
        Malformed ranges that were skipped (each names its source and field).
    cut
        Ranges the pilot cuts from the job's event count (`hpcpilot.model.rangecut`), as the span of
        their indices: they come after ``ranges`` and are never made into objects on the way.
    """

    ranges: tuple[EventRange, ...] = ()
    exhausted: bool = False
    errors: tuple[HpcPilotError, ...] = ()
    cut: CutSpan | None = None

    def materialized(self) -> tuple[EventRange, ...]:
        """Every range of the batch as an object, the cut ones included (tests, slow paths)."""
        if self.cut is None:
            return self.ranges
        cut = self.cut
        return self.ranges + tuple(cut.cut.event_range(i) for i in range(cut.start, cut.stop))

    @property
    def count(self) -> int:
        """How many ranges the batch holds, the cut ones included."""
        return len(self.ranges) + (self.cut.stop - self.cut.start if self.cut is not None else 0)


@dataclass(frozen=True, slots=True)
class CutSpan:
    """Ranges ``start`` to ``stop - 1`` of a job's cut (`hpcpilot.model.rangecut.RangeCut`).

    Attributes
    ----------
    cut
        How the job is cut.
    start, stop
        The span of indices.
    """

    cut: RangeCut
    start: int
    stop: int


class CommandKind(enum.Enum):
    """What the workload manager (or an operator) asks of a job or of the whole run."""

    SOFTKILL = "softkill"  # take no new ranges/jobs, let running work finish, end normally
    TOBEKILLED = "tobekilled"  # stop now: the job fails with 1144 (killed by PanDA)
    #: stop now and report nothing more for the job (the server has it done elsewhere, or runs another
    #: attempt: ``alreadydone``, ``badattemptnr``); recorded here as failed with 1144
    ABANDON = "abandon"


@dataclass(frozen=True, slots=True)
class Command:
    """A command received from the workload manager.

    Attributes
    ----------
    kind
        What to do.
    panda_id
        The job it is for, or None for the whole run (every job, and no new ones).
    source
        Where it came from (a file path, a server call), for the log.
    reason
        Why, in words, when the workload manager said (``abandon``: finished elsewhere, a stale attempt).
    """

    kind: CommandKind
    panda_id: int | None = None
    source: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobReport:
    """A job's state as reported to the workload manager (heartbeat or final).

    Attributes
    ----------
    panda_id
        The job.
    state
        Its PanDA job state.
    error_code, error_diag
        ``pilotErrorCode`` / ``pilotErrorDiag`` when it failed.
    exit_code
        The payload's exit code (``transExitCode``) for plain jobs.
    n_events
        Events processed.
    ranges
        Counts of ranges by final state (``finished``, ``fatal``, ...) for event-service jobs.
    outputs
        Output files with ``path``, ``fsize``, ``adler32`` (and ``type``).
    start_time, end_time
        Unix times.
    cpu_s, wall_s
        CPU and wall-clock seconds used.
    core_count
        Cores per payload.
    log
        The job's log tarball (``path``, ``fsize``, ``adler32``) once it exists.
    metrics
        Resource figures where known, under PanDA's names (``maxRSS``, ``totRBYTES``, ...).
    job_metrics
        Further ``name=value`` words (space-separated) for PanDA's ``jobMetrics`` field: metrics of
        user monitor plugins.
    host
        The node the report comes from (rank 0's host).
    """

    panda_id: int
    state: JobState
    error_code: int | None = None
    error_diag: str = ""
    exit_code: int | None = None
    n_events: int = 0
    ranges: dict[str, int] = field(default_factory=dict)
    outputs: tuple[dict[str, object], ...] = ()
    start_time: float = 0.0
    end_time: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    core_count: int = 1
    log: dict[str, object] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    host: str = ""
    job_metrics: str = ""


class Communicator(ABC):
    """Base class of communicator plugins.

    Parameters
    ----------
    settings
        The effective settings.
    layout
        The work directory's layout.

    Attributes
    ----------
    heartbeat_s
        Seconds between two ``running`` reports of every open job (0: none). The coordinator sends
        them; a subclass sets this from its settings.
    """

    heartbeat_s: float = 0.0
    #: Whether `report_ranges` may return before the outcomes are durable (written where the workload
    #: manager reads them, or in a durable outbox); such a communicator tells `delivered` when they are.
    defers_reports: bool = False
    #: Whether a new run in the same work directory is served the same ranges again (the local
    #: communicator cuts them from its files): their journal records then need no flush of their own.
    replays_ranges: bool = False
    #: Whether ``--resume`` takes up a job that the run before ended unfinished with its work intact
    #: (failed by a drain: a signal, the walltime, a full disk; or by a merge that a full disk or a
    #: kill ended). Only where no one else hands the job's work out again (the local communicator): a
    #: workload manager that was told the job failed hands out its ranges again itself.
    resumes_ended_jobs: bool = False
    #: Whether the run exits 0 (not `ExitCode.JOBS_FAILED`) when jobs failed: where a job's failure is
    #: reported in the files the workload manager reads and a failed batch job would be taken for a
    #: broken worker (ARC, the ``act`` communicator: aCT reads the failure from ``heartbeat.json``).
    exits_ok_on_failed_jobs: bool = False

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        self.settings = settings
        self.layout = layout

    @abstractmethod
    def fetch_jobs(self, n: int) -> JobBatch:
        """Ask for up to ``n`` jobs."""

    @abstractmethod
    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        """Ask for up to ``n`` event ranges of ``job``."""

    @abstractmethod
    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Report a batch of range outcomes.

        ``results`` holds every outcome since the last call, including failed attempts that the
        coordinator has queued again: a communicator reports only the finished ones (with their
        outputs) and the ids in ``fatal`` (ranges that used all their attempts), never a failed attempt
        that will be retried here. ``cut`` lists ranges whose payload was killed at the end of the run
        (walltime or a terminating signal): they are reported ``failed``, so that the workload manager
        hands them out again.
        """

    @abstractmethod
    def report_job(self, report: JobReport) -> None:
        """Report a job's state (heartbeat, or final when the state is final)."""

    @classmethod  # noqa: B027 - optional hook
    def check_settings(cls, settings: Settings) -> None:
        """Check the settings this communicator needs, on rank 0 before the run starts.

        Raises
        ------
        ConfigError
            Naming the setting: the run then ends at once with exit code 2, before any rank works.
        """

    def poll(self) -> tuple[Command, ...]:
        """Do periodic work (heartbeat files, delayed writes, replies) and return commands received.

        Called on every step of the coordinator's loop: it must return in microseconds when there is
        nothing to do (rate-limit any file-system or network look-ups).
        """
        return ()

    def delivered(self) -> list[tuple[int, list[str]]]:
        """(PandaID, range ids) whose reports became durable since the last call (`defers_reports`).

        A communicator that does not defer its reports returns nothing: its reports are durable when
        `report_ranges` returns.
        """
        return []

    def adopt(self, job: Job, exhausted: bool = False) -> JobState | None:
        """Take charge of a job a resumed run restored from its journal, without fetching it this time.

        From then on the communicator asks for the job's ranges (unless ``exhausted``: the workload
        manager said it has no more) and accepts its reports as for a job it fetched itself. Called
        before the run's first `fetch_jobs`.

        Returns
        -------
        JobState or None
            The final state the workload manager already has for the job, when the killed run
            reported it just before the kill (before its journal recorded that): the job is then done
            and not taken up. None when the job is not known to be final there.
        """
        return None

    def adopt_done(self, panda_ids: Collection[int]) -> None:  # noqa: B027 - optional hook
        """Learn the jobs the runs before a resumed one ended: fetched then, never taken up again.

        Called before the run's first `fetch_jobs`, with the PandaIDs the journal holds a final state
        for. A communicator that reads its jobs once (Harvester's job spec file, consumed by the run
        that read it) counts them as read, so that a resumed run whose jobs all ended before the kill
        ends too, instead of waiting for jobs that will not come.
        """

    def ranges_expected(self, job: Job) -> int | None:
        """How many ranges an event-service job gets in all, when that is known beforehand.

        None (the default) when only the workload manager knows; the run's totals then count the
        ranges received.
        """
        return None

    def range_wait_hint(self, job: Job) -> str:
        """Why ``job`` may get no event ranges from this workload manager, when that is known.

        Named in the diagnosis of a job that waited ``eventservice.range_wait_s`` for ranges and got
        none (1238); empty (the default) when the communicator knows no reason.
        """
        return ""

    def set_slots(self, slots: int) -> None:  # noqa: B027 - optional hook
        """Learn how many payload slots the run has (called whenever it changes): sizes requests."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release whatever the communicator holds; called once at the end."""
