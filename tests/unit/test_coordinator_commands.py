"""Workload-manager commands and heartbeats, through a real coordinator and worker in one process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from hpcpilot.comm.base import Command, CommandKind, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.config.schema import EventServiceSettings, NodeSettings, Settings
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.conftest import journal

N_RANGES = 400


class Scripted(Communicator):
    """One event-service job of sleep ranges; a command once ``after`` ranges were reported."""

    def __init__(
        self, settings: Settings, layout: WorkLayout, command: Command | None, after: int, payload_s: float
    ) -> None:
        super().__init__(settings, layout)
        self.heartbeat_s = 0.05
        self.job = Job(
            panda_id=9, task_id=1, event_service=True, job_pars=str(payload_s), transformation="sleep"
        )
        self.started = time.monotonic()
        self.left = [EventRange(f"1-9-1-{i}-1", i, i) for i in range(1, N_RANGES + 1)]
        self.command, self.after = command, after
        self.reported: list[str] = []
        self.reports: list[JobReport] = []
        self.jobs_given = False
        self.given_at: tuple[int, int] | None = None  # (ranges reported, job reports) when it came

    def fetch_jobs(self, n: int) -> JobBatch:
        given, self.jobs_given = self.jobs_given, True
        return JobBatch(() if given else (self.job,), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        taken, self.left = self.left[:n], self.left[n:]
        return RangeBatch(tuple(taken), exhausted=not self.left)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        self.reported += [r.range_id for r in results if r.state is RangeState.FINISHED]

    def report_job(self, report: JobReport) -> None:
        self.reports.append(report)

    def poll(self) -> tuple[Command, ...]:
        due = len(self.reported) >= self.after and time.monotonic() - self.started > 0.3
        if self.command is not None and due:
            command, self.command = self.command, None
            self.given_at = (len(self.reported), len(self.reports))
            return (command,)
        return ()


def run(
    tmp_path: Path, command: Command | None, after: int = 20, payload_s: float = 0.01
) -> tuple[Coordinator, Scripted]:
    settings = Settings(
        eventservice=EventServiceSettings(mode="sleep"),
        node=NodeSettings(cores=2),
    )
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Scripted(settings, layout, command, after, payload_s)
    link = LocalLink()
    jnl = Journal(layout.journal)
    coordinator = Coordinator(link.coordinator, settings, layout, comm, jnl, lambda line: None)
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, SignalFlag())
    jnl.close()
    return coordinator, comm


def test_no_command_runs_everything_with_heartbeats(tmp_path: Path) -> None:
    _, comm = run(tmp_path, None)
    assert len(set(comm.reported)) == N_RANGES
    states = [r.state for r in comm.reports]
    assert states[0] is JobState.STARTING and states[-1] is JobState.FINISHED
    assert JobState.RUNNING in states  # heartbeats every 0.05 s while the job ran


@pytest.mark.parametrize("kind", [CommandKind.SOFTKILL, CommandKind.TOBEKILLED])
def test_job_command_drops_queued_work(tmp_path: Path, kind: CommandKind) -> None:
    _, comm = run(tmp_path, Command(kind, 9, "test"))
    final = comm.reports[-1]
    assert 20 <= len(comm.reported) < N_RANGES
    dropped = [rid for r in journal(tmp_path) if r["ev"] == "dropped" for rid in r["ids"]]
    assert dropped and not set(dropped) & set(comm.reported)
    if kind is CommandKind.SOFTKILL:
        assert final.state is JobState.FINISHED and final.error_code is None
    else:
        assert final.state is JobState.FAILED and final.error_code == 1144
        assert "tobekilled" in final.error_diag


def test_run_tobekilled_drains_and_fails_with_1144(tmp_path: Path) -> None:
    coordinator, comm = run(tmp_path, Command(CommandKind.TOBEKILLED, None, "test"))
    assert comm.reports[-1].state is JobState.FAILED and comm.reports[-1].error_code == 1144
    assert coordinator.summary()["drained_by"] == "KILLED_BY_PANDA"


def test_command_for_unknown_job_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, comm = run(tmp_path, Command(CommandKind.TOBEKILLED, 12345, "test"))
    assert comm.reports[-1].state is JobState.FINISHED
    assert "no such job" in caplog.text


@pytest.mark.parametrize("panda_id", [9, None])
def test_tobekilled_kills_running_payloads(tmp_path: Path, panda_id: int | None) -> None:
    _, comm = run(tmp_path, Command(CommandKind.TOBEKILLED, panda_id, "test"), after=0, payload_s=60)
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == 1144
    assert comm.reported == []  # nothing finished; killed ranges are not reported (the server reassigns)
    failed = [r for r in journal(tmp_path) if r["ev"] == "failed"]
    if panda_id is not None:  # per job: running and queued items fail with 1144 and are dropped
        assert failed and {r["code"] for r in failed} == {1144}
        assert {r["id"] for r in failed} <= {
            i for r in journal(tmp_path) if r["ev"] == "dropped" for i in r["ids"]
        }


@pytest.mark.parametrize("payload_s", [0.01, 60])
def test_abandon_stops_the_job_and_reports_nothing_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, payload_s: float
) -> None:
    """``alreadydone``/``badattemptnr``: the work stops, nothing more goes out, the log says why."""
    caplog.set_level("INFO")
    reason = "the PanDA server has the job done already (alreadydone)"
    after = 20 if payload_s < 1 else 0
    command = Command(CommandKind.ABANDON, 9, "test", reason=reason)
    coordinator, comm = run(tmp_path, command, after=after, payload_s=payload_s)
    assert comm.given_at is not None
    n_ranges, n_reports = comm.given_at
    assert comm.reported[n_ranges:] == []  # no range outcome after the command, not even the killed ones
    assert comm.reports[n_reports:] == []  # no heartbeat, no final report
    assert len(comm.reported) < N_RANGES
    final = [r for r in journal(tmp_path) if r["ev"] == "job"][-1]
    assert final["state"] == "failed" and final["code"] == 1144  # the local record
    assert f"abandoned: {reason}" in caplog.text
    if payload_s > 1:  # the running payloads were killed: the run did not wait for them
        failed = [r for r in journal(tmp_path) if r["ev"] == "failed"]
        assert failed and {r["code"] for r in failed} == {1144}
    assert not coordinator.summary()["drained_by"]  # only the job ended, not the run


def test_abandon_for_the_whole_run_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, comm = run(tmp_path, Command(CommandKind.ABANDON, None, "test"))
    assert comm.reports[-1].state is JobState.FINISHED and len(set(comm.reported)) == N_RANGES
    assert "abandon names no job" in caplog.text
