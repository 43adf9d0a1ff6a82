"""The bound on waiting for event ranges (``eventservice.range_wait_s``, issue 14 part 2).

A source that never sends a range (Harvester's messenger for a ManyToOne worker) used to keep the
job asking until the walltime; now the job fails with 1238 naming the reason, after ``range_wait_s``
or when the end of the allocation comes first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from hpcpilot.comm.base import Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.config.schema import (
    BatchSettings,
    EventServiceSettings,
    NodeSettings,
    PayloadSettings,
    Settings,
)
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.rangewait import RangeWait, WaitOver
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.conftest import journal
from tests.unit.test_harvester_comm import job_dict, make

HINT = "the source feeds no events to this kind of worker"

# --- the pure bookkeeping ------------------------------------------------------------------------


def test_the_wait_counts_from_the_last_moment_the_job_had_work() -> None:
    wait = RangeWait(300.0)
    assert wait.check(1, now=0.0, busy=False, nothing_fits=False) is None
    assert wait.check(1, now=299.0, busy=False, nothing_fits=False) is None
    assert wait.check(1, now=299.5, busy=True, nothing_fits=False) is None  # ranges came: it starts again
    assert wait.check(1, now=400.0, busy=False, nothing_fits=False) is None
    over = wait.check(1, now=599.5, busy=False, nothing_fits=False)
    assert over == WaitOver(1, 300.0, by_walltime=False)
    assert wait.check(1, now=600.0, busy=False, nothing_fits=False) is None  # reported once, then forgotten


def test_the_walltime_ends_the_wait_early_and_zero_means_no_bound_but_it() -> None:
    wait = RangeWait(300.0)
    wait.check(1, now=0.0, busy=False, nothing_fits=False)
    assert wait.check(1, now=100.0, busy=False, nothing_fits=True) == WaitOver(1, 100.0, by_walltime=True)
    unbounded = RangeWait(0.0)
    unbounded.check(2, now=0.0, busy=False, nothing_fits=False)
    assert unbounded.check(2, now=1e6, busy=False, nothing_fits=False) is None
    assert unbounded.check(2, now=2e6, busy=False, nothing_fits=True) == WaitOver(2, 2e6, by_walltime=True)


def test_the_diagnosis_names_the_wait_and_the_reason() -> None:
    assert WaitOver(1, 300.0, False).diag(HINT) == f"no event ranges arrived in 300 s; {HINT}"
    assert WaitOver(1, 42.4, False).diag() == "no event ranges arrived in 42 s"
    assert WaitOver(1, 42.4, True).diag() == (
        "no event ranges arrived in 42 s (the end of the allocation ended the wait)"
    )


# --- through a coordinator and a worker in one process ---------------------------------------------


class Silent(Communicator):
    """One event-service job whose ranges never come (``first`` ranges at most, then none)."""

    def __init__(self, settings: Settings, layout: WorkLayout, first: int = 0) -> None:
        super().__init__(settings, layout)
        self.job = Job(panda_id=9, task_id=1, event_service=True, job_pars="0.01", transformation="sleep")
        self.left = [EventRange(f"1-9-1-{i}-1", i, i) for i in range(1, first + 1)]
        self.asked = 0
        self.reports: list[JobReport] = []
        self.jobs_given = False

    def fetch_jobs(self, n: int) -> JobBatch:
        given, self.jobs_given = self.jobs_given, True
        return JobBatch(() if given else (self.job,), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        self.asked += 1
        taken, self.left = self.left[:n], self.left[n:]
        return RangeBatch(tuple(taken))  # never exhausted: the source just stays silent

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        pass

    def report_job(self, report: JobReport) -> None:
        self.reports.append(report)

    def range_wait_hint(self, job: Job) -> str:
        return HINT


def run(tmp_path: Path, wait_s: float, first: int = 0, end_in_s: float | None = None) -> Silent:
    settings = Settings(
        eventservice=EventServiceSettings(mode="sleep", range_wait_s=wait_s),
        node=NodeSettings(cores=2),
        batch=BatchSettings(exit_margin_s=0.0),
        payload=PayloadSettings(kill_grace_s=0.1),
    )
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Silent(settings, layout, first)
    link = LocalLink()
    jnl = Journal(layout.journal)
    end_time = None if end_in_s is None else time.time() + end_in_s
    coordinator = Coordinator(link.coordinator, settings, layout, comm, jnl, lambda line: None, end_time)
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, SignalFlag())
    jnl.close()
    return comm


@pytest.mark.timeout(60)  # without the bound the job asks for ever
def test_a_job_that_gets_no_range_fails_with_1238_naming_the_reason(tmp_path: Path) -> None:
    comm = run(tmp_path, wait_s=0.3)
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == int(ErrorCode.ES_NO_EVENTS) == 1238
    assert final.error_diag == f"no event ranges arrived in 0 s; {HINT}"
    assert comm.asked > 1  # it did ask, more than once, before giving up
    assert any(r["ev"] == "exhausted" and r["job"] == 9 for r in journal(tmp_path))


def test_the_end_of_the_allocation_ends_the_wait_alike(tmp_path: Path) -> None:
    comm = run(tmp_path, wait_s=3600.0, end_in_s=1.0)
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == 1238
    assert "(the end of the allocation ended the wait)" in final.error_diag and HINT in final.error_diag


@pytest.mark.timeout(60)
def test_a_job_whose_ranges_stop_coming_ends_with_those_it_had(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    comm = run(tmp_path, wait_s=0.3, first=5)
    final = comm.reports[-1]
    assert final.state is JobState.FINISHED and final.error_code is None
    assert final.ranges["finished"] == 5
    assert "no more event ranges arrived" in caplog.text


# --- the Harvester communicator names the reason ------------------------------------------------------


def test_harvester_names_the_many_to_one_limitation_only_for_a_multi_job_worker(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "HPCJobs.json").write_text(json.dumps({"11": job_dict(11)}))
    comm = make(one)
    [job] = comm.fetch_jobs(10).jobs
    assert comm.range_wait_hint(job) == ""  # OneToOne: Harvester feeds it; the reason is not known
    many = tmp_path / "many"
    for pid in (21, 22):
        (many / str(pid)).mkdir(parents=True)
        (many / str(pid) / "HPCJobs.json").write_text(json.dumps({str(pid): job_dict(pid)}))
    (many / "worker_pandaids.json").write_text("[21, 22]")
    comm = make(many)
    jobs = comm.fetch_jobs(10).jobs
    assert len(jobs) == 2
    for job in jobs:
        hint = comm.range_wait_hint(job)
        assert hint.startswith("Harvester does not feed events to ManyToOne workers"), hint
        assert "JobsEventRanges.json" in hint
