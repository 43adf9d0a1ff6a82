"""What a killed run left behind: its journal read back into the state `hpcpilot run --resume` restores.

Pure: journal records in, a `ResumeState` out. A job is *done* once a final state (``finished`` or
``failed``) was journaled for it, unless that state is marked ``resumable`` (the run ended the job
early with its work intact where no one else hands that work out again: a drain by a full disk, a
signal or the walltime; a merge that a full disk or a kill ended); every other job whose definition
the journal holds is *open*, and for each of its ranges the journal tells whether it finished (and
whether that was reported), became fatal, or how many attempts failed (a failure for lack of disk
space, 1098, is not an attempt). A job journaled without its definition (a journal from before
resume existed) cannot be resumed and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpcpilot.model.errors import ErrorCode, HpcPilotError
from hpcpilot.model.job import Job, job_from_record
from hpcpilot.model.ranges import EventRange, parse_range, ranges_from_columns
from hpcpilot.runtime.records import (
    EndRecord,
    ExhaustedRecord,
    FailedRecord,
    FatalRecord,
    FinishedRecord,
    JobRecord,
    RangesRecord,
    Record,
    ReportedRecord,
    RunRecord,
    parse_records,
)

_FINAL_STATES = frozenset({"finished", "failed"})


@dataclass(frozen=True, slots=True)
class FinishedRange:
    """A range the journal saw finish, with its output as journaled.

    Attributes
    ----------
    range_id
        The range.
    path, fsize, adler32
        Its output file (None each when it wrote none).
    nevents
        Events it processed.
    reported
        Whether the workload manager was told (a ``reported`` record follows).
    """

    range_id: str
    path: str | None
    fsize: int | None
    adler32: str | None
    nevents: int
    reported: bool


@dataclass(frozen=True, slots=True)
class OpenJob:
    """A job the killed run had not finished.

    Attributes
    ----------
    job
        Its definition.
    ranges
        Every range received, in the order received.
    finished
        Ranges that finished, by id.
    fatal
        Ranges that used all their attempts (id -> reported or not).
    failed
        Failed attempts per range id.
    exhausted
        Whether its range source had no more ranges.
    ended_early
        Whether a run ended it early with a final state a resumed run may take back (a full disk
        with the local communicator: the ``job`` record says ``"resumable": true``).
    """

    job: Job
    ranges: tuple[EventRange, ...] = ()
    finished: Mapping[str, FinishedRange] = field(default_factory=dict)
    fatal: Mapping[str, bool] = field(default_factory=dict)
    failed: Mapping[str, int] = field(default_factory=dict)
    exhausted: bool = False
    ended_early: bool = False


@dataclass(frozen=True, slots=True)
class DoneJob:
    """A job that has its final state: what the journal says of it (for the summary).

    Attributes
    ----------
    panda_id
        The job.
    state, code
        Its last final state and error code (0: none).
    event_service
        Whether it is an event-service job (None: its definition was not journaled).
    ranges, finished, fatal, failed_attempts, n_events
        Its ranges as journaled: received, finished, fatal, failed attempts; events of finished ones.
    """

    panda_id: int
    state: str
    code: int
    event_service: bool | None = None
    ranges: int = 0
    finished: int = 0
    fatal: int = 0
    failed_attempts: int = 0
    n_events: int = 0


@dataclass(frozen=True, slots=True)
class ResumeState:
    """Everything a resumed run restores.

    Attributes
    ----------
    done
        PandaIDs of jobs with a final state: never run again.
    open
        Jobs to take up again, in the order they first appeared.
    runs
        How many runs wrote to the journal before.
    clean_end
        Whether the last of them ended cleanly (an ``end`` record).
    problems
        Job records that could not be read back (each names the job and the field): those jobs are
        not taken up from the journal.
    finals
        What the journal says of each job in ``done``.
    """

    done: frozenset[int]
    open: tuple[OpenJob, ...]
    runs: int = 0
    clean_end: bool = False
    problems: tuple[str, ...] = ()
    finals: tuple[DoneJob, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether there is nothing to restore."""
        return not self.done and not self.open


class _JobTrail:
    """Mutable collector of one job's records while reading."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.ranges: dict[str, EventRange] = {}
        self.finished: dict[str, FinishedRange] = {}
        self.fatal: dict[str, bool] = {}
        self.failed: dict[str, int] = {}
        self.reported: set[str] = set()
        self.exhausted = False
        self.ended_early = False

    def freeze(self) -> OpenJob:
        finished = {
            rid: FinishedRange(f.range_id, f.path, f.fsize, f.adler32, f.nevents, rid in self.reported)
            for rid, f in self.finished.items()
        }
        fatal = {rid: rid in self.reported for rid in self.fatal}
        return OpenJob(
            self.job,
            tuple(self.ranges.values()),
            finished,
            fatal,
            dict(self.failed),
            self.exhausted,
            self.ended_early,
        )


def resume_state(records: Iterable[Mapping[str, Any] | Record]) -> ResumeState:
    """Read journal records (in order) into what a resumed run restores.

    ``records`` are typed (`hpcpilot.runtime.records.read_records`) or raw dicts, read through the
    same classes: a raw one that is not a record this pilot writes is skipped and named in
    ``problems``.
    """
    trails: dict[int, _JobTrail] = {}
    done: set[int] = set()
    last: dict[int, JobRecord] = {}  # each job's last final record
    problems: list[str] = []
    runs, clean = 0, False
    for record in parse_records(records, problems):
        if isinstance(record, RunRecord):
            runs, clean = runs + 1, False
        elif isinstance(record, EndRecord):
            clean = True
        elif isinstance(record, JobRecord):
            _on_job(record, trails, done, problems)
            if record.state in _FINAL_STATES:
                last[record.job] = record
        else:
            trail = trails.get(getattr(record, "job", -1))
            if trail is not None:
                _on_range_record(record, trail)
    open_jobs = tuple(t.freeze() for pid, t in trails.items() if pid not in done)
    finals = tuple(_done_job(pid, last[pid], trails.get(pid)) for pid in sorted(done) if pid in last)
    return ResumeState(frozenset(done), open_jobs, runs, clean, tuple(problems), finals)


def _done_job(panda_id: int, final: JobRecord, trail: _JobTrail | None) -> DoneJob:
    code = final.code or 0
    state = final.state
    if trail is None:
        return DoneJob(panda_id, state, code)
    n_events = sum(f.nevents for f in trail.finished.values())
    return DoneJob(
        panda_id,
        state,
        code,
        trail.job.event_service,
        len(trail.ranges),
        len(trail.finished),
        len(trail.fatal),
        sum(trail.failed.values()),
        n_events,
    )


def _on_job(record: JobRecord, trails: dict[int, _JobTrail], done: set[int], problems: list[str]) -> None:
    panda_id = record.job
    if record.state in _FINAL_STATES:
        trail = trails.get(panda_id)
        if record.resumable and trail is not None:
            trail.ended_early = True  # the run ended it early, with its work intact: not done
            return
        done.add(panda_id)
        return
    if record.definition is not None and panda_id not in trails:
        try:
            trails[panda_id] = _JobTrail(job_from_record(record.definition))
        except HpcPilotError as exc:
            problems.append(f"job {panda_id}: its journaled definition cannot be read: {exc}")


def _on_range_record(record: Record, trail: _JobTrail) -> None:
    if isinstance(record, RangesRecord):
        for raw in ranges_from_columns(record.columns()):
            try:
                rng = parse_range(raw, source="journal")
            except HpcPilotError:
                continue
            trail.ranges.setdefault(rng.range_id, rng)
    elif isinstance(record, FinishedRecord):
        if record.paths is None:
            return  # it does not say where the outputs are: the ranges run again
        columns = zip(record.ids, record.paths, record.fsize, record.adler32, record.nevents, strict=True)
        for rid, path, fsize, adler, nevents in columns:
            trail.finished[rid] = FinishedRange(rid, path, fsize, adler, nevents, False)
    elif isinstance(record, FailedRecord):
        if record.code != ErrorCode.NO_LOCAL_SPACE:  # 1098: no attempt
            trail.failed[record.id] = trail.failed.get(record.id, 0) + 1
    elif isinstance(record, FatalRecord):
        trail.fatal[record.id] = False
    elif isinstance(record, ReportedRecord):
        trail.reported.update(record.ids)
    elif isinstance(record, ExhaustedRecord):
        trail.exhausted = True
