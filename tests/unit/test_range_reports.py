"""Range outcomes on their way to the workload manager (`RangeReports`), with fakes around it."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcpilot.comm.base import Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import CommunicatorError, ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.parallel.reports import RangeReports
from hpcpilot.runtime.records import ReportedRecord

JOBS = {p: Job(panda_id=p, task_id=1, event_service=True) for p in (9, 10)}


class Manager(Communicator):
    """Records each range report; raises what ``errors`` holds for a job, once each."""

    def __init__(self, events: list[str], defers: bool = False) -> None:
        super().__init__(Settings(), WorkLayout(Path("unused")))
        self.defers_reports = defers
        self.events = events
        self.sent: list[tuple[int, list[str], list[str], list[str]]] = []
        self.errors: dict[int, list[BaseException]] = {}
        self.durable: list[tuple[int, list[str]]] = []

    def fetch_jobs(self, n: int) -> JobBatch:
        return JobBatch((), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        return RangeBatch((), exhausted=True)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        self.events.append(f"report {job.panda_id}")
        errors = self.errors.get(job.panda_id)
        if errors:
            raise errors.pop(0)
        self.sent.append((job.panda_id, [r.range_id for r in results], list(fatal), list(cut)))

    def report_job(self, report: JobReport) -> None:
        return None

    def delivered(self) -> list[tuple[int, list[str]]]:
        durable, self.durable = self.durable, []
        return durable


class Harness:
    """A `RangeReports` with a fake journal (records, a flush that can fail) and a fake disk."""

    def __init__(self, defers: bool = False) -> None:
        self.events: list[str] = []
        self.comm = Manager(self.events, defers)
        self.records: list[ReportedRecord] = []
        self.journal_ok = True
        self.full: list[str] = []
        self.abandoned: set[int] = set()
        self.reports = RangeReports(
            self.comm, JOBS.__getitem__, self.records.append, self.sync, self.on_full, self.abandoned
        )

    def sync(self) -> bool:
        self.events.append("sync" if self.journal_ok else "sync failed")
        return self.journal_ok

    def on_full(self, exc: BaseException, what: str) -> bool:
        if not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            return False
        self.full.append(what)
        return True

    def reported(self) -> list[tuple[int, tuple[str, ...]]]:
        return [(r.job, r.ids) for r in self.records]


def done(panda_id: int, n: int) -> RangeResult:
    output = OutputFile(f"/out/{panda_id}-{n}", 10, "0000abcd")
    return RangeResult(panda_id, f"{panda_id}-{n}", RangeState.FINISHED, output, n_events=1)


def failed(panda_id: int, n: int) -> RangeResult:
    return RangeResult(panda_id, f"{panda_id}-{n}", RangeState.FAILED, error_code=ErrorCode.GENERAL_ERROR)


def test_outcomes_are_reported_after_the_journal_flush_and_then_journaled_as_reported() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.reports.add(failed(9, 2))  # an attempt queued again: reported to the communicator, not journaled
    h.reports.add_fatal(9, "9-3")
    h.reports.add_cut(9, "9-4")
    h.reports.add(done(10, 1))
    assert h.reports.pending == 3
    assert h.reports.flush_all()
    assert h.events == ["sync", "report 9", "report 10"]
    assert h.comm.sent == [(9, ["9-1", "9-2"], ["9-3"], ["9-4"]), (10, ["10-1"], [], [])]
    assert h.reported() == [(9, ("9-1", "9-3")), (10, ("10-1",))]
    assert h.reports.pending == 0
    assert h.reports.flush_all()  # nothing more to report
    assert h.comm.sent[2:] == []


def test_a_failed_report_is_kept_for_later_ahead_of_newer_outcomes() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.reports.add_fatal(9, "9-2")
    h.reports.add_cut(9, "9-3")
    h.comm.errors[9] = [CommunicatorError("server said no")]
    assert h.reports.flush(9)  # not a full disk: the run goes on
    assert h.comm.sent == [] and h.records == []
    assert h.reports.pending == 1
    h.reports.add(done(9, 4))
    h.reports.add_fatal(9, "9-5")
    h.reports.add_cut(9, "9-6")
    assert h.reports.flush(9)
    assert h.comm.sent == [(9, ["9-1", "9-4"], ["9-2", "9-5"], ["9-3", "9-6"])]
    assert h.reported() == [(9, ("9-1", "9-4", "9-2", "9-5"))]


def test_nothing_is_reported_when_the_journal_flush_fails() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.reports.add_fatal(10, "10-1")
    h.journal_ok = False
    assert not h.reports.flush(9)
    assert not h.reports.flush(10)
    assert not h.reports.flush_all()
    assert "report 9" not in h.events and "report 10" not in h.events
    assert h.comm.sent == [] and h.records == []
    assert h.reports.pending == 1
    h.journal_ok = True
    assert h.reports.flush_all()  # what was kept back goes now (job 10 too: kept back like job 9)
    assert h.comm.sent == [(9, ["9-1"], [], []), (10, [], ["10-1"], [])]


def test_an_abandoned_job_is_never_reported() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.reports.add_fatal(9, "9-2")
    h.reports.add(done(10, 1))
    h.abandoned.add(9)  # the coordinator's set, read by the reports
    assert h.reports.flush_all()
    assert h.reports.flush(9)
    assert h.comm.sent == [(10, ["10-1"], [], [])]
    assert h.reported() == [(10, ("10-1",))]
    assert h.reports.pending == 0  # dropped: nothing more about the job goes out


def test_a_deferring_communicator_is_journaled_only_for_what_it_delivered() -> None:
    h = Harness(defers=True)
    h.reports.add(done(9, 1))
    h.reports.add_fatal(9, "9-2")
    assert h.reports.flush(9)
    assert h.comm.sent == [(9, ["9-1"], ["9-2"], [])]
    assert h.records == []  # handed over, not durable yet
    assert not h.reports.journal_delivered_now()
    h.events.clear()
    h.comm.durable = [(9, ["9-1", "9-2"])]
    assert h.reports.journal_delivered_now()
    assert h.reported() == [(9, ("9-1", "9-2"))]
    assert h.events == ["sync"]  # journaled and flushed at once
    h.comm.durable = [(9, ["9-7"])]
    assert h.reports.journal_delivered()
    assert h.reported()[-1] == (9, ("9-7",))


def test_a_full_disk_answers_false_and_keeps_the_outcomes() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.reports.add_cut(9, "9-2")
    h.reports.add(done(10, 1))
    h.comm.errors[9] = [OSError(errno.ENOSPC, "No space left on device")]
    assert not h.reports.flush_all()
    assert h.full == ["the range report of job 9"]
    assert h.comm.sent == [(10, ["10-1"], [], [])]  # the other job was reported all the same
    assert h.reported() == [(10, ("10-1",))]
    assert h.reports.pending == 1
    h.reports.add(done(9, 3))
    assert h.reports.flush_all()
    assert h.comm.sent[-1] == (9, ["9-1", "9-3"], [], ["9-2"])


def test_an_error_that_is_not_a_full_disk_is_raised() -> None:
    h = Harness()
    h.reports.add(done(9, 1))
    h.comm.errors[9] = [PermissionError(errno.EACCES, "Permission denied")]
    with pytest.raises(PermissionError):
        h.reports.flush(9)
    assert h.full == [] and h.records == []
