from __future__ import annotations

import dataclasses

import pytest

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel import books as books_module
from hpcpilot.parallel.books import Books, JobPhase
from hpcpilot.parallel.messages import NodeInfo, RangeWork
from tests.ranges import (
    attempts_of,
    batch,
    handed,
    handed_ids,
    queued,
    queued_ids,
    state_of,
    taken_back,
    work_ids,
)

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
    assert handed_ids(books, first) == ["1-1-1-1-1", "1-1-1-2-1", "1-1-1-3-1"]
    assert first.jobs == (ES_JOB,)  # the definition travels with the first assignment only
    assert books.worker(1).want_cores == 7  # what was given is taken off the request: the rest stands
    second = books.assign(1)
    assert second is not None and second.jobs == ()
    assert handed_ids(books, second) == ["1-1-1-4-1", "1-1-1-5-1"]
    assert books.assign(1) is None  # every range handed out once: nothing more to give
    assert books.jobs[1].in_flight == 5 and books.jobs[1].queued == 0
    assert books.worker(1).want_cores == 5


def test_a_request_stands_until_it_is_filled() -> None:
    books = books_with_worker(batch=1)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(5))
    ask(books, 1, want=3)
    given = [books.assign(1) for _ in range(4)]  # no new request in between
    assert [handed_ids(books, a) for a in given[:3]] == [["1-1-1-1-1"], ["1-1-1-2-1"], ["1-1-1-3-1"]]
    assert given[3] is None  # three cores asked for, three ranges given
    assert books.worker(1).want_cores == 0 and not books.wants(books.worker(1))
    assert books.worker(1).in_flight == 3 and books.ranges_queued == 2


def test_failed_range_is_retried_then_fatal() -> None:
    books = books_with_worker(attempts=2)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(1))
    ask(books, 1, want=1)
    [(_, rid, attempt)] = handed(books, books.assign(1))
    assert attempt == 1
    fail = RangeResult(1, rid, RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE)
    assert books.record_range(1, fail) is RangeState.FAILED
    assert attempts_of(books, 1, rid) == 1 and queued(books) == [(1, rid, 2)]
    ask(books, 1, want=1)
    assert handed(books, books.assign(1)) == [(1, rid, 2)]
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
    [work] = given.ranges  # one interval: ranges 0 and 1
    assert work_ids(books, work) == ["1-1-1-1-1", "1-1-1-2-1"]
    back = books.return_ranges((dataclasses.replace(work, start=1, defs=None),), 1)
    assert back == [(1, ["1-1-1-2-1"])]
    assert queued(books) == [(1, "1-1-1-2-1", 1), (1, "1-1-1-3-1", 1)]  # first, its attempt not spent
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
    assert handed_ids(books, taken) == ["1-1-1-1-1", "1-1-1-2-1"]
    dropped = books.drop_queued(books.jobs[1])
    assert dropped == ["1-1-1-3-1", "1-1-1-4-1"]
    assert [p for p, _, _ in queued(books)] == [2]  # the other job's work stays queued
    assert books.ranges_queued == 1
    assert state_of(books, 1, "1-1-1-3-1") is RangeState.DROPPED
    assert 1 not in books.feeding and books.take_settled() == []  # two ranges still in flight
    for rid in handed_ids(books, taken):
        books.record_range(1, RangeResult(1, rid, RangeState.FINISHED))
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
    assert sent is not None and len(handed(books, sent)) == 2
    taken = books.reclaim(1)
    assert taken_back(taken) == handed_ids(books, sent)
    assert [a for _, _, a in queued(books)] == [1, 1, 1]  # the attempts were not spent
    book = books.jobs[1]
    assert book.in_flight == 0 and book.queued == 3 and books.worker(1).in_flight == 0
    assert book.ranges.count(RangeState.QUEUED) == 3
    assert queued_ids(books) == ["1-1-1-1-1", "1-1-1-2-1", "1-1-1-3-1"]
    assert books.reclaim(1) == []  # nothing twice


@pytest.fixture(params=["one by one", "columns"])
def booking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a batch of results is booked: small batches one by one, larger ones as columns."""
    if request.param == "columns":
        monkeypatch.setattr(books_module, "SMALL_BATCH", 0)
    return str(request.param)


@pytest.mark.usefixtures("booking")
def test_results_are_booked_as_columns_and_a_stray_is_named() -> None:
    books = books_with_worker(attempts=2)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(3))
    ask(books, 1, want=2)
    assert handed_ids(books, books.assign(1)) == ["1-1-1-1-1", "1-1-1-2-1"]
    table = books.jobs[1].ranges
    prefix = "/w/1/o."
    sent = [
        RangeResult(1, "1-1-1-1-1", RangeState.FINISHED, OutputFile(prefix + "1-1-1-1-1", 3, "0000000a"), 2),
        RangeResult(1, "1-1-1-2-1", RangeState.FAILED, None, 0, ErrorCode.PAYLOAD_EXECUTION_FAILURE, "boom"),
        RangeResult(1, "1-1-1-3-1", RangeState.FINISHED),  # never handed out: a stray
    ]
    recorded = books.record_results(1, batch(table, 1, sent, prefix))
    assert recorded.finished == (0,) and recorded.indices == (0,)
    [(failed, state)] = recorded.failed
    assert (failed.range_id, failed.error_code, failed.error_diag, state) == (
        "1-1-1-2-1",
        ErrorCode.PAYLOAD_EXECUTION_FAILURE,
        "boom",
        RangeState.FAILED,
    )
    assert recorded.stray == ("1-1-1-3-1",)
    assert table.output(0) == (prefix + "1-1-1-1-1", 3, "0000000a") and table.paths == {}
    book = books.jobs[1]
    assert (book.finished, book.n_events, book.in_flight, book.failed_attempts) == (1, 2, 0, 1)
    assert queued(books) == [(1, "1-1-1-3-1", 1), (1, "1-1-1-2-1", 2)]
    assert books.record_results(1, batch(table, 1, sent[:1], prefix)).stray == ("1-1-1-1-1",)  # again
    assert book.finished == 1 and books.worker(1).in_flight == 0


@pytest.mark.usefixtures("booking")
def test_a_range_twice_in_one_batch_is_booked_once() -> None:
    """A duplicate is not booked twice, within one batch as across batches (`Books.record_results`).

    Fails on i16-columnar: ``valid`` is worked out once from the table before anything is booked,
    so both copies pass and the range is counted finished twice (and a failed one queued twice:
    handed out twice).
    """
    books = books_with_worker(attempts=3)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(2))
    ask(books, 1, want=2)
    books.assign(1)
    table = books.jobs[1].ranges
    done = RangeResult(1, "1-1-1-1-1", RangeState.FINISHED, None, 1)
    books.record_results(1, batch(table, 1, [done, done]))
    failed = RangeResult(1, "1-1-1-2-1", RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE)
    books.record_results(1, batch(table, 1, [failed, failed]))
    book = books.jobs[1]
    assert (book.finished, book.n_events, books.ranges_finished) == (1, 1, 1)
    assert book.in_flight == 0 and books.worker(1).in_flight == 0
    assert queued_ids(books) == ["1-1-1-2-1"] and book.failed_attempts == 1


def test_a_cut_job_sends_its_cut_once_per_worker_and_attempts_per_range_when_they_differ() -> None:
    books = books_with_worker(batch=8, attempts=3)
    job = Job(panda_id=1, task_id=7, event_service=True, n_events_per_input_file=4)
    books.add_job(job)
    cut = RangeCut.of(job, 1)
    assert books.add_cut(1, cut, 0, 4) == 4 and books.add_cut(1, cut, 0, 4) == 0
    ask(books, 1, want=2)
    [first] = books.assign(1).ranges  # type: ignore[union-attr]
    assert (first.start, first.stop, first.attempt, first.defs) == (0, 2, 1, cut)
    fail = RangeResult(1, cut.range_id(0), RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE)
    assert books.record_range(1, fail) is RangeState.FAILED
    books.return_ranges((RangeWork(1, 1, 2),), 1)  # given back unstarted: at the front, attempt kept
    assert queued(books) == [(1, cut.range_id(i), 1) for i in (1, 2, 3)] + [(1, cut.range_id(0), 2)]
    ask(books, 1, want=8)
    given = books.assign(1)
    assert given is not None and given.jobs == ()
    assert all(w.defs is None for w in given.ranges)  # the worker has the cut
    assert handed(books, given) == [(1, cut.range_id(i), 1) for i in (1, 2, 3)] + [(1, cut.range_id(0), 2)]
    assert books.attempt_of(1, cut.range_id(0)) == 2 and books.attempt_of(1, "7-1-1-9-0") == 0


def test_attempts_count_past_255_when_max_attempts_allows_them() -> None:
    """``eventservice.max_attempts`` goes up to 1000: attempt 256 is the 256th; the range ends fatal.

    It failed when `RangeTable.attempts` was ``uint8``, so the 256th hand-out wraps it to 0
    (sent as attempt 0, or a ``bytes`` attempt that cannot hold it), and ``attempts >= max_attempts``
    is never true: the range is retried for ever.
    """
    books = books_with_worker(attempts=300)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(1))
    seen, state = [], None
    for _ in range(300):
        ask(books, 1, want=1)
        [(_, rid, attempt)] = handed(books, books.assign(1))
        seen.append(attempt)
        state = books.record_range(
            1, RangeResult(1, rid, RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE)
        )
        if state is RangeState.FATAL:
            break
    assert seen == list(range(1, 301)) and state is RangeState.FATAL


def _booked_both_ways(monkeypatch: pytest.MonkeyPatch, small_batch: int) -> list[object]:
    monkeypatch.setattr(books_module, "SMALL_BATCH", small_batch)
    books = books_with_worker(cores=8, attempts=3)
    books.add_job(ES_JOB)
    books.add_ranges(1, ranges(8))
    ask(books, 1, want=8)
    books.assign(1)
    table = books.jobs[1].ranges
    prefix = "/w/1/o."
    ids = [f"1-1-1-{i}-1" for i in range(1, 9)]
    sent = [
        RangeResult(
            1, ids[0], RangeState.FINISHED, OutputFile(prefix + ids[0], 3, "0000000a"), 2, wall_s=1.5
        ),
        RangeResult(1, ids[1], RangeState.FINISHED, OutputFile("/elsewhere/x", 7, "odd!"), 1, cpu_s=0.25),
        RangeResult(1, ids[2], RangeState.FAILED, None, 0, ErrorCode.PAYLOAD_EXECUTION_FAILURE, "boom"),
        RangeResult(1, ids[3], RangeState.FINISHED, None, 4, wall_s=0.5, cpu_s=0.5),
        RangeResult(1, ids[3], RangeState.FINISHED, None, 4, wall_s=0.5),  # twice: booked once
        RangeResult(1, ids[4], RangeState.FINISHED, OutputFile(prefix + ids[4], 0, "00000001"), 1),
    ]
    recorded = books.record_results(1, batch(table, 1, sent, prefix))
    book = books.jobs[1]
    seen = [
        recorded,
        table.state[: table.n].tolist(),
        table.nevents[: table.n].tolist(),
        table.fsize[: table.n].tolist(),
        [table.output(i) for i in range(table.n)],
        dict(table.paths),
        (book.finished, book.n_events, book.in_flight, book.failed_attempts, book.cpu_s),
        (book.ranges_timed, book.ranges_timed_s, books.worker(1).in_flight, books.ranges_finished),
        queued(books),
    ]
    return seen


def test_a_small_batch_is_booked_one_by_one_exactly_as_columns_book_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of up to `SMALL_BATCH` results skip numpy (its cost per call is most of a small
    batch's); every column, counter and queue entry must come out as the column path leaves them."""
    one_by_one = _booked_both_ways(monkeypatch, small_batch=8)
    columns = _booked_both_ways(monkeypatch, small_batch=0)
    assert one_by_one == columns
    recorded = one_by_one[0]
    assert isinstance(recorded, books_module.Recorded)
    assert recorded.finished == (0, 1, 3, 5) and recorded.stray == ("1-1-1-4-1",)
    assert one_by_one[5] == {1: "/elsewhere/x"}
