from __future__ import annotations

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobPhase
from hpcpilot.parallel.messages import NodeInfo

ES_JOB = Job(panda_id=1, event_service=True)


def ranges(n: int) -> tuple[EventRange, ...]:
    return tuple(EventRange(f"1-1-1-{i}-1", i, i) for i in range(1, n + 1))


def books_with_worker(cores: int = 4, batch: int = 64, attempts: int = 2) -> Books:
    books = Books(max_attempts=attempts, batch_size=batch)
    books.worker(1).node = NodeInfo(1, "n1", cores)
    return books


def ask(books: Books, rank: int, want: int, free: int = 0) -> None:
    worker = books.worker(rank)
    worker.want_cores, worker.free_cores = want, free


def test_ranges_are_handed_out_once_up_to_the_request_and_batch() -> None:
    books = books_with_worker(batch=3)
    books.add_job(ES_JOB)
    assert books.add_ranges(1, ranges(5)) == 5
    assert books.add_ranges(1, ranges(5)) == 0  # same ids again: ignored
    ask(books, 1, want=10)
    first = books.assign(1)
    assert first is not None
    assert [t.event_range.range_id for t in first.ranges] == ["1-1-1-1-1", "1-1-1-2-1", "1-1-1-3-1"]
    assert first.jobs == (ES_JOB,)  # the definition travels with the first assignment only
    assert books.assign(1) is None  # the request was consumed
    ask(books, 1, want=10)
    second = books.assign(1)
    assert second is not None and second.jobs == () and len(second.ranges) == 2
    assert books.jobs[1].in_flight == 5 and books.jobs[1].queued == 0


def test_failed_range_is_retried_then_fatal() -> None:
    books = books_with_worker(attempts=2)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(1))
    ask(books, 1, want=1)
    task = books.assign(1).ranges[0]  # type: ignore[union-attr]
    fail = RangeResult(
        1,
        task.event_range.range_id,
        RangeState.FAILED,
        error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE,
    )
    assert books.record_range(1, fail) is RangeState.FAILED
    assert books.jobs[1].ranges[task.event_range.range_id].attempts == 1
    ask(books, 1, want=1)
    retry = books.assign(1)
    assert retry is not None and retry.ranges[0].attempt == 2
    assert books.record_range(1, fail) is RangeState.FATAL
    book = books.jobs[1]
    assert book.fatal == 1 and book.failed_attempts == 2 and books.ranges_fatal == 1
    assert books.take_settled() == []  # more ranges may still come
    books.exhaust(book)
    assert book.ranges_done and books.take_settled() == [book]
    assert books.take_settled() == []  # reported once


def test_finished_and_stray_results() -> None:
    books = books_with_worker()
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(1))
    ask(books, 1, want=1)
    books.assign(1)
    done = RangeResult(1, "1-1-1-1-1", RangeState.FINISHED, OutputFile("/o", 3, "00000001"), 1)
    assert books.record_range(1, done) is not None
    assert books.record_range(1, done) is None  # a duplicate is not booked twice
    assert books.record_range(1, RangeResult(9, "x", RangeState.FINISHED)) is None
    assert books.jobs[1].finished == 1 and books.jobs[1].n_events == 1
    assert books.worker(1).in_flight == 0


def test_returned_ranges_go_back_to_the_front() -> None:
    books = books_with_worker()
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(3))
    ask(books, 1, want=2)
    given = books.assign(1)
    assert given is not None
    books.return_ranges(given.ranges[1:], 1)
    assert books.range_queue[0].event_range.range_id == "1-1-1-2-1"
    assert books.jobs[1].in_flight == 1 and books.jobs[1].queued == 2


def test_plain_jobs_only_fill_idle_cores() -> None:
    books = books_with_worker(cores=4)
    big = Job(panda_id=10, core_count=4)
    small = Job(panda_id=11, core_count=2)
    books.add_job(big)
    books.add_job(small)
    ask(books, 1, want=12, free=2)
    given = books.assign(1)
    assert given is not None and given.plain == (11,)  # the 4-core job does not fit in 2 free cores
    assert list(books.plain_queue) == [10]
    assert books.jobs[11].phase is JobPhase.RUNNING
    result = PayloadResult(11, ok=True, outputs=(OutputFile("/x", 1, "00000001"),), exit_code=0)
    book = books.record_payload(1, result)
    assert book is not None and book.state is JobState.FINISHED and book.outputs
    assert books.record_payload(1, result) is None


def test_draining_hands_out_nothing() -> None:
    books = books_with_worker()
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(2))
    books.draining = True
    ask(books, 1, want=4)
    assert books.assign(1) is None


def test_open_and_feeding_jobs_are_tracked() -> None:
    books = books_with_worker()
    es = books.add_job(ES_JOB)
    plain = books.add_job(Job(panda_id=2))
    assert set(books.open) == {1, 2} and set(books.feeding) == {1}
    books.add_ranges(1, ranges(2))
    assert books.ranges_total == 2
    books.exhaust(es)
    assert books.feeding == {} and books.take_settled() == []  # two ranges still queued
    books.mark_done(plain)
    assert set(books.open) == {1} and plain.phase is JobPhase.DONE


def test_plain_job_larger_than_the_node_gets_a_whole_idle_node() -> None:
    books = books_with_worker(cores=4)
    books.add_job(Job(panda_id=20, core_count=8))
    ask(books, 1, want=12, free=3)
    assert books.assign(1) is None  # not while anything else holds the node
    ask(books, 1, want=12, free=4)
    given = books.assign(1)
    assert given is not None and given.plain == (20,)
    assert books.worker(1).free_cores == 0


def test_drop_queued_stops_a_job_and_it_settles_when_work_in_flight_is_back() -> None:
    books = books_with_worker(batch=2)
    books.add_job(ES_JOB)
    other = Job(panda_id=2, event_service=True)
    books.add_job(other)
    books.add_ranges(1, ranges(4))
    books.add_ranges(2, (EventRange("1-2-1-1-1", 1, 1),))
    ask(books, 1, want=2)
    taken = books.assign(1)
    assert taken is not None and len(taken.ranges) == 2
    dropped = books.drop_queued(books.jobs[1])
    assert dropped == ["1-1-1-3-1", "1-1-1-4-1"]
    assert [t.panda_id for t in books.range_queue] == [2]  # the other job's work stays queued
    assert books.jobs[1].ranges["1-1-1-3-1"].state is RangeState.DROPPED
    assert 1 not in books.feeding and books.take_settled() == []  # two ranges still in flight
    for task in taken.ranges:
        books.record_range(1, RangeResult(1, task.event_range.range_id, RangeState.FINISHED))
    assert [b.job.panda_id for b in books.take_settled()] == [1]


def test_drop_queued_removes_a_queued_plain_job() -> None:
    books = books_with_worker()
    books.add_job(Job(panda_id=5))
    assert books.drop_queued(books.jobs[5]) == []
    assert not books.plain_queue


def test_work_that_crossed_a_workers_bye_is_taken_back_without_using_an_attempt() -> None:
    books = books_with_worker()
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(3))
    ask(books, 1, want=2)
    sent = books.assign(1)  # on its way while the worker says bye with nothing returned
    assert sent is not None and len(sent.ranges) == 2
    taken = books.reclaim(1)
    assert [t.event_range.range_id for t in taken] == [t.event_range.range_id for t in sent.ranges]
    assert all(t.attempt == 1 for t in taken)
    book = books.jobs[1]
    assert book.in_flight == 0 and book.queued == 3 and books.worker(1).in_flight == 0
    assert all(e.state is RangeState.QUEUED for e in book.ranges.values())
    assert books.reclaim(1) == ()  # nothing twice
