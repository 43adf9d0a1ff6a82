"""Finishing jobs on rank 0 (`JobFinishing`), with the coordinator's part recorded."""

from __future__ import annotations

from pathlib import Path

from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobBook, JobPhase
from hpcpilot.parallel.finishing import FinishingHooks, JobFinishing
from hpcpilot.parallel.messages import NodeInfo
from hpcpilot.parallel.staging import JobStaging


class Coordinator:
    """What the coordinator does for finishing, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def hooks(self) -> FinishingHooks:
        return FinishingHooks(
            report_ranges=lambda panda_id: self.calls.append(("ranges", panda_id)),
            report_final=lambda book: self.calls.append(("final", book.job.panda_id)),
            sync_journal=lambda: True,
            on_full=lambda exc, what: False,
            disk_full=lambda why: self.calls.append(("full", why)),
        )


def finishing(tmp_path: Path) -> tuple[JobFinishing, Books, Coordinator]:
    settings = Settings()
    layout = WorkLayout(tmp_path)
    books = Books(max_attempts=1, batch_size=8)
    coordinator = Coordinator()
    staging = JobStaging(settings.data, layout)
    return (
        JobFinishing(settings, layout, books, staging, coordinator.hooks(), resumes_ended_jobs=True),
        books,
        coordinator,
    )


def handed_out(books: Books, job: Job) -> JobBook:
    book = books.add_job(job)
    if job.event_service:
        books.add_ranges(job.panda_id, (EventRange("1-9-1-1-1", 1, 1),))
    worker = books.worker(0)
    worker.node, worker.want_cores, worker.free_cores = NodeInfo(0, "h", 2), 2, 2
    assert books.assign(0) is not None
    return book


def test_a_plain_job_is_concluded_its_ranges_reported_then_its_final_report(tmp_path: Path) -> None:
    done, books, coordinator = finishing(tmp_path)
    book = handed_out(books, Job(panda_id=9, job_pars="1", transformation="sleep"))
    books.record_payload(0, PayloadResult(9, True, exit_code=0))
    done.finish(book)
    assert book.state is JobState.FINISHED and book.ended > 0
    assert coordinator.calls == [("ranges", 9), ("final", 9)]


def test_an_event_service_job_whose_ranges_all_failed_is_taken_up_once_and_fails_with_1228(
    tmp_path: Path,
) -> None:
    done, books, coordinator = finishing(tmp_path)
    book = handed_out(books, Job(panda_id=9, event_service=True, job_pars="1", transformation="sleep"))
    books.exhaust(book)
    failed = RangeResult(9, "1-9-1-1-1", RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE)
    assert books.record_range(0, failed) is RangeState.FATAL
    assert done.step() and not done.step()  # taken up once
    assert (book.state, book.error_code) == (JobState.FAILED, ErrorCode.ES_FATAL)
    assert coordinator.calls == [("ranges", 9), ("final", 9)]
    settled = done.settled_for(9)
    assert settled is not None and settled >= 0 and done.settled_for(9) is None


def test_a_failed_stage_out_fails_a_finished_job_and_a_second_failure_changes_nothing(tmp_path: Path) -> None:
    done, books, coordinator = finishing(tmp_path)
    book = handed_out(books, Job(panda_id=9, job_pars="1", transformation="sleep"))
    books.record_payload(0, PayloadResult(9, True, exit_code=0))
    books.mark_staging_out(book)
    assert book.phase is JobPhase.STAGING_OUT and book.state is JobState.FINISHED
    done.staged_out(book, (ErrorCode.STAGE_OUT_FAILED, "copy failed"))
    assert (book.state, book.error_code, book.error_diag) == (
        JobState.FAILED,
        ErrorCode.STAGE_OUT_FAILED,
        "copy failed",
    )
    assert coordinator.calls == [("final", 9)]
