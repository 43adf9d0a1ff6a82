from __future__ import annotations

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import JobBook, RangeEntry
from hpcpilot.parallel.outcome import job_report, merge_inputs, settle_event_service
from hpcpilot.parallel.summary import job_summary


def es_book(finished: int, fatal: int) -> JobBook:
    book = JobBook(job=Job(panda_id=9, event_service=True))
    for i in range(finished + fatal):
        rid = f"1-9-1-{i}-1"
        rng = EventRange(rid, 10 * i + 1, 10 * i + 10)
        if i < finished:
            out = OutputFile(f"/w/9/o.h5.{rid}", 100 + i, "0000000a")
            result = RangeResult(9, rid, RangeState.FINISHED, out, 10)
            book.ranges[rid] = RangeEntry(rng, RangeState.FINISHED, 1, 1, result)
        else:
            book.ranges[rid] = RangeEntry(rng, RangeState.FATAL, 3, 1, None)
    book.finished, book.fatal = finished, fatal
    return book


def test_some_fatal_ranges_still_finish_the_job() -> None:
    book = es_book(finished=2, fatal=1)
    settle_event_service(book)
    assert book.state is JobState.FINISHED and book.error_code is None
    assert book.error_diag == "1 of 3 ranges fatal"
    assert [i.range_id for i in merge_inputs(book)] == ["1-9-1-0-1", "1-9-1-1-1"]
    assert merge_inputs(book)[1].start_event == 11
    summary = job_summary(book)
    assert summary["ranges"] == {"total": 3, "finished": 2, "fatal": 1, "failed_attempts": 0}
    assert summary["range_outputs"] == {"count": 2, "bytes": 201}


def test_all_fatal_or_no_ranges_fail_with_es_codes() -> None:
    all_fatal = es_book(finished=0, fatal=2)
    settle_event_service(all_fatal)
    assert all_fatal.state is JobState.FAILED and all_fatal.error_code is ErrorCode.ES_FATAL
    empty = es_book(finished=0, fatal=0)
    settle_event_service(empty)
    assert empty.error_code is ErrorCode.ES_NO_EVENTS


def test_an_earlier_error_wins_and_the_merged_output_is_reported() -> None:
    book = es_book(finished=2, fatal=0)
    book.merged = OutputFile("/w/9/o.h5", 5000, "0badcafe")
    settle_event_service(book)
    assert [o.path for o in book.outputs] == ["/w/9/o.h5"]
    report = job_report(book)
    assert report.state is JobState.FINISHED and report.outputs[0]["fsize"] == 5000
    failed = es_book(finished=2, fatal=0)
    failed.error_code, failed.error_diag = ErrorCode.PAYLOAD_EXECUTION_FAILURE, "merge failed: x"
    settle_event_service(failed)
    assert failed.state is JobState.FAILED and job_report(failed).error_code == 1305
