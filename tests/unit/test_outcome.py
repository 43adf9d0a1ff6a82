from __future__ import annotations

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import OutputFile
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobBook
from hpcpilot.parallel.outcome import job_report, merge_inputs, settle_event_service
from hpcpilot.parallel.rangetable import FATAL, FINISHED
from hpcpilot.parallel.resume import DoneJob
from hpcpilot.parallel.status import format_summary
from hpcpilot.parallel.summary import job_summary, merge_summaries, run_summary


def es_book(finished: int, fatal: int) -> JobBook:
    book = JobBook(job=Job(panda_id=9, event_service=True))
    table = book.ranges
    table.add_fed([EventRange(f"1-9-1-{i}-1", 10 * i + 1, 10 * i + 10) for i in range(finished + fatal)])
    for i in range(finished + fatal):
        rid = table.range_id(i)
        table.attempts[i] = 1 if i < finished else 3
        if i < finished:
            table.state[i] = FINISHED
            table.set_output(i, f"/w/9/o.h5.{rid}", 100 + i, "0000000a")
            table.nevents[i] = 10
        else:
            table.state[i] = FATAL
    book.finished, book.fatal = finished, fatal
    return book


def test_some_fatal_ranges_still_finish_the_job() -> None:
    book = es_book(finished=2, fatal=1)
    settle_event_service(book, status="failed")
    assert book.state is JobState.FINISHED and book.error_code is None
    # the word of the status those ranges were reported with (issue 14, part 4: it said "fatal")
    assert book.error_diag == "1 of 3 ranges failed"
    fatal = es_book(finished=2, fatal=1)
    settle_event_service(fatal, status="fatal")
    assert fatal.error_diag == "1 of 3 ranges fatal"
    assert [i.range_id for i in merge_inputs(book)] == ["1-9-1-0-1", "1-9-1-1-1"]
    assert merge_inputs(book)[1].start_event == 11
    summary = job_summary(book)
    assert summary["ranges"] == {"total": 3, "finished": 2, "fatal": 1, "failed_attempts": 0}
    assert summary["range_outputs"] == {"count": 2, "bytes": 201}


def test_all_fatal_or_no_ranges_fail_with_es_codes() -> None:
    all_fatal = es_book(finished=0, fatal=2)
    settle_event_service(all_fatal, status="failed")
    assert all_fatal.state is JobState.FAILED and all_fatal.error_code is ErrorCode.ES_FATAL
    empty = es_book(finished=0, fatal=0)
    settle_event_service(empty, status="failed")
    assert empty.error_code is ErrorCode.ES_NO_EVENTS


def test_an_earlier_error_wins_and_the_merged_output_is_reported() -> None:
    book = es_book(finished=2, fatal=0)
    book.merged = OutputFile("/w/9/o.h5", 5000, "0badcafe")
    settle_event_service(book, status="failed")
    assert [o.path for o in book.outputs] == ["/w/9/o.h5"]
    report = job_report(book)
    assert report.state is JobState.FINISHED and report.outputs[0]["fsize"] == 5000
    failed = es_book(finished=2, fatal=0)
    failed.fail(ErrorCode.PAYLOAD_EXECUTION_FAILURE, "merge failed: x")
    settle_event_service(failed, status="failed")
    assert failed.state is JobState.FAILED and job_report(failed).error_code == 1305


def test_ranges_known_to_come_count_in_the_totals_until_the_source_is_exhausted() -> None:
    books = Books(max_attempts=3, batch_size=8)
    book = books.add_job(Job(panda_id=9, event_service=True))
    book.ranges_expected = 200
    books.add_ranges(9, tuple(EventRange(f"1-9-1-{i}-1", i, i) for i in range(192)))
    assert book.unfetched == 8 and books.ranges_total == 200
    assert job_summary(book)["ranges"]["total"] == 200
    summary = run_summary(books, workdir="w", wall_s=1.0, bad_jobs=[], drained_by="SIGTERM", error=None)
    assert summary["ranges"]["total"] == 200 and summary["ranges"]["not_done"] == 200
    books.exhaust(book)  # fewer came (bad ones skipped): what came is the truth
    assert book.unfetched == 0 and books.ranges_total == 192


def test_a_resumed_run_s_summary_keeps_the_jobs_of_the_runs_before() -> None:
    earlier_book = es_book(finished=2, fatal=1)
    settle_event_service(earlier_book, status="failed")
    earlier_job = {**job_summary(earlier_book), "PandaID": 8, "state": "failed"}
    taken_up = {**earlier_job, "PandaID": 9, "error_code": 1201}  # taken up again and finished
    earlier = {"jobs": [earlier_job, taken_up], "runs": 1, "ranges": {"total": 8, "finished": 2}}
    book = es_book(finished=3, fatal=0)
    book.conclude()
    books = Books(max_attempts=3, batch_size=8)
    books.jobs[9] = book
    books.ranges_known = books.ranges_finished = 3
    current = run_summary(books, workdir="w", wall_s=1.0, bad_jobs=[], drained_by=None, error=None)
    merged = merge_summaries(earlier, current)
    assert [(j["PandaID"], j["state"]) for j in merged["jobs"]] == [(8, "failed"), (9, "finished")]
    assert merged["ranges"]["total"] == 3 + 3 and merged["ranges"]["finished"] == 3 + 2
    assert merged["ranges"]["fatal"] == 1 and merged["ranges"]["not_done"] == 0
    assert merged["runs"] == 2 and merged["wall_s"] == current["wall_s"]
    assert merge_summaries({"jobs": "garbage"}, current) == current
    broken = {"jobs": [{"PandaID": 8, "state": "failed"}, earlier_job]}  # one not as hpcpilot writes
    assert [j["PandaID"] for j in merge_summaries(broken, current)["jobs"]] == [8, 9]
    nothing_new = run_summary(Books(3, 8), workdir="w", wall_s=0.1, bad_jobs=[], drained_by=None, error=None)
    assert merge_summaries(earlier, nothing_new)["jobs"] == earlier["jobs"]  # never `jobs: []`


def test_a_resumed_run_without_an_earlier_summary_has_the_jobs_the_journal_has_as_done() -> None:
    """Killed after a job's final record, before the summary: the journal is what is left."""
    nothing_new = run_summary(Books(3, 8), workdir="w", wall_s=0.1, bad_jobs=[], drained_by=None, error=None)
    done = DoneJob(7, "finished", 0, True, ranges=5, finished=4, fatal=1, failed_attempts=3, n_events=40)
    merged = merge_summaries({}, nothing_new, [done, DoneJob(8, "failed", 1008)])
    [es, bad] = merged["jobs"]
    assert (es["PandaID"], es["state"], es["n_events"], es["ranges"]["fatal"]) == (7, "finished", 40, 1)
    assert (bad["PandaID"], bad["kind"], bad["error_code"]) == (8, "plain", 1008)
    assert merged["ranges"]["total"] == 5 and merged["ranges"]["finished"] == 4
    assert format_summary(merged).count("  job ") == 2
