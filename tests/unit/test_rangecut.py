"""`RangeCut`: ranges worked out from a job and an index agree with cutting them one by one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hpcpilot.comm.range_files import cut_ranges
from hpcpilot.model.errors import ErrorCode, JobDefinitionError
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, range_columns
from hpcpilot.parallel.worker import ranges_of_columns


def reference_cut(job: Job, events_per_range: int) -> Iterator[EventRange]:
    """The cut as main wrote it before `RangeCut` (every range an object, file after file)."""
    per_file = job.n_events_per_input_file
    assert per_file is not None
    files = job.input_files or (None,)
    process_id = 0
    for file_index, spec in enumerate(files, start=1):
        for start in range(1, per_file + 1, events_per_range):
            process_id += 1
            yield EventRange(
                range_id=f"{job.task_id}-{job.panda_id}-{file_index}-{process_id}-{job.attempt_nr}",
                start_event=start,
                last_event=min(start + events_per_range - 1, per_file),
                lfn=spec.lfn if spec else "",
                guid=(spec.guid or "") if spec else "",
                scope=(spec.scope or "") if spec else "",
            )


def es_job(per_file: int | None, files: int = 0, panda_id: int = 42) -> Job:
    inputs = tuple(FileSpec(f"EVNT.{k}.root", guid=f"g{k}", scope="mc") for k in range(1, files + 1))
    return Job(
        panda_id=panda_id,
        task_id=7,
        attempt_nr=3,
        event_service=True,
        n_events_per_input_file=per_file,
        input_files=inputs,
    )


CASES = [
    (es_job(10), 3),  # no inputs: one pseudo-file, a short last range
    (es_job(10), 1),
    (es_job(10), 10),
    (es_job(10), 25),  # one range larger than the file
    (es_job(12, files=3), 4),  # even
    (es_job(11, files=3), 4),  # a short last range in every file
    (es_job(1, files=2), 5),
    (es_job(0, files=2), 5),  # no events: no ranges
]


@pytest.mark.parametrize(("job", "per_range"), CASES)
def test_ranges_ids_events_and_files_agree_with_cutting_one_by_one(job: Job, per_range: int) -> None:
    expected = list(reference_cut(job, per_range))
    cut = RangeCut.of(job, per_range)
    assert len(cut) == len(expected)
    assert [cut.event_range(i) for i in range(len(cut))] == expected
    assert [cut.range_id(i) for i in range(len(cut))] == [r.range_id for r in expected]
    assert cut.range_ids(0, len(cut)) == [r.range_id for r in expected]
    assert list(cut_ranges(job, per_range)) == expected


@pytest.mark.parametrize(("job", "per_range"), CASES)
def test_index_of_round_trips(job: Job, per_range: int) -> None:
    cut = RangeCut.of(job, per_range)
    assert [cut.index_of(cut.range_id(i)) for i in range(len(cut))] == list(range(len(cut)))


def test_index_of_rejects_ids_of_other_ranges() -> None:
    cut = RangeCut.of(es_job(11, files=3), 4)  # 3 ranges per file, 9 in all
    assert cut.range_id(4) == "7-42-2-5-3"
    foreign = [
        "8-42-2-5-3",  # another task
        "7-43-2-5-3",  # another job
        "7-42-2-5-4",  # another attempt of the job
        "7-42-1-5-3",  # range 5 is in file 2, not 1
        "7-42-3-5-3",
        "7-42-4-10-3",  # past the end
        "7-42-1-0-3",  # processID 0: no range
        "7-42-02-5-3",  # not as PanDA writes it
        "garbage",
        "",
    ]
    assert [cut.index_of(rid) for rid in foreign] == [None] * len(foreign)
    assert cut.index_of("7-42-2-5-3") == 4


def test_event_range_outside_the_cut_raises() -> None:
    cut = RangeCut.of(es_job(10), 3)
    with pytest.raises(IndexError):
        cut.event_range(len(cut))
    with pytest.raises(IndexError):
        cut.event_range(-1)


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (3, 6), (4, 5), (6, 9), (8, 9), (0, 1)])
def test_columns_of_a_span_within_a_file_equal_the_objects_range_columns(start: int, stop: int) -> None:
    cut = RangeCut.of(es_job(11, files=3), 4)  # 3 ranges per file
    objects = [cut.event_range(i) for i in range(start, stop)]
    assert cut.columns(start, stop) == range_columns(objects)


@pytest.mark.parametrize(("start", "stop"), [(0, 9), (2, 7), (2, 4)])
def test_columns_of_a_span_across_files_read_back_as_the_objects(start: int, stop: int) -> None:
    cut = RangeCut.of(es_job(11, files=3), 4)
    objects = [cut.event_range(i) for i in range(start, stop)]
    assert ranges_of_columns(cut.columns(start, stop)) == objects


@pytest.mark.parametrize(("start", "stop"), [(0, 9), (2, 7), (2, 4)])
def test_columns_of_a_span_across_files_equal_the_objects_range_columns(start: int, stop: int) -> None:
    """A field every range shares (here the scope) is written once, as `range_columns` writes it.

    Fails on i16-columnar: `RangeCut.columns` writes every file field as a list as soon as the span
    crosses a file, the shared scope included (longer journal records and assignments).
    """
    cut = RangeCut.of(es_job(11, files=3), 4)
    objects = [cut.event_range(i) for i in range(start, stop)]
    assert cut.columns(start, stop) == range_columns(objects)


def test_columns_of_a_job_without_inputs() -> None:
    cut = RangeCut.of(es_job(10), 3)
    assert cut.columns(1, 4) == range_columns([cut.event_range(i) for i in (1, 2, 3)])


def test_a_job_without_an_event_count_cannot_be_cut() -> None:
    with pytest.raises(JobDefinitionError) as caught:
        RangeCut.of(es_job(None), 5)
    assert caught.value.code is ErrorCode.ES_NO_EVENTS


def test_a_cut_is_a_small_value_and_pickles_as_one() -> None:
    import pickle

    cut = RangeCut.of(es_job(1000, files=2), 10)
    assert pickle.loads(pickle.dumps(cut, protocol=5)) == cut
    assert len(pickle.dumps(cut, protocol=5)) < 400  # one cut for 200 ranges, sent once to a worker
