"""What a run's journal says: ranges, jobs, workers, failures, liveness. Pure: records in, a view out.

``hpcpilot status`` and ``hpcpilot report`` read the journal (`hpcpilot.runtime.journal`) and fold
its records here. Every record kind is optional: a run from before the ``run`` / ``worker`` /
``ranges`` / ``end`` records existed, or one still going, gives a view with what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.rates import RATE_WINDOW_S, ranges_per_s
from hpcpilot.runtime.records import (
    AssignedRecord,
    CollectedRecord,
    EndRecord,
    FailedRecord,
    FatalRecord,
    FinishedRecord,
    JobRecord,
    RangesRecord,
    Record,
    RecordError,
    RunRecord,
    WorkerRecord,
    parse_record,
)

log = logging.getLogger(__name__)

__all__ = [
    "LIVENESS_STATES",
    "RATE_WINDOW_S",
    "STALE_S",
    "FailureView",
    "JobView",
    "Liveness",
    "RunView",
    "WorkerView",
]

#: A journal this many seconds old, with no ``end`` and no process to check, counts as stale.
STALE_S = 600.0


@dataclass
class JobView:
    """One job as the journal tells it."""

    panda_id: int
    state: str = "starting"
    code: int = 0
    total: int = 0
    finished: int = 0
    fatal: int = 0
    failed_attempts: int = 0
    n_events: int = 0
    bytes_out: int = 0
    event_service: bool = True


@dataclass
class WorkerView:
    """One worker rank as the journal tells it (its ``worker`` record gives host, cores and GPUs)."""

    rank: int
    host: str = ""
    cores: int = 0
    gpus: int = 0
    gpu_vendor: str = ""
    gpu_source: str = ""
    peers: int = 1
    assigned: int = 0
    finished: int = 0
    failures: int = 0
    first_t: float = 0.0
    last_t: float = 0.0


@dataclass(frozen=True, slots=True)
class FailureView:
    """Failed range attempts of one error code.

    Attributes
    ----------
    code
        The PanDA error code.
    count
        Failed attempts with this code.
    example
        The latest diagnosis of one of them.
    """

    code: int
    count: int
    example: str


@dataclass
class RunView:
    """A run as its journal tells it.

    Attributes
    ----------
    jobs, workers
        By PandaID and by rank.
    failures
        Failed attempts by error code, most frequent first (see `RunView.failure_table`).
    finished_times
        ``(t, n)``: ``n`` ranges finished at time ``t``. A journal record gathers the ranges that
        finished between its ``t`` and ``t_end``: they are spread evenly over that span.
    fatal_times
        When each range failed for good.
    first_t, last_t
        Times of the first and last records.
    end_t
        Time of the ``end`` record that closes the journal (None while there is none).
    run
        The latest ``run`` record (host, pid, ranks, resume), if any.
    ended
        Whether an ``end`` record closes the journal.
    drained_by
        What the ``end`` record says drained the run.
    records
        Records read.
    """

    jobs: dict[int, JobView] = field(default_factory=dict)
    workers: dict[int, WorkerView] = field(default_factory=dict)
    finished_times: list[tuple[float, int]] = field(default_factory=list)
    fatal_times: list[float] = field(default_factory=list)
    first_t: float = 0.0
    last_t: float = 0.0
    end_t: float | None = None
    run: RunRecord | None = None
    ended: bool = False
    drained_by: str | None = None
    records: int = 0
    _failures: dict[int, list[Any]] = field(default_factory=dict)
    _where: dict[str, int] = field(default_factory=dict)
    _ids: dict[int, set[str]] = field(default_factory=dict)
    _done: dict[int, set[str]] = field(default_factory=dict)

    # --- totals -------------------------------------------------------------------------------

    @property
    def ranges_total(self) -> int:
        """Ranges known (received, or at least seen)."""
        return sum(j.total for j in self.jobs.values())

    @property
    def ranges_finished(self) -> int:
        """Ranges finished."""
        return sum(j.finished for j in self.jobs.values())

    @property
    def ranges_fatal(self) -> int:
        """Ranges failed for good."""
        return sum(j.fatal for j in self.jobs.values())

    @property
    def failed_attempts(self) -> int:
        """Failed attempts (retried or not)."""
        return sum(j.failed_attempts for j in self.jobs.values())

    def failure_table(self) -> list[FailureView]:
        """Failed attempts by code, the most frequent first, each with its latest diagnosis."""
        rows = [FailureView(code, count, diag) for code, (count, diag) in self._failures.items()]
        return sorted(rows, key=lambda f: (-f.count, f.code))

    @property
    def run_t(self) -> float:
        """When the latest run started: its ``run`` record, else the journal's first record."""
        return self.run.t if self.run is not None else self.first_t

    def rate(self, window_s: float = RATE_WINDOW_S) -> float:
        """Ranges final (finished or fatal) per second, by the rule of `hpcpilot.model.rates`.

        An ended run: over the whole of its latest run, from `run_t` to its ``end`` record (what the
        summary says). A run going on: over the journal's last ``window_s`` seconds, not before
        `run_t`.
        """
        start = self.run_t
        if self.ended and self.end_t is not None:
            end = self.end_t
        else:
            end = self.last_t
            start = max(start, end - window_s)
        times = [t for t, n in self.finished_times for _ in range(n)] + self.fatal_times
        return ranges_per_s(sum(1 for t in times if start <= t <= end), end - start)

    def eta_s(self) -> float | None:
        """Seconds until the known ranges are done at the current rate (None: unknown)."""
        left = self.ranges_total - self.ranges_finished - self.ranges_fatal
        rate = self.rate()
        if left <= 0 or rate <= 0 or self.ended:
            return None
        return left / rate

    # --- folding ------------------------------------------------------------------------------

    def add(self, record: Mapping[str, Any] | Record) -> None:
        """Fold one journal record (typed, or a raw dict read through `parse_record`).

        A raw record that is not one this pilot writes is skipped with a warning naming the field.
        """
        try:
            typed = parse_record(record, f"record {self.records + 1}")
        except RecordError as exc:
            log.warning("skipped a journal record: %s", exc)
            return
        t = typed.t
        self.records += 1
        self.first_t = t if not self.first_t else min(self.first_t, t)
        self.last_t = max(self.last_t, typed.t_end if isinstance(typed, CollectedRecord) else t)
        handler = _HANDLERS.get(type(typed))
        if handler is not None:
            handler(self, typed)

    def _job(self, panda_id: int) -> JobView:
        job = self.jobs.get(panda_id)
        if job is None:
            job = self.jobs[panda_id] = JobView(panda_id)
            self._ids[panda_id] = set()
        return job

    def _worker(self, rank: int) -> WorkerView:
        return self.workers.setdefault(rank, WorkerView(rank))

    def _see(self, job: JobView, ids: Iterable[str]) -> None:
        """Count ranges that appear without a ``ranges`` record (an older journal)."""
        known = self._ids[job.panda_id]
        before = len(known)
        known.update(ids)
        job.total += len(known) - before

    def _on_run(self, r: Any) -> None:
        self.run = r
        self.ended = False
        self.end_t = None

    def _on_worker(self, r: WorkerRecord) -> None:
        w = self._worker(r.rank)
        w.host, w.cores, w.gpus, w.peers = r.host, r.cores, r.gpus, r.peers
        w.gpu_vendor, w.gpu_source = r.gpu_vendor, r.gpu_source

    def _on_job(self, r: JobRecord) -> None:
        job = self._job(r.job)
        job.state = r.state
        job.code = r.code or 0
        if r.event_service is not None:  # the definition's, by the rule of `JobRecord.event_service`
            job.event_service = r.event_service

    def _on_ranges(self, r: RangesRecord) -> None:
        self._see(self._job(r.job), r.ids)

    def _on_assigned(self, r: AssignedRecord) -> None:
        job, rank, ids = self._job(r.job), r.rank, r.ids
        if not ids:  # a plain job handed out
            job.event_service = False
        self._see(job, ids)
        if job.state == "starting":  # the journal records a job's start and end, not its running
            job.state = "running"
        w = self._worker(rank)
        w.assigned += len(ids) or 1
        w.first_t = w.first_t or r.t
        w.last_t = max(w.last_t, r.t_end)
        for rid in ids:
            self._where[rid] = rank

    def _on_finished(self, r: FinishedRecord) -> None:
        job, ids = self._job(r.job), r.ids
        self._see(job, ids)
        done = self._done.setdefault(job.panda_id, set())
        start, end = r.t, r.t_end
        w = self._worker(r.rank)
        w.last_t = max(w.last_t, end)
        for k, rid in enumerate(ids):
            if rid in done:  # journalled again (a resumed run): counted once
                continue
            done.add(rid)
            job.finished += 1
            w.finished += 1
            job.n_events += r.nevents[k]
            job.bytes_out += r.fsize[k] or 0
            self.finished_times.append((start + (end - start) * (k + 1) / len(ids), 1))

    def _on_failed(self, r: FailedRecord) -> None:
        job = self._job(r.job)
        self._see(job, [r.id])
        code = r.code or 0
        if code != ErrorCode.NO_LOCAL_SPACE:  # a failure for lack of space is no attempt
            job.failed_attempts += 1
        entry = self._failures.setdefault(code, [0, ""])
        entry[0] += 1
        entry[1] = r.diag or entry[1]
        rank = self._where.get(r.id)
        if rank is not None:
            self._worker(rank).failures += 1

    def _on_fatal(self, r: FatalRecord) -> None:
        job = self._job(r.job)
        done = self._done.setdefault(job.panda_id, set())
        if r.id not in done:
            done.add(r.id)
            job.fatal += 1
            self.fatal_times.append(r.t)

    def _on_end(self, r: EndRecord) -> None:
        self.ended = True
        self.end_t = r.t
        self.drained_by = r.drained_by or None


_HANDLERS: dict[type[Record], Callable[[RunView, Any], None]] = {
    RunRecord: RunView._on_run,
    WorkerRecord: RunView._on_worker,
    JobRecord: RunView._on_job,
    RangesRecord: RunView._on_ranges,
    AssignedRecord: RunView._on_assigned,
    FinishedRecord: RunView._on_finished,
    FailedRecord: RunView._on_failed,
    FatalRecord: RunView._on_fatal,
    EndRecord: RunView._on_end,
}


def run_view(records: Iterable[Mapping[str, Any] | Record]) -> RunView:
    """Fold a journal's records into a view."""
    view = RunView()
    for record in records:
        view.add(record)
    return view


#: The states `liveness` tells.
LIVENESS_STATES = ("ended", "running", "dead", "active", "stale", "unknown")


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether a run looks alive.

    Attributes
    ----------
    state
        ``ended`` (an ``end`` record), ``running`` (its process is alive on this host), ``dead`` (its
        process is gone, no ``end``: killed), ``active`` (another host; the journal is recent),
        ``stale`` (another host; nothing written for a long time), ``unknown`` (no journal).
    why
        A few words of explanation.
    """

    state: str
    why: str


def liveness(
    view: RunView,
    now: float,
    this_host: str,
    pid_alive: bool | None,
    stale_s: float = STALE_S,
    summary_t: float | None = None,
    series_t: float | None = None,
) -> Liveness:
    """Judge whether the run goes on.

    Parameters
    ----------
    view
        The journal's view.
    now
        The current Unix time.
    this_host
        This machine's host name.
    pid_alive
        Whether the ``run`` record's pid is alive here (None when not checked).
    stale_s
        Journal age beyond which a run on another host counts as stale.
    summary_t
        When ``summary.json`` was written (None: it does not exist). A summary written after the
        journal's last record also means the run ended (a journal without ``end`` records).
    series_t
        When the time series (``monitor.h5``) was last written (None: no file). Rank 0 appends to it
        every ``monitor.write_interval_s`` while workers sample, also when no range ends for long.
    """
    if not view.records:
        return Liveness("unknown", "no journal yet")
    if view.ended:
        return Liveness("ended", "the journal's last record is the end of the run")
    if summary_t is not None and summary_t >= view.last_t and view.run is None:
        return Liveness("ended", "summary.json was written after the journal's last record")
    age = now - max(view.last_t, series_t or 0.0)
    host, pid = (view.run.host, view.run.pid or None) if view.run is not None else ("", None)
    if host and pid is not None and _same_host(host, this_host) and pid_alive is not None:
        if pid_alive:
            return Liveness("running", f"process {pid} on {host} is alive")
        return Liveness("dead", f"process {pid} on {host} is gone and the journal has no end")
    if age <= stale_s:
        where = f" on {host}" if host else ""
        return Liveness("active", f"the journal or monitor file was written {age:.0f} s ago{where}")
    return Liveness("stale", f"nothing written for {age:.0f} s and no end record")


def _same_host(a: str, b: str) -> bool:
    return a.partition(".")[0] == b.partition(".")[0]
