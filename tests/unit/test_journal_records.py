"""Typed journal records (`hpcpilot.runtime.records`): round trips, an earlier main's journal, bad records."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from hpcpilot.model.job import job_record, parse_job
from hpcpilot.monitor.runview import run_view
from hpcpilot.parallel.resume import resume_state
from hpcpilot.runtime.journal import Journal, read_journal
from hpcpilot.runtime.records import (
    RECORD_TYPES,
    AssignedRecord,
    DroppedRecord,
    EndRecord,
    ExhaustedRecord,
    FailedRecord,
    FatalRecord,
    FinishedRecord,
    JobRecord,
    LostRecord,
    RangesRecord,
    Record,
    RecordError,
    ReportedRecord,
    ReturnedRecord,
    RunRecord,
    WorkerRecord,
    compact,
    parse_record,
    read_records,
)

#: A journal `hpcpilot demo --events 100 --fail-events 7` wrote with main at 6c23388 (tests/data/README.md).
OLD_JOURNAL = Path(__file__).resolve().parent.parent / "data" / "journal" / "main_6c23388_demo.jsonl"

T = 1796459054.5
_ES = job_record(parse_job({"PandaID": 7, "taskID": 1, "eventService": "True", "jobPars": "x"}, source="t"))

SAMPLES: list[Record] = [
    RunRecord("nid001", 4242, 4, True, t=T),
    EndRecord("NO_LOCAL_SPACE", t=T),
    EndRecord(None, t=T),
    WorkerRecord(3, "nid003", 64, 4, "amd", "rocm-smi", 2, t=T),
    LostRecord(3, "nid003", "rank died", t=T),
    JobRecord(7, "starting", definition=_ES, t=T),
    JobRecord(7, "failed", 1098, resumable=True, t=T),
    JobRecord(7, "finished", 0, t=T),
    JobRecord(7, "finished", None, t=T),
    RangesRecord(7, ("a", "b"), (1, 11), (10, 20), "EVNT", "g", "mc", "", t=T),
    RangesRecord(7, ("a", "b"), (1, 11), (10, 20), ("E1", "E2"), "g", "mc", ("p1", "p2"), t=T),
    RangesRecord(
        7, tuple(f"1-7-1-{n}-1" for n in range(1, 6)), (1, 11, 21, 31, 99), (10, 20, 30, 40, 99), t=T
    ),
    ExhaustedRecord(7, t=T),
    AssignedRecord(7, 3, ("a", "b"), t=T, t_end=T + 1),
    AssignedRecord(7, 3, (), t=T, t_end=T),
    FinishedRecord(7, 3, ("a", "b"), ("/d/o.a", "/d/o.b"), (10, 20), ("1", "2"), (5, 6), t=T, t_end=T + 1),
    FinishedRecord(7, 3, ("a", "b"), ("/d/x", None), (10, None), ("1", None), (5, 0), t=T, t_end=T),
    FinishedRecord(7, 3, ("a",), None, (None,), (None,), (0,), t=T, t_end=T),
    FailedRecord(7, "a", 2, 1305, "exit 3", t=T),
    FailedRecord(7, "a", 1, None, "", t=T),
    FatalRecord(7, "a", 1305, t=T),
    ReturnedRecord(7, ("a",), t=T),
    ReturnedRecord(7, (), t=T),
    DroppedRecord(7, ("a", "b"), t=T),
    ReportedRecord(7, ("a", "b"), t=T),
]


def test_every_event_has_a_record_class_and_a_sample() -> None:
    assert {type(r) for r in SAMPLES} == set(RECORD_TYPES.values())
    assert len(RECORD_TYPES) == 14  # 13 event names the coordinator writes, "run"/"end" from the pilot


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record: Record) -> None:
    raw = json.loads(json.dumps(record.to_json()))
    assert raw["ev"] == record.EVENT and raw["t"] == T
    assert type(record).from_json(raw) == record
    assert parse_record(raw) == record
    written = json.loads(json.dumps(compact(record.to_json())))  # as the journal writes it
    assert parse_record(written) == record


def test_finished_paths_are_written_as_one_prefix_when_each_is_prefix_plus_id() -> None:
    written = compact(SAMPLES[15].to_json())
    assert written["path_prefix"] == "/d/o." and "paths" not in written
    assert compact(SAMPLES[16].to_json())["paths"] == ["/d/x", None]  # not prefix + id: written whole


def test_integer_columns_with_equal_steps_are_written_as_runs() -> None:
    rng = RangesRecord(
        7, tuple(f"1-7-1-{n}-1" for n in range(1, 6)), (1, 11, 21, 31, 99), (10, 20, 30, 40, 9), t=T
    )
    written = compact(rng.to_json())
    assert (written["start"], written["last"], written["id_n"]) == ("1:10:4,99", "10:10:4,9", "1-5")
    assert RangesRecord.from_json(written) == rng
    done = FinishedRecord(
        7, 0, ("a", "b", "c", "d"), None, (1, 2, 3, 4), ("w", "x", "y", "z"), (10, 10, 10, 3)
    )
    assert compact(done.to_json())["nevents"] == "10:0:3,3"
    sums = FinishedRecord(7, 0, ("a", "b"), None, (1, 2), ("0123abcd", "ffff0000"), (1, 1))
    assert compact(sums.to_json())["adler32"] == "0123abcdffff0000"
    assert FinishedRecord.from_json(compact(sums.to_json())) == sums
    assert compact(done.to_json())["adler32"] == ["w", "x", "y", "z"]  # not all 8 hex digits: a list
    assert compact({"ev": "ranges", "ids": ["a", "b", "c"], "start": [1, 5, 2], "last": [1, 2]})["start"] == [
        1,
        5,
        2,
    ]


def test_ids_differing_in_one_number_are_written_as_a_pattern_and_runs() -> None:
    ids = [f"42-1001-1-{n}-1" for n in (*range(1, 65), 66, 65, 70)]
    written = compact(ReportedRecord(1001, tuple(ids), t=T).to_json())
    assert "ids" not in written
    assert (written["id_fmt"], written["id_n"]) == ("42-1001-1-{}-1", "1-64,66,65,70")
    assert ReportedRecord.from_json(written).ids == tuple(ids)
    for odd in (["a", "b"], ["r-07", "r-8"], ["x{}1", "x{}2"], ["7"]):
        assert compact({"ev": "reported", "ids": list(odd)})["ids"] == odd  # kept as they are
    twice = compact({"t": T, "ev": "reported", "job": 1, "ids": ["1-2-3", "1-2-3", "1-2-0"]})
    assert twice["id_n"] == "3,3,0" and ReportedRecord.from_json(twice).ids == ("1-2-3", "1-2-3", "1-2-0")


def test_the_journal_writes_typed_records_and_gathers_columns_per_job_and_rank(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.write(RunRecord("h", 1, 1, False))
    journal.gather(FinishedRecord(7, 0, ("a",), ("/d/o.a",), (1,), ("x",), (2,)))
    journal.gather(AssignedRecord(7, 0, ("c",)))
    journal.gather(FinishedRecord(7, 0, ("b",), ("/d/o.b",), (3,), ("y",), (4,)))
    journal.write(EndRecord(None))
    journal.close()
    records = list(read_records(path))
    assert [r.EVENT for r in records] == ["run", "finished", "assigned", "end"]
    finished = records[1]
    assert isinstance(finished, FinishedRecord)
    assert (
        finished.ids == ("a", "b") and finished.paths == ("/d/o.a", "/d/o.b") and finished.nevents == (2, 4)
    )
    assert all(r.t > 0 for r in records)  # stamped on writing
    raw = json.loads(path.read_text().splitlines()[1])
    assert raw["path_prefix"] == "/d/o." and "paths" not in raw  # one path per flush, not one per range
    assert raw["ids"] == ["a", "b"]  # no number in them: a list
    assert list(read_journal(path))[1]["paths"] == ["/d/o.a", "/d/o.b"]  # read back in plain form


def test_new_ranges_go_before_open_groups_and_every_other_record_closes_them(tmp_path: Path) -> None:
    """A ``ranges`` record (new ranges) does not close the open groups: at batch size 1 a fetch every
    few ranges made a ``finished`` and an ``assigned`` record per range. Any other record still does,
    so a range's events stay in order (a failure between two hand-outs of the range)."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.gather(AssignedRecord(7, 1, ("a",)))
    journal.write(RangesRecord(7, ("b",), (1,), (1,), "f", "g", "s"))
    journal.gather(AssignedRecord(7, 1, ("b",)))
    journal.write(FailedRecord(7, "a", 1, 1, "boom"))
    journal.gather(AssignedRecord(7, 1, ("a",)))
    journal.close()
    records = list(read_records(path))
    assert [(r.EVENT, getattr(r, "ids", None)) for r in records] == [
        ("ranges", ("b",)),
        ("assigned", ("a", "b")),  # one record for both hand-outs around the new ranges
        ("failed", None),
        ("assigned", ("a",)),  # after the failure it follows
    ]


def test_the_journal_of_an_earlier_main_still_resumes() -> None:
    """A run that ended: its job is done, with what the journal said of it."""
    state = resume_state(read_records(OLD_JOURNAL))
    assert state.runs == 1 and state.clean_end and not state.problems
    assert state.done == {1001} and not state.open
    (final,) = state.finals
    assert (final.state, final.code, final.event_service) == ("finished", 0, True)
    assert (final.ranges, final.finished, final.fatal, final.failed_attempts, final.n_events) == (
        10,
        9,
        1,
        3,
        90,
    )


def test_the_journal_of_an_earlier_main_killed_mid_run_is_taken_up(tmp_path: Path) -> None:
    """The same journal cut before the ranges were reported: the job is open, as the kill left it."""
    lines = OLD_JOURNAL.read_text().splitlines()
    cut = next(line for line in lines if '"ev":"reported"' in line)
    path = tmp_path / "journal.jsonl"
    path.write_text("\n".join(lines[: lines.index(cut)]) + "\n")
    state = resume_state(read_records(path))
    (job,) = state.open
    assert job.job.panda_id == 1001 and job.job.event_service and job.exhausted
    assert len(job.ranges) == 10 and job.ranges[0].start_event == 1 and job.ranges[-1].last_event == 100
    assert len(job.finished) == 9 and not any(f.reported for f in job.finished.values())
    done = job.finished["42-1001-1-3-1"]
    assert done.path == "/tmp/rec_demo/1001/HITS.demo._000001.h5.42-1001-1-3-1"
    assert (done.fsize, done.adler32, done.nevents) == (18344, "d59c0d13", 10)
    assert job.fatal == {"42-1001-1-1-1": False} and job.failed == {"42-1001-1-1-1": 3}


def test_the_journal_of_an_earlier_main_reads_into_the_status_view(tmp_path: Path) -> None:
    view = run_view(read_records(OLD_JOURNAL))
    assert view.ended and view.run is not None and view.run.ranks == 1
    assert (view.ranges_total, view.ranges_finished, view.ranges_fatal, view.failed_attempts) == (10, 9, 1, 3)
    (job,) = view.jobs.values()
    assert job.state == "finished" and job.event_service and job.n_events == 90
    sizes = [n for r in read_journal(OLD_JOURNAL) if r["ev"] == "finished" for n in r["fsize"]]
    assert len(sizes) == 9 and job.bytes_out == sum(sizes)
    assert view.workers[0].host == "vm" and view.workers[0].finished == 9
    # the same through a journal copied and read again: nothing skipped
    copy = tmp_path / "journal.jsonl"
    shutil.copy(OLD_JOURNAL, copy)
    problems: list[str] = []
    assert len(list(read_records(copy, problems))) == view.records and not problems


def test_a_bad_record_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    good = '{"t":1,"ev":"run","host":"h","pid":1,"ranks":1,"resume":false}'
    bad = '{"t":2,"t_end":2,"ev":"finished","job":7,"rank":0,"ids":["a"],"paths":["/o"],"fsize":["big"]}'
    path.write_text(f"{good}\n{bad}\n")
    problems: list[str] = []
    records = list(read_records(path, problems))
    assert [r.EVENT for r in records] == ["run"]
    (problem,) = problems
    assert str(path) in problem and "line 2" in problem and "'finished'" in problem and "'fsize'" in problem
    with pytest.raises(RecordError) as caught:
        parse_record(json.loads(bad), f"{path} line 2")
    assert (caught.value.where, caught.value.event, caught.value.field) == (
        f"{path} line 2",
        "finished",
        "fsize",
    )


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"t": 1, "ev": "worker", "host": "h"}, "rank"),  # a KeyError in the status view before
        ({"t": 1, "ev": "failed", "job": "seven", "id": "a"}, "job"),
        ({"t": 1, "ev": "job", "job": 7, "state": "starting", "def": {"event_service": "maybe"}}, "def"),
        ({"t": 1, "ev": "ranges", "job": 7, "ids": ["a"], "start": [1], "last": []}, "last"),
        ({"t": 1, "ev": "assigned", "job": 7, "rank": 0, "ids": "a"}, "ids"),
        ({"ev": "exhausted", "job": 7}, "t"),
        ({"t": 1, "ev": "teleported", "job": 7}, "ev"),
    ],
)
def test_readers_skip_a_bad_record_with_a_warning_never_a_key_error(
    raw: dict[str, object], field: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(RecordError) as caught:
        parse_record(raw, "journal.jsonl line 3")
    assert caught.value.field == field and "journal.jsonl line 3" in str(caught.value)
    run = {"t": 0, "ev": "run", "host": "h", "pid": 1, "ranks": 1, "resume": False}
    with caplog.at_level(logging.WARNING):
        view = run_view([run, raw])
    assert view.records == 1 and f"'{field}'" in caplog.text
    state = resume_state([run, raw])
    assert state.runs == 1 and any(f"'{field}'" in p for p in state.problems)


def test_one_event_service_rule_the_definitions_flag() -> None:
    """The status view took ``eventService`` from a definition that has ``event_service``: a plain job
    read as event service until handed out."""
    plain = job_record(parse_job({"PandaID": 8, "jobPars": "y"}, source="t"))
    view = run_view(
        [JobRecord(8, "starting", definition=plain, t=T), JobRecord(7, "starting", definition=_ES, t=T)]
    )
    assert view.jobs[8].event_service is False and view.jobs[7].event_service is True
    assert JobRecord(8, "starting", definition=plain).event_service is False
    assert JobRecord(8, "finished", 0).event_service is None
