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


def resume_state(records: Iterable[Mapping[str, Any]]) -> ResumeState:
    """Read journal records (in order) into what a resumed run restores."""
    trails: dict[int, _JobTrail] = {}
    done: set[int] = set()
    last: dict[int, Mapping[str, Any]] = {}  # each job's last final record
    problems: list[str] = []
    runs, clean = 0, False
    for record in records:
        event = record.get("ev")
        if event == "run":
            runs, clean = runs + 1, False
        elif event == "end":
            clean = True
        elif event == "job":
            _on_job(record, trails, done, problems)
            if record.get("state") in _FINAL_STATES and isinstance(record.get("job"), int):
                last[record["job"]] = record
        else:
            trail = trails.get(record.get("job", -1))
            if trail is not None:
                _on_range_record(event, record, trail)
    open_jobs = tuple(t.freeze() for pid, t in trails.items() if pid not in done)
    finals = tuple(_done_job(pid, last[pid], trails.get(pid)) for pid in sorted(done) if pid in last)
    return ResumeState(frozenset(done), open_jobs, runs, clean, tuple(problems), finals)


def _done_job(panda_id: int, final: Mapping[str, Any], trail: _JobTrail | None) -> DoneJob:
    code = final.get("code")
    code = code if isinstance(code, int) else 0
    state = str(final.get("state"))
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


def _on_job(
    record: Mapping[str, Any], trails: dict[int, _JobTrail], done: set[int], problems: list[str]
) -> None:
    panda_id = record.get("job")
    if not isinstance(panda_id, int):
        return
    if record.get("state") in _FINAL_STATES:
        trail = trails.get(panda_id)
        if record.get("resumable") is True and trail is not None:
            trail.ended_early = True  # the run ended it early, with its work intact: not done
            return
        done.add(panda_id)
        return
    definition = record.get("def")
    if isinstance(definition, dict) and panda_id not in trails:
        try:
            trails[panda_id] = _JobTrail(job_from_record(definition))
        except HpcPilotError as exc:
            problems.append(f"job {panda_id}: its journaled definition cannot be read: {exc}")


def _on_range_record(event: object, record: Mapping[str, Any], trail: _JobTrail) -> None:
    if event == "ranges":
        for raw in journaled_ranges(record):
            try:
                rng = parse_range(raw, source="journal")
            except HpcPilotError:
                continue
            trail.ranges.setdefault(rng.range_id, rng)
    elif event == "finished":
        names = ("ids", "paths", "fsize", "adler32", "nevents")
        try:
            columns = zip(*(record[name] for name in names), strict=True)
            for rid, path, fsize, adler, nevents in columns:
                trail.finished[rid] = FinishedRange(rid, path, fsize, adler, int(nevents or 0), False)
        except (KeyError, TypeError, ValueError):
            return  # not a record this pilot wrote
    elif event == "failed":
        rid = record.get("id")
        if isinstance(rid, str) and record.get("code") != ErrorCode.NO_LOCAL_SPACE:  # 1098: no attempt
            trail.failed[rid] = trail.failed.get(rid, 0) + 1
    elif event == "fatal":
        rid = record.get("id")
        if isinstance(rid, str):
            trail.fatal[rid] = False
    elif event == "reported":
        trail.reported.update(record.get("ids", ()))
    elif event == "exhausted":
        trail.exhausted = True


def journaled_ranges(record: Mapping[str, Any]) -> list[Any]:
    """The range wire dicts of a journal ``ranges`` record: columns (`range_columns`), or a list.

    A record of neither shape gives none (it is not one this pilot wrote).
    """
    if "ids" in record:
        try:
            return list(ranges_from_columns(record))
        except ValueError:
            return []
    listed = record.get("ranges", ())
    return list(listed) if isinstance(listed, list) else []
