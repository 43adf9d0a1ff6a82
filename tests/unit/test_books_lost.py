"""`Books.worker_lost`: a dead worker rank's work goes back to the queue, its counters are fixed."""

from __future__ import annotations

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobPhase
from hpcpilot.parallel.messages import NodeInfo
from tests.ranges import handed, handed_ids, queued, queued_ids, state_of

ES_JOB = Job(panda_id=1, event_service=True)


def ranges(n: int) -> tuple[EventRange, ...]:
    return tuple(EventRange(f"1-1-1-{i}-1", i, i) for i in range(1, n + 1))


def two_workers(attempts: int = 3) -> Books:
    books = Books(max_attempts=attempts, batch_size=64)
    books.worker(1).node = NodeInfo(1, "n1", 4)
    books.worker(2).node = NodeInfo(2, "n2", 4)
    return books


def ask(books: Books, rank: int, want: int, free: int = 0) -> None:
    worker = books.worker(rank)
    worker.want_cores, worker.free_cores = want, free


def test_lost_ranges_are_queued_again_as_a_failed_attempt() -> None:
    books = two_workers()
    book = books.add_job(ES_JOB)
    books.add_ranges(1, ranges(6))
    ask(books, 1, want=4)
    ask(books, 2, want=2)
    on_1 = books.assign(1)
    on_2 = books.assign(2)
    assert on_1 is not None and on_2 is not None and len(handed(books, on_1)) == 4
    done, *held = handed_ids(books, on_1)
    books.record_range(1, RangeResult(1, done, RangeState.FINISHED, OutputFile("/o", 1, "00000001"), 1))

    lost = books.worker_lost(1, "rank 1 (n1) lost")

    assert sorted(r.range_id for r, _ in lost.ranges) == sorted(held)  # not the finished one
    assert all(state is RangeState.FAILED for _, state in lost.ranges)
    assert all(r.error_code is ErrorCode.KILL_SIGNAL and "rank 1" in r.error_diag for r, _ in lost.ranges)
    assert queued_ids(books) == held
    assert [a for _, _, a in queued(books)] == [2, 2, 2]  # the lost attempt counts
    assert book.queued == 3 and book.in_flight == 2 and book.finished == 1
    assert book.failed_attempts == 3 and books.ranges_failed_attempts == 3
    assert state_of(books, 1, done) is RangeState.FINISHED
    worker = books.worker(1)
    assert worker.lost and worker.stopped and worker.in_flight == 0 and worker.node is None
    assert books.total_cores == 4  # only rank 2's cores are left
    ask(books, 1, want=4)
    assert books.assign(1) is None  # a lost worker gets nothing
    ask(books, 2, want=8)
    again = books.assign(2)
    assert again is not None
    assert [(rid, a) for _, rid, a in handed(books, again)] == [(rid, 2) for rid in held]
    assert books.worker(2).in_flight == 2 + 3


def test_a_range_that_kills_its_rank_every_time_becomes_fatal() -> None:
    books = two_workers(attempts=2)
    book = books.add_job(ES_JOB)
    books.add_ranges(1, ranges(1))
    books.exhaust(book)
    ask(books, 1, want=1)
    books.assign(1)
    [(first, state)] = books.worker_lost(1, "rank 1 lost").ranges
    assert state is RangeState.FAILED
    ask(books, 2, want=1)
    retry = books.assign(2)
    assert [a for _, _, a in handed(books, retry)] == [2]
    [(second, state)] = books.worker_lost(2, "rank 2 lost").ranges
    assert state is RangeState.FATAL and second.range_id == first.range_id
    assert book.fatal == 1 and books.ranges_fatal == 1 and not books.range_queue
    assert book.ranges_done and books.take_settled() == [book]


def test_lost_ranges_of_a_stopped_job_are_dropped() -> None:
    books = two_workers()
    book = books.add_job(ES_JOB)
    books.add_ranges(1, ranges(3))
    ask(books, 1, want=2)
    books.assign(1)
    assert len(books.drop_queued(book)) == 1
    lost = books.worker_lost(1, "rank 1 lost")
    assert [state for _, state in lost.ranges] == [RangeState.DROPPED, RangeState.DROPPED]
    assert not books.range_queue and book.in_flight == 0
    assert books.take_settled() == [book]


def test_lost_plain_jobs_are_queued_again_at_the_front() -> None:
    books = two_workers()
    for panda_id in (10, 11, 12):
        books.add_job(Job(panda_id=panda_id, core_count=2))
    ask(books, 1, want=4, free=4)
    given = books.assign(1)
    assert given is not None and given.plain == (10, 11)
    assert books.worker(1).plain == {10, 11}
    lost = books.worker_lost(1, "rank 1 lost")
    assert lost.plain == (10, 11) and lost.ranges == () and lost.failed_plain == ()
    assert list(books.plain_queue) == [10, 11, 12]
    assert all(books.jobs[p].phase is JobPhase.QUEUED and books.jobs[p].in_flight == 0 for p in (10, 11))
    ask(books, 2, want=4, free=4)
    again = books.assign(2)
    assert again is not None and again.plain == (10, 11)
    assert books.record_payload(2, PayloadResult(10, True)) is not None
    assert books.worker(2).plain == {11} and books.worker(2).in_flight == 1


def test_a_lost_plain_job_that_takes_no_more_work_fails() -> None:
    books = two_workers()
    book = books.add_job(Job(panda_id=10))
    ask(books, 1, want=1, free=1)
    books.assign(1)
    books.drop_queued(book)  # a softkill came while it ran
    lost = books.worker_lost(1, "rank 1 lost")
    assert lost.plain == () and lost.failed_plain == (10,)
    assert not books.plain_queue and book.in_flight == 0
    assert book.state is JobState.FAILED and book.error_code is ErrorCode.KILL_SIGNAL


def test_a_worker_lost_before_its_hello_or_twice() -> None:
    books = two_workers()
    empty = books.worker_lost(3, "rank 3 lost")
    assert empty.ranges == () and empty.plain == () and books.worker(3).lost
    again = books.worker_lost(3, "rank 3 lost")
    assert again.ranges == () and books.worker(3).in_flight == 0
