"""A job's phase, state and failure: `JobBook`'s transitions and the rule for which error code wins."""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

import hpcpilot.parallel
from hpcpilot.comm.base import Command, CommandKind, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.config.schema import EventServiceSettings, NodeSettings, Settings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobBook, JobPhase, JobTransitionError
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import NodeInfo, WorkerUpdate
from hpcpilot.parallel.resume import resume_state
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.runtime.journal import Journal
from tests.conftest import journal

ES_JOB = Job(panda_id=9, task_id=1, event_service=True, job_pars="60", transformation="sleep")
PLAIN_JOB = Job(panda_id=9, task_id=1, job_pars="60", transformation="sleep")


# --- the transitions ----------------------------------------------------------------------------


def test_an_event_service_job_goes_through_its_phases() -> None:
    book = JobBook(ES_JOB)
    assert (book.phase, book.state) == (JobPhase.STAGING_IN, JobState.STARTING)
    book.release()
    assert (book.phase, book.state) == (JobPhase.RUNNING, JobState.STARTING)
    book.mark_running()
    book.mark_running()  # again: nothing changes
    assert book.state is JobState.RUNNING
    book.start_merge()
    assert (book.phase, book.state) == (JobPhase.MERGING, JobState.RUNNING)
    assert book.conclude() is JobState.FINISHED and book.error_code is None and book.error_diag == ""
    book.mark_staging_out()
    book.mark_done()
    assert (book.phase, book.state) == (JobPhase.DONE, JobState.FINISHED)


def test_a_plain_job_queues_runs_and_may_be_given_back() -> None:
    book = JobBook(PLAIN_JOB)
    book.release()
    assert (book.phase, book.state) == (JobPhase.QUEUED, JobState.STARTING)
    book.start_plain()
    assert (book.phase, book.state) == (JobPhase.RUNNING, JobState.RUNNING)
    book.requeue()  # a worker gave it back unstarted
    book.start_plain()
    book.payload_ended(PayloadResult(9, False, exit_code=3, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE))
    assert (book.state, book.error_code, book.exit_code) == (
        JobState.FAILED,
        ErrorCode.PAYLOAD_EXECUTION_FAILURE,
        3,
    )


@pytest.mark.parametrize(
    ("moves", "bad"),
    [
        (["release", "mark_done"], "release"),  # DONE is the end
        (["release", "mark_done"], "mark_staging_out"),
        (["release", "mark_staging_out"], "start_merge"),  # no going back
        (["release", "start_merge"], "requeue"),
        ([], "start_merge"),  # nothing was handed out yet
        (["release"], "release"),  # released twice
    ],
)
def test_an_illegal_move_raises(moves: list[str], bad: str) -> None:
    book = JobBook(ES_JOB)
    for move in moves:
        getattr(book, move)()
    phase = book.phase
    with pytest.raises(JobTransitionError, match="job 9"):
        getattr(book, bad)()
    assert book.phase is phase  # and nothing changed


def test_a_failure_after_the_final_report_raises_and_a_concluded_job_does_not_run_again() -> None:
    book = JobBook(ES_JOB)
    book.release()
    book.fail(ErrorCode.ES_FATAL, "all 3 ranges failed")
    assert book.conclude() is JobState.FAILED
    with pytest.raises(JobTransitionError):
        book.mark_running()
    book.mark_done()
    with pytest.raises(JobTransitionError, match="after its final report"):
        book.fail(ErrorCode.STAGE_OUT_FAILED, "late")
    assert book.errors == ((ErrorCode.ES_FATAL, "all 3 ranges failed"),)


@pytest.mark.parametrize("name", ["phase", "state", "error_code", "error_diag", "exit_code", "resumable"])
def test_the_state_fields_are_read_only(name: str) -> None:
    book = JobBook(ES_JOB)
    with pytest.raises(AttributeError):
        setattr(book, name, getattr(book, name))


def test_nothing_in_parallel_writes_a_job_s_state_but_its_books() -> None:
    """Every write goes through `JobBook`'s methods (books.py); a direct one would be a second rule."""
    write = re.compile(r"\.(state|phase|error_code|error_diag|exit_code|resumable)\s*=[^=]")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(Path(hpcpilot.parallel.__file__).parent.glob("*.py"))
        # a range's state (the `RangeTable` column) is written there too
        if path.name not in {"books.py", "rangetable.py"}
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if write.search(line)
    ]
    assert found == []


# --- which failure wins -------------------------------------------------------------------------


def test_the_first_failure_is_the_job_s_and_the_later_ones_are_kept_aside() -> None:
    book = JobBook(ES_JOB)
    book.release()
    assert book.fail(ErrorCode.COMMUNICATION_FAILURE, "the range file is unreadable")
    assert not book.fail(ErrorCode.KILLED_BY_PANDA, "killed by the workload manager (tobekilled)")
    assert not book.fail(ErrorCode.SIGTERM, "run ended early (SIGTERM)", resumable=True)
    assert book.error_code is ErrorCode.COMMUNICATION_FAILURE
    assert book.error_diag == "the range file is unreadable"
    assert not book.resumable  # the drain's resumable came after the job's own failure
    assert [c for c, _ in book.errors] == [
        ErrorCode.COMMUNICATION_FAILURE,
        ErrorCode.KILLED_BY_PANDA,
        ErrorCode.SIGTERM,
    ]
    assert book.state is JobState.STARTING  # a failure is not the final state: `conclude` decides
    assert book.conclude("ignored: it failed") is JobState.FAILED
    assert book.error_diag == "the range file is unreadable"


def test_resumable_belongs_to_the_failure_that_won() -> None:
    drained = JobBook(ES_JOB)
    assert drained.fail(ErrorCode.NO_LOCAL_SPACE, "run ended early (disk full)", resumable=True)
    assert not drained.fail(ErrorCode.STAGE_OUT_TIMEOUT, "during stage-out", resumable=False)
    assert drained.resumable and drained.error_code is ErrorCode.NO_LOCAL_SPACE


def test_a_finished_job_whose_stage_out_fails_turns_failed_and_never_back() -> None:
    book = JobBook(ES_JOB)
    book.release()
    assert book.conclude("1 of 3 ranges failed") is JobState.FINISHED
    assert book.error_diag == "1 of 3 ranges failed" and book.error_code is None
    book.mark_staging_out()
    book.fail(ErrorCode.STAGE_OUT_FAILED, "copy failed")
    assert book.conclude() is JobState.FAILED and book.error_diag == "copy failed"
    assert book.conclude() is JobState.FAILED


def test_the_books_fail_a_lost_worker_s_killed_plain_job_with_its_earlier_code() -> None:
    books = Books(max_attempts=3, batch_size=8)
    book = books.add_job(PLAIN_JOB)
    worker = books.worker(1)
    worker.node, worker.want_cores, worker.free_cores = NodeInfo(1, "h", 2), 2, 2
    assert books.assign(1) is not None
    books.drop_queued(book)
    book.fail(ErrorCode.KILLED_BY_PANDA, "tobekilled")
    lost = books.worker_lost(1, "rank 1 lost")
    assert lost.failed_plain == (9,)
    assert (book.state, book.error_code, book.error_diag) == (
        JobState.FAILED,
        ErrorCode.KILLED_BY_PANDA,
        "tobekilled",
    )


# --- the cases where two paths of main disagreed --------------------------------------------------


class Recorder(Communicator):
    """Records the job reports; a site where the run takes up the jobs it ended early (local)."""

    resumes_ended_jobs = True

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        super().__init__(settings, layout)
        self.reports: list[JobReport] = []

    def fetch_jobs(self, n: int) -> JobBatch:
        return JobBatch((), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        return RangeBatch((), exhausted=True)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        return None

    def report_job(self, report: JobReport) -> None:
        self.reports.append(report)

    def poll(self) -> tuple[Command, ...]:
        return ()


def running(tmp_path: Path, job: Job) -> tuple[Coordinator, Recorder, Journal]:
    """A coordinator whose one job has its work out on rank 0 (not run: nothing answers)."""
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=2))
    layout = WorkLayout(tmp_path)
    comm = Recorder(settings, layout)
    jnl = Journal(layout.journal)
    coordinator = Coordinator(LocalLink().coordinator, settings, layout, comm, jnl, lambda line: None)
    coordinator._add_job(job)
    if job.event_service:
        coordinator.books.add_ranges(9, tuple(EventRange(f"1-9-1-{i}-1", i, i) for i in range(1, 5)))
    worker = coordinator.books.worker(0)
    worker.node, worker.want_cores, worker.free_cores = NodeInfo(0, "h", 2), 2, 2
    assert coordinator.books.assign(0) is not None
    return coordinator, comm, jnl


def test_a_killed_job_the_run_then_drains_stays_killed_and_is_not_resumed(tmp_path: Path) -> None:
    """Main overwrote the kill's 1144 with the drain's code and marked the job resumable.

    So `run --resume` took up again a job the workload manager had killed. The drain that
    overwrote (`_end_drained_jobs`) disagreed with the stage-out path, which kept the first code.
    """
    coordinator, comm, jnl = running(tmp_path, ES_JOB)
    coordinator._on_command(Command(CommandKind.TOBEKILLED, 9, "server"))
    coordinator.request_drain(signal.SIGTERM)  # before the killed ranges came back
    coordinator._end_drained_jobs()
    coordinator._flush()
    jnl.close()
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == int(ErrorCode.KILLED_BY_PANDA)
    assert "tobekilled" in final.error_diag
    records = journal(tmp_path)
    [end] = [r for r in records if r["ev"] == "job" and r.get("state") == "failed"]
    assert "resumable" not in end
    assert 9 in resume_state(records).done  # a resumed run leaves it alone


def test_a_plain_job_killed_while_running_fails_with_1144_whatever_its_payload_reports(
    tmp_path: Path,
) -> None:
    """Main let the payload's result overwrite the kill (the job finished, code 0).

    An event-service job killed alike failed with 1144: the two paths disagreed.
    """
    coordinator, comm, jnl = running(tmp_path, PLAIN_JOB)
    coordinator._on_command(Command(CommandKind.TOBEKILLED, 9, "server"))
    done = PayloadResult(9, True, exit_code=0)  # it ended well before the kill reached it
    coordinator._on_update(0, WorkerUpdate(None, (), (done,), 0, 2, 0))
    jnl.close()
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == int(ErrorCode.KILLED_BY_PANDA)
    assert final.exit_code == 0
