"""`hpcpilot run --resume` pieces: the job record round trip, reading a journal back, restoring books."""

from __future__ import annotations

import json
from pathlib import Path

from hpcpilot.model.job import job_from_record, job_record, parse_job
from hpcpilot.model.ranges import EventRange, RangeState, range_columns
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.parallel.books import Books, JobPhase
from hpcpilot.parallel.resume import resume_state
from hpcpilot.runtime.journal import Journal, read_journal
from tests.ranges import queued
from tests.unit.test_model_job import SERVER_JOB


def test_job_record_round_trips_exactly_through_json() -> None:
    job = parse_job(SERVER_JOB, source="test")
    assert job.input_files and job.log_file is not None and job.input_files[0].checksum is not None
    record = json.loads(json.dumps(job_record(job)))
    assert job_from_record(record) == job


def rng(i: int) -> EventRange:
    return EventRange(f"1-7-1-{i}-1", i, i, lfn="EVNT")


def _write(path: Path, killed_run: bool = True) -> None:
    """A journal of job 7 (event service, 5 ranges) and job 8 (done), as a killed run leaves it."""
    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True", "jobPars": "x"}, source="t")
    plain = parse_job({"PandaID": 8, "jobPars": "y"}, source="t")
    j = Journal(path)
    j.append("run", host="h", pid=1, ranks=4, resume=False)
    j.append("job", job=7, state="starting", **{"def": job_record(es)})
    j.append("job", job=8, state="starting", **{"def": job_record(plain)})
    j.append("ranges", job=7, **range_columns([rng(i) for i in range(1, 4)]))
    j.append("ranges", job=7, ranges=[rng(i).to_wire() for i in range(4, 6)])  # the older shape
    j.append("exhausted", job=7)
    j.collect("finished", 7, 1, ids=[rng(1).range_id], paths=["/o1"], fsize=[3], adler32=["a1"], nevents=[1])
    j.collect("finished", 7, 2, ids=[rng(2).range_id], paths=["/o2"], fsize=[4], adler32=["a2"], nevents=[1])
    j.append("reported", job=7, ids=[rng(1).range_id])
    j.append("failed", job=7, id=rng(3).range_id, attempt=1, code=1305, diag="")
    j.append("failed", job=7, id=rng(4).range_id, attempt=1, code=1305, diag="")
    j.append("failed", job=7, id=rng(4).range_id, attempt=2, code=1305, diag="")
    j.append("fatal", job=7, id=rng(4).range_id, code=1305)
    j.append("job", job=8, state="finished", code=0)
    j.flush()
    with path.open("a") as f:
        f.write('{"t": 1, "ev": "finished", "job": 7, "ids": ["torn')  # a kill mid-write


def test_resume_state_separates_done_and_open_jobs_and_their_ranges(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path)
    state = resume_state(read_journal(path))
    assert state.done == {8} and state.runs == 1 and not state.clean_end
    [open_job] = state.open
    assert open_job.job.panda_id == 7 and open_job.job.event_service and open_job.exhausted
    assert [r.range_id for r in open_job.ranges] == [rng(i).range_id for i in range(1, 6)]
    one, two = open_job.finished[rng(1).range_id], open_job.finished[rng(2).range_id]
    assert one.reported and not two.reported
    assert (two.path, two.fsize, two.adler32, two.nevents) == ("/o2", 4, "a2", 1)
    assert open_job.fatal == {rng(4).range_id: False}
    assert open_job.failed == {rng(3).range_id: 1, rng(4).range_id: 2}


def test_a_job_without_its_definition_is_not_resumable(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"t":1,"ev":"job","job":5,"state":"starting"}\n{"t":2,"ev":"end","drained_by":null}\n')
    state = resume_state(read_journal(path))
    assert state.empty and state.clean_end


def test_a_job_whose_journaled_definition_is_garbled_is_named(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"t":1,"ev":"job","job":6,"state":"starting","def":{"panda_id":"six"}}\n')
    state = resume_state(read_journal(path))
    assert state.empty
    assert len(state.problems) == 1 and state.problems[0].startswith("job 6: ")


def test_books_restore_ranges_as_the_journal_left_them() -> None:
    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True"}, source="t")
    books = Books(max_attempts=3, batch_size=8)
    book = books.add_job(es)
    done = RangeResult(7, rng(1).range_id, RangeState.FINISHED, OutputFile("/o1", 3, "a1"), 1)
    assert books.restore_range(7, rng(1), 0, done) is RangeState.FINISHED
    assert (
        books.restore_range(7, rng(2), 2, RangeResult(7, rng(2).range_id, RangeState.FATAL))
        is RangeState.FATAL
    )
    assert books.restore_range(7, rng(3), 1) is RangeState.QUEUED
    assert books.restore_range(7, rng(3), 0) is None  # known ids are ignored
    assert books.add_ranges(7, (rng(1), rng(3), rng(4))) == 1  # re-cut ranges too
    assert (book.finished, book.fatal, book.queued, book.n_events) == (1, 1, 2, 1)
    assert queued(books) == [(7, rng(3).range_id, 2), (7, rng(4).range_id, 1)]
    table = book.ranges
    one, three = table.index_of(rng(1).range_id), table.index_of(rng(3).range_id)
    assert one is not None and three is not None and table.event_range(three) == rng(3)
    out = table.output(one)
    assert out is not None and out[:2] == ("/o1", 3) and int(out[2], 16) == 0xA1
    assert books.ranges_total == 4


def test_restored_ranges_of_a_job_staging_in_wait_for_its_release() -> None:
    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True"}, source="t")
    books = Books(max_attempts=3, batch_size=8)
    book = books.add_job(es, staging=True)
    books.restore_range(7, rng(1))
    assert not books.range_queue and book.phase is JobPhase.STAGING_IN
    books.release(book)
    [(panda_id, start, stop)] = books.range_queue
    assert panda_id == 7 and [book.ranges.event_range(i) for i in range(start, stop)] == [rng(1)]


def test_harvester_adopts_a_resumed_job_and_tells_when_reports_are_written(tmp_path: Path) -> None:
    from tests.unit.test_harvester_comm import PID, job_dict, make, scan

    job = parse_job(job_dict(), source="t")
    comm = make(tmp_path, report_interval_s=0.0)
    comm.set_slots(2)
    comm.adopt(job)
    scan(comm)
    request = json.loads((tmp_path / "worker_requestevents.json").read_text())
    assert list(request) == [str(PID)]  # asks for the ranges of a job it did not read this time
    (tmp_path / str(PID)).mkdir()
    path = tmp_path / str(PID) / "out.1"
    path.write_bytes(b"x")
    # a dump the killed run wrote and Harvester did not take yet: its entries are kept
    old = {"eventRangeID": f"7-{PID}-1-9-1", "eventStatus": "finished"}
    (tmp_path / "event_status.dump.json").write_text(json.dumps({str(PID): [old]}))
    done = RangeResult(PID, f"7-{PID}-1-1-1", RangeState.FINISHED, OutputFile(str(path), 1, "0"), 1)
    comm.report_ranges(job, [done], [f"7-{PID}-1-2-1"])
    assert comm.defers_reports and comm.delivered() == []  # not written yet
    comm.poll()
    assert comm.delivered() == [(PID, [f"7-{PID}-1-1-1", f"7-{PID}-1-2-1"])]
    entries = json.loads((tmp_path / "event_status.dump.json").read_text())[str(PID)]
    assert [e["eventRangeID"] for e in entries] == [f"7-{PID}-1-9-1", f"7-{PID}-1-1-1", f"7-{PID}-1-2-1"]


def test_harvester_does_not_ask_for_ranges_of_an_exhausted_resumed_job(tmp_path: Path) -> None:
    from tests.unit.test_harvester_comm import job_dict, make, scan

    comm = make(tmp_path)
    comm.set_slots(2)
    comm.adopt(parse_job(job_dict(), source="t"), exhausted=True)
    scan(comm)
    assert not (tmp_path / "worker_requestevents.json").exists()


def test_a_job_whose_final_report_went_out_before_the_kill_is_not_taken_up(tmp_path: Path) -> None:
    """The killed run reported the job's end, but its journal did not say so yet."""
    from hpcpilot.comm.local import LocalCommunicator
    from hpcpilot.config.schema import Settings
    from hpcpilot.model.layout import WorkLayout
    from hpcpilot.model.states import JobState
    from tests.unit.test_harvester_comm import PID, job_dict, make

    job = parse_job(job_dict(), source="t")
    (tmp_path / "ap").mkdir()
    harvester = make(tmp_path / "ap")
    assert harvester.adopt(job) is None  # nothing reported yet: taken up
    (tmp_path / "ap" / "worker_attributes.json").write_text(json.dumps({"jobStatus": "finished"}))
    assert make(tmp_path / "ap").adopt(job) is JobState.FINISHED

    layout = WorkLayout(tmp_path / "local")
    layout.root.mkdir()
    layout.results.write_text(json.dumps({str(PID): {"jobStatus": "running"}}))
    assert LocalCommunicator(Settings(), layout).adopt(job) is None
    layout.results.write_text(json.dumps({str(PID): {"jobStatus": "failed"}}))
    assert LocalCommunicator(Settings(), layout).adopt(job) is JobState.FAILED


def _ended_journal(path: Path, *finals: dict[str, object]) -> None:
    """Job 7 with one finished range, then ``finals`` (final ``job`` records of later runs)."""
    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True", "jobPars": "x"}, source="t")
    j = Journal(path)
    j.append("run", host="h", pid=1, ranks=1, resume=False)
    j.append("job", job=7, state="starting", **{"def": job_record(es)})
    j.append("ranges", job=7, **range_columns([rng(1), rng(2)]))
    j.collect("finished", 7, 1, ids=[rng(1).range_id], paths=["/o1"], fsize=[3], adler32=["a1"], nevents=[1])
    j.append("reported", job=7, ids=[rng(1).range_id])
    j.append("job", job=8, state="failed", code=1201, resumable=True)  # no definition journaled
    for final in finals:
        j.append("job", job=7, **final)
    j.append("end", drained_by="SIGTERM")
    j.close()


def test_a_job_the_run_ended_early_is_open_again_and_a_done_job_is_described(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _ended_journal(path, {"state": "failed", "code": 1201, "resumable": True})
    state = resume_state(read_journal(path))
    assert state.done == {8}  # without its definition it cannot be taken up
    [job] = state.open
    assert job.job.panda_id == 7 and job.ended_early and list(job.finished) == [rng(1).range_id]
    assert [r.range_id for r in job.ranges] == [rng(1).range_id, rng(2).range_id]
    assert [(d.panda_id, d.state, d.code, d.event_service) for d in state.finals] == [
        (8, "failed", 1201, None)
    ]
    _ended_journal(tmp_path / "done.jsonl", {"state": "failed", "code": 1201})  # not resumable
    done = resume_state(read_journal(tmp_path / "done.jsonl"))
    assert done.done == {7, 8} and not done.open
    [seven, _] = done.finals
    assert (seven.event_service, seven.ranges, seven.finished, seven.n_events) == (True, 2, 1, 1)


def test_a_job_ended_early_then_finished_by_a_resumed_run_is_done(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    ended = {"state": "failed", "code": 1098, "resumable": True}
    _ended_journal(path, ended, {"state": "running"}, {"state": "finished", "code": 0})
    state = resume_state(read_journal(path))
    assert state.done == {7, 8} and not state.open
    assert [(d.panda_id, d.state) for d in state.finals] == [(7, "finished"), (8, "failed")]


def test_a_resumed_run_s_rate_counts_only_the_ranges_it_made_final() -> None:
    """summary.json's ranges_per_s (what `hpcpilot status` shows of the ended run) is this run's."""
    from hpcpilot.model.results import RangeResult as Result
    from hpcpilot.parallel.status import format_summary
    from hpcpilot.parallel.summary import run_summary

    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True"}, source="t")
    books = Books(max_attempts=3, batch_size=8)
    books.add_job(es)
    books.restore_range(
        7, rng(1), 0, Result(7, rng(1).range_id, RangeState.FINISHED, OutputFile("/o", 3, "a"), 1)
    )
    books.restore_range(7, rng(2), 2, Result(7, rng(2).range_id, RangeState.FATAL))
    books.restore_range(7, rng(3), 0)
    books.ranges_finished += 1  # this run finishes rng(3) (as `Books.record` counts it)
    summary = run_summary(books, workdir="w", wall_s=2.0, bad_jobs=[], drained_by=None, error=None)
    assert summary["ranges"]["finished"] == 2 and summary["ranges"]["fatal"] == 1
    assert summary["ranges_per_s"] == 1 / 2.0  # not (2 + 1) / 2: two were final in the run before
    assert "rate           : 0.50 ranges/s" in format_summary(summary)
