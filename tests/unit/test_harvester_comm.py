"""The harvester communicator in one process: the access point driven by hand, as Harvester would."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from hpcpilot import cli
from hpcpilot.comm import harvester
from hpcpilot.comm.base import BadJob, CommandKind, JobReport
from hpcpilot.comm.harvester import HarvesterCommunicator, load_file_names
from hpcpilot.comm.harvester_files import (
    HarvesterFiles,
    MappingType,
    infer_mapping,
    mapping_warnings,
    parse_harvester_config,
    parse_job_spec,
    report_dir,
    worker_attributes,
)
from hpcpilot.config.loader import load_config
from hpcpilot.config.schema import EventServiceSettings, HarvesterSettings, Settings
from hpcpilot.model.errors import CommunicatorError, ConfigError
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.model.states import JobState
from tests.fakes.harvester import FakeHarvester, MapType
from tests.fakes.harvester import HarvesterFiles as FakeFiles

PID = 4242


def job_dict(panda_id: int = PID, *, es: bool = True) -> dict[str, Any]:
    return {
        "PandaID": panda_id,
        "taskID": 7,
        "jobsetID": 3,
        "attemptNr": 1,
        "transformation": "sim.sh",
        "jobPars": "--in %IN",
        "coreCount": 1,
        "eventService": "True" if es else "False",
        "outFiles": "HITS.pool.root,log.tgz",
        "logFile": "log.tgz",
        "logGUID": "0f0f0f0f-0000-0000-0000-000000000001",
    }


def rng(i: int, panda_id: int = PID) -> dict[str, Any]:
    return {
        "eventRangeID": f"7-{panda_id}-1-{i}-1",
        "startEvent": i,
        "lastEvent": i,
        "LFN": "EVNT.pool.root",
        "GUID": "0f0f0f0f-0000-4000-8000-000000000004",
        "scope": "mc",
    }


def finished_range(job_dir: Path, i: int) -> RangeResult:
    """Range ``i`` of job `PID` finished, its output (``i`` bytes) written in ``job_dir``."""
    path = job_dir / f"HITS.pool.root.7-{PID}-1-{i}-1"
    path.write_bytes(b"x" * i)
    out = OutputFile(str(path), i, f"{zlib.adler32(b'x' * i):08x}")
    return RangeResult(PID, f"7-{PID}-1-{i}-1", RangeState.FINISHED, out, n_events=1)


def make(ap: Path, **harvester: Any) -> HarvesterCommunicator:
    values = {"poll_s": 0.01, "report_interval_s": 0.0, "heartbeat_s": 0.0, **harvester}
    settings = Settings(harvester=HarvesterSettings(**values))
    return HarvesterCommunicator(settings, WorkLayout(ap))


def scan(comm: HarvesterCommunicator) -> None:
    time.sleep(0.012)
    comm.poll()


def test_config_names_and_fallbacks(tmp_path: Path) -> None:
    text = "[payload_interaction]\njobSpecFile = pandaJobData.out\neventRangesFile = ranges.json\n"
    names, notes = parse_harvester_config(text, source="h.cfg")
    assert names.jobSpecFile == "pandaJobData.out"
    assert names.eventRangesFile == "ranges.json"
    assert names.workerAttributesFile == HarvesterFiles().workerAttributesFile
    assert notes == []
    names, notes = parse_harvester_config("[master]\nuname = x\n", source="h.cfg")
    assert names == HarvesterFiles() and "no [payload_interaction]" in notes[0]
    with pytest.raises(CommunicatorError, match="plain file name"):
        parse_harvester_config("[payload_interaction]\njobSpecFile = ../x\n", source="h.cfg")
    with pytest.raises(ConfigError, match=r"harvester\.config_file"):
        load_file_names(str(tmp_path / "missing.cfg"))


def test_cgi_job_spec() -> None:
    jobs = parse_job_spec("PandaID=12&eventService=True&coreCount=2", fmt="cgi", source="s")
    assert jobs == {"12": {"PandaID": "12", "eventService": "True", "coreCount": "2"}}
    with pytest.raises(CommunicatorError, match="PandaID"):
        parse_job_spec("a=1", fmt="cgi", source="s")


def test_jobs_consumed_once_and_many_to_one_layout(tmp_path: Path) -> None:
    for pid in (11, 12):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "HPCJobs.json").write_text(json.dumps({str(pid): job_dict(pid, es=False)}))
    (tmp_path / "worker_pandaids.json").write_text("[11, 12, 13]")
    comm = make(tmp_path, job_wait_s=0.0)
    batch = comm.fetch_jobs(10)
    assert sorted(j.panda_id for j in batch.jobs) == [11, 12]
    assert [b.panda_id for b in batch.bad] == [13]
    assert "has no spec" in str(batch.bad[0].error)
    assert batch.exhausted
    assert not (tmp_path / "worker_pandaids.json").exists()
    assert (tmp_path / "11" / "HPCJobs.json.read").exists()
    scan(comm)
    assert comm.fetch_jobs(10).jobs == ()
    comm.report_job(JobReport(11, JobState.RUNNING, start_time=time.time()))
    attrs = json.loads((tmp_path / "11" / "worker_attributes.json").read_text())
    assert attrs["jobStatus"] == "running" and "endTime" not in attrs


def test_half_written_feed_is_read_when_complete(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    comm = make(tmp_path)
    (job,) = comm.fetch_jobs(5).jobs
    whole = json.dumps({str(PID): [rng(1), rng(2)]})
    feed = tmp_path / "JobsEventRanges.json"
    feed.write_text(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING):
        scan(comm)
    assert "JobsEventRanges.json cannot be parsed yet" in caplog.text
    assert comm.fetch_ranges(job, 10).ranges == ()
    request = tmp_path / "worker_requestevents.json"
    assert not request.exists()  # a new answer would overwrite the unread one
    # Harvester goes on writing into the file it opened: the taken file completes in place
    (tmp_path / "JobsEventRanges.json.reading").write_text(whole)
    scan(comm)
    batch = comm.fetch_ranges(job, 10)
    assert [r.range_id for r in batch.ranges] == [f"7-{PID}-1-1-1", f"7-{PID}-1-2-1"]
    assert not batch.exhausted
    scan(comm)
    assert request.exists()  # read: now more may be asked for


def test_garbage_feed_is_set_aside_once_it_stops_changing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    comm = make(tmp_path)
    comm.fetch_jobs(5)
    (tmp_path / "JobsEventRanges.json").write_text("garbage{")
    with caplog.at_level(logging.ERROR):
        for _ in range(4):
            scan(comm)
        assert not list(tmp_path.glob("*.bad.*"))  # it may still be being written: kept
        monkeypatch.setattr(harvester, "STALE_S", 0.0)
        scan(comm)
    (bad,) = tmp_path.glob("JobsEventRanges.json.bad.*")
    assert bad.read_text() == "garbage{"
    assert "set aside" in caplog.text


def test_a_range_that_breaks_a_naming_rule_is_refused_alone(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    feed = [rng(1), {**rng(2), "LFN": "x;touch pwned"}, {**rng(3), "scope": "../x"}, rng(4)]
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({str(PID): feed}))
    comm = make(tmp_path)
    (job,) = comm.fetch_jobs(5).jobs
    scan(comm)
    batch = comm.fetch_ranges(job, 10)
    assert [r.range_id for r in batch.ranges] == [f"7-{PID}-1-1-1", f"7-{PID}-1-4-1"]
    assert [(e.context["PandaID"], e.context["eventRangeID"], e.context["field"]) for e in batch.errors] == [
        (PID, f"7-{PID}-1-2-1", "LFN"),
        (PID, f"7-{PID}-1-3-1", "scope"),
    ]


def test_requests_early_and_empty_list_ends(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({str(PID): [rng(i) for i in range(1, 4)]}))
    comm = make(tmp_path, request_threshold=5, request_ranges=20)
    comm.set_slots(2)
    (job,) = comm.fetch_jobs(5).jobs
    scan(comm)
    request = json.loads((tmp_path / "worker_requestevents.json").read_text())
    assert request == {str(PID): {"pandaID": PID, "taskID": 7, "jobsetID": 3, "nRanges": 20}}
    assert len(comm.fetch_ranges(job, 2).ranges) == 3  # every cached range, so all reach the journal
    # Harvester answers: the feed, then the request removed; an empty list ends the job's ranges
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({str(PID): [], "999": [rng(1, 999)]}))
    (tmp_path / "worker_requestevents.json").unlink()
    scan(comm)
    batch = comm.fetch_ranges(job, 10)
    assert not batch.ranges and batch.exhausted
    assert not (tmp_path / "worker_requestevents.json").exists()


def test_a_feed_is_kept_until_its_ranges_were_handed_out_so_a_kill_loses_none(tmp_path: Path) -> None:
    """Ranges and the empty list taken from the feed stay in it (``.reading``) until journaled.

    Before, a feed was kept as ``.read`` as soon as it was parsed, while rank 0 takes ranges (and
    journals them) only when its queue runs low: a kill in between lost them, and a resumed run
    asked again for the ranges of a job Harvester had already said had no more.
    """
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    feed = tmp_path / "JobsEventRanges.json"
    reading, read = tmp_path / "JobsEventRanges.json.reading", tmp_path / "JobsEventRanges.json.read"
    feed.write_text(json.dumps({str(PID): [rng(1), rng(2)], "999": [rng(1, 999)]}))
    comm = make(tmp_path, request_threshold=5, request_ranges=20)
    comm.set_slots(2)
    (job,) = comm.fetch_jobs(5).jobs
    scan(comm)
    assert reading.exists() and not read.exists()  # parsed, not handed out: the queue is full
    request = tmp_path / "worker_requestevents.json"
    assert request.exists()  # a held feed is parsed: a new answer overwrites nothing
    request.unlink()  # Harvester answers: no more ranges
    feed.write_text(json.dumps({str(PID): []}))
    scan(comm)
    assert feed.exists()  # the next answer waits in its file meanwhile
    # killed here: the resumed run's communicator reads the held feed again (the journal drops known ids)
    ids = [f"7-{PID}-1-1-1", f"7-{PID}-1-2-1"]
    resumed = make(tmp_path)
    assert resumed.adopt(job) is None
    assert [r.range_id for r in resumed.fetch_ranges(job, 1).ranges] == ids
    assert reading.exists() and not read.exists()  # handed out; journaled before the next call
    scan(resumed)  # the unknown job 999 holds nothing back; the next answer is taken
    assert read.exists() and not feed.exists()
    batch = resumed.fetch_ranges(job, 10)
    assert batch.ranges == () and batch.exhausted
    assert reading.exists()  # the end of the job's ranges, too, is marked read only once journaled
    scan(resumed)
    assert not reading.exists()


def test_dump_merges_into_unconsumed_file_and_restarts_after_harvester_took_it(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    comm = make(tmp_path, report_interval_s=0.0)
    (job,) = comm.fetch_jobs(5).jobs
    job_dir = tmp_path / str(PID)
    job_dir.mkdir()
    result = functools.partial(finished_range, job_dir)

    dump = tmp_path / "event_status.dump.json"
    comm.report_ranges(job, [result(1), result(2)], [])
    comm.poll()
    comm.report_ranges(
        job, [result(3), RangeResult(PID, f"7-{PID}-1-9-1", RangeState.FAILED)], [f"7-{PID}-1-8-1"]
    )
    comm.poll()
    entries = json.loads(dump.read_text())[str(PID)]
    assert [e["eventRangeID"] for e in entries] == [f"7-{PID}-1-{i}-1" for i in (1, 2, 3, 8)]
    assert entries[0]["type"] == "es_output" and entries[0]["fsize"] == 1
    assert entries[3] == {"eventRangeID": f"7-{PID}-1-8-1", "eventStatus": "failed"}
    os.rename(dump, str(dump) + ".read")  # Harvester takes it
    comm.report_ranges(job, [result(4)], [])
    comm.poll()
    assert [e["eventRangeID"] for e in json.loads(dump.read_text())[str(PID)]] == [f"7-{PID}-1-4-1"]


def test_a_resumed_run_declares_nothing_twice_in_the_dump_the_killed_run_left(tmp_path: Path) -> None:
    """Killed after writing a dump, before journaling ``reported``: the resumed run reports again."""
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    killed = make(tmp_path, report_interval_s=0.0)
    (job,) = killed.fetch_jobs(5).jobs
    job_dir = tmp_path / str(PID)
    job_dir.mkdir()
    result = functools.partial(finished_range, job_dir)

    killed.report_ranges(job, [result(1), result(2)], [f"7-{PID}-1-8-1"])
    killed.poll()
    resumed = make(tmp_path, report_interval_s=0.0)
    assert resumed.adopt(job) is None
    resumed.report_ranges(job, [result(1), result(2), result(3)], [f"7-{PID}-1-8-1"])
    resumed.poll()
    entries = json.loads((tmp_path / "event_status.dump.json").read_text())[str(PID)]
    assert [e["eventRangeID"] for e in entries] == [f"7-{PID}-1-{i}-1" for i in (1, 2, 8, 3)]
    ids = [f"7-{PID}-1-{i}-1" for i in (1, 2, 3, 8)]
    assert resumed.delivered() == [(PID, ids)]  # all of them durable: journaled ``reported``


def test_packed_ranges_are_zip_output(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    comm = make(tmp_path, pack_ranges=True)
    (job,) = comm.fetch_jobs(5).jobs
    (tmp_path / str(PID)).mkdir()
    results = []
    for i in (1, 2):
        path = tmp_path / str(PID) / f"out.{i}"
        path.write_bytes(b"y" * 10)
        results.append(
            RangeResult(PID, f"7-{PID}-1-{i}-1", RangeState.FINISHED, OutputFile(str(path), 10, "0"))
        )
    comm.report_ranges(job, results, [])
    comm.poll()
    entries = json.loads((tmp_path / "event_status.dump.json").read_text())[str(PID)]
    assert {e["type"] for e in entries} == {"zip_output"} and {e["isZip"] for e in entries} == {1}
    tar = Path(entries[0]["path"])
    assert entries[0]["fsize"] == tar.stat().st_size
    assert entries[0]["chksum"] == f"{zlib.adler32(tar.read_bytes()):08x}"


def test_final_report_order_and_kill_worker(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    comm = make(tmp_path)
    comm.fetch_jobs(5)
    now = time.time()
    report = JobReport(
        PID,
        JobState.FAILED,
        error_code=1144,
        error_diag="killed",
        start_time=now - 5,
        end_time=now,
        outputs=({"type": "output", "path": "/x/HITS", "fsize": 3, "adler32": "00000001"},),
        log={"type": "log", "path": "/x/log.tgz", "fsize": 4, "adler32": "00000002"},
        host="nid001",
    )
    comm.report_job(report)
    dump = json.loads((tmp_path / "event_status.dump.json").read_text())[str(PID)]
    assert [(e["type"], e["path"]) for e in dump] == [("output", "/x/HITS"), ("log", "/x/log.tgz")]
    assert dump[1]["guid"] == "0f0f0f0f-0000-0000-0000-000000000001"
    attrs = json.loads((tmp_path / "worker_attributes.json").read_text())
    assert attrs["jobStatus"] == "failed" and attrs["pilotErrorCode"] == 1144
    assert attrs["node"] == "nid001" and attrs["endTime"]
    assert json.loads((tmp_path / "jobReport.json").read_text())["exitCode"] == 1144
    comm.close()
    assert (tmp_path / "kill_worker.json").exists()


def test_kill_files_become_commands(tmp_path: Path) -> None:
    comm = make(tmp_path)
    (tmp_path / "pilot_softkill.json").write_text("")
    (tmp_path / "pilot_tobekilled.json").write_text(json.dumps({"PandaIDs": [5, "6"]}))
    time.sleep(0.012)
    commands = comm.poll()
    assert {(c.kind, c.panda_id) for c in commands} == {
        (CommandKind.SOFTKILL, None),
        (CommandKind.TOBEKILLED, 5),
        (CommandKind.TOBEKILLED, 6),
    }
    scan(comm)
    assert comm.poll() == ()  # consumed: seen once


def test_worker_attributes_carry_protocol_fields() -> None:
    report = JobReport(
        1, JobState.FINISHED, n_events=7, cpu_s=2.6, core_count=8, start_time=1.0, end_time=2.0
    )
    attrs = worker_attributes(report, None, "123")
    for key in ("jobStatus", "pilotErrorCode", "cpuConsumptionTime", "coreCount", "startTime", "endTime"):
        assert key in attrs
    assert attrs["batchID"] == "123" and attrs["cpuConsumptionTime"] == 3
    assert attrs["startTime"] == "1970-01-01 00:00:01"


# --- issue 14: reports where the messenger of the worker's mapping type reads them -------------------


def test_report_dir_per_mapping_type(tmp_path: Path) -> None:
    # HSF/harvester shared_file_messenger.py get_access_point: <ap>/<PandaID> for MultiJobs only
    assert report_dir(tmp_path, 7, MappingType.ONE_TO_ONE) == tmp_path
    assert report_dir(tmp_path, 7, MappingType.ONE_TO_MANY) == tmp_path
    assert report_dir(tmp_path, 7, MappingType.MANY_TO_ONE) == tmp_path / "7"
    one, many = MappingType.ONE_TO_ONE, MappingType.MANY_TO_ONE
    assert infer_mapping(spec_in_own_dir=False, listed=1, own_dir_exists=True) is one
    assert infer_mapping(spec_in_own_dir=True, listed=1, own_dir_exists=True) is many
    assert infer_mapping(spec_in_own_dir=None, listed=1, own_dir_exists=False) is one
    assert infer_mapping(spec_in_own_dir=None, listed=1, own_dir_exists=True) is many
    assert infer_mapping(spec_in_own_dir=None, listed=2, own_dir_exists=False) is many


def fail_as_the_coordinator_does(comm: HarvesterCommunicator, bad: BadJob) -> None:
    """What `Coordinator._fail_bad_job` reports for a job that could not be read, then the end."""
    assert bad.panda_id is not None
    now = time.time()
    comm.report_job(
        JobReport(
            bad.panda_id, JobState.FAILED, int(bad.error.code), str(bad.error), start_time=now, end_time=now
        )
    )
    comm.close()


def test_one_to_one_job_without_a_spec_fails_where_harvester_reads_and_ends_the_run(tmp_path: Path) -> None:
    # issue 14, 1 and 1b: Harvester's jobSpecFile is pandaJobData.out; the pilot is not told so
    files = FakeFiles(jobSpecFile="pandaJobData.out")
    with FakeHarvester(tmp_path / "ap", [job_dict(7001, es=False)], files=files, polling=False) as fake:
        comm = make(fake.access_point, job_wait_s=3600.0)
        batch = comm.fetch_jobs(10)
        assert batch.jobs == () and [b.panda_id for b in batch.bad] == [7001]
        fail_as_the_coordinator_does(comm, batch.bad[0])
        fake.tick()
        final = fake.final_attributes(7001)
        assert final is not None and final["pilotErrorCode"] == 1008, fake.summary()
        assert isinstance(fake.job_report(7001), dict)
        assert fake.misplaced_reports() == []
        assert not (fake.access_point / "7001" / "worker_attributes.json").exists()
    assert fake.violations == [], fake.summary()
    assert batch.exhausted, "every listed job has ended: the run ends, it does not wait job_wait_s"
    # the error names the files tried, the one found, and how to tell the pilot Harvester's names
    message = str(batch.bad[0].error)
    for needle in ("HPCJobs.json", "7001/HPCJobs.json", "pandaJobData.out", "harvester.config_file"):
        assert needle in message, message
    assert "HPCPILOT_HARVESTER_CONFIG" in message


def test_many_to_one_jobs_without_a_spec_fail_in_their_own_directories(tmp_path: Path) -> None:
    files = FakeFiles(jobSpecFile="pandaJobData.out")
    jobs = [job_dict(pid, es=False) for pid in (11, 12)]
    with FakeHarvester(
        tmp_path / "ap", jobs, map_type=MapType.MANY_TO_ONE, files=files, polling=False
    ) as fake:
        comm = make(fake.access_point, job_wait_s=3600.0)
        batch = comm.fetch_jobs(10)
        assert sorted(b.panda_id or 0 for b in batch.bad) == [11, 12] and batch.exhausted
        for bad in batch.bad:
            assert bad.panda_id is not None
            now = time.time()
            comm.report_job(
                JobReport(bad.panda_id, JobState.FAILED, 1008, str(bad.error), start_time=now, end_time=now)
            )
        comm.close()
        fake.tick()
        assert all(fake.final_attributes(pid) for pid in (11, 12)), fake.summary()
        assert fake.misplaced_reports() == []
    assert fake.violations == [], fake.summary()


def test_mapping_type_setting_decides_where_reports_go(tmp_path: Path) -> None:
    # a one-job ManyToOne worker (Harvester made <ap>/<PandaID>/) whose spec the pilot cannot find
    with FakeHarvester(
        tmp_path / "ap",
        [job_dict(21, es=False)],
        map_type=MapType.MANY_TO_ONE,
        files=FakeFiles(jobSpecFile="pandaJobData.out"),
        polling=False,
    ) as fake:
        comm = make(fake.access_point, mapping_type="OneToOne")  # the site says otherwise: it wins
        [bad] = comm.fetch_jobs(10).bad
        fail_as_the_coordinator_does(comm, bad)
        assert (fake.access_point / "worker_attributes.json").exists()
        assert fake.misplaced_reports() == [
            fake.access_point / "jobReport.json",
            fake.access_point / "worker_attributes.json",
        ]
        fake.tick()
        assert fake.final_attributes(21) is None, "a ManyToOne messenger does not read the top"
    assert fake.violations, "misplaced reports are violations"


def test_top_level_one_job_reports_at_the_top_and_a_resumed_job_too(tmp_path: Path) -> None:
    with FakeHarvester(tmp_path / "ap", [job_dict(31, es=False)], polling=False) as fake:
        comm = make(fake.access_point)
        [job] = comm.fetch_jobs(10).jobs
        comm.report_job(JobReport(31, JobState.RUNNING, start_time=time.time()))
        assert (fake.access_point / "worker_attributes.json").exists()
        again = make(fake.access_point)
        assert again.adopt(job) is None
        assert again.job_ap[31] == fake.access_point
        fake.tick()
        assert fake.status_sequence(31) == ["running"] and fake.misplaced_reports() == []


def test_many_to_one_with_event_service_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    es = Settings(
        harvester=HarvesterSettings(mapping_type="ManyToOne", request_ranges=48),
    )
    [warning] = mapping_warnings(es)
    assert "ManyToOne" in warning and "harvester.request_ranges" in warning and "feed_events" in warning
    assert mapping_warnings(
        Settings(
            eventservice=EventServiceSettings(mode="per_range"),
            harvester=HarvesterSettings(mapping_type="ManyToOne"),
        )
    )
    assert mapping_warnings(Settings(harvester=HarvesterSettings(mapping_type="ManyToOne"))) == []
    assert mapping_warnings(Settings(harvester=HarvesterSettings(request_ranges=48))) == []
    with caplog.at_level(logging.WARNING):
        HarvesterCommunicator.check_settings(es)
    assert "ManyToOne" in caplog.text
    # at run time: an event-service job read from its own directory
    caplog.clear()
    (tmp_path / str(PID)).mkdir()
    (tmp_path / str(PID) / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    (tmp_path / "worker_pandaids.json").write_text(json.dumps([PID]))
    with caplog.at_level(logging.WARNING):
        assert len(make(tmp_path).fetch_jobs(10).jobs) == 1
    assert f"job {PID} is an event-service job in a ManyToOne worker" in caplog.text


def test_config_check_warns_about_many_to_one_with_event_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("harvester:\n  mapping_type: ManyToOne\neventservice:\n  mode: per_range\n")
    assert cli.main(["config", "check", str(site)]) == 0
    out = capsys.readouterr().out
    assert f"WARN {site}: harvester.mapping_type is ManyToOne" in out and f"ok   {site}" in out
    plain = tmp_path / "plain.yaml"
    plain.write_text("harvester:\n  mapping_type: ManyToOne\n")
    assert cli.main(["config", "check", str(plain)]) == 0
    assert "WARN" not in capsys.readouterr().out
    typo = tmp_path / "typo.yaml"
    typo.write_text("harvester:\n  mapping_type: ManyToMany\n")
    assert cli.main(["config", "check", str(typo)]) == 2
    assert "harvester.mapping_type" in capsys.readouterr().out


def test_harvester_config_from_its_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "panda_harvester.cfg"
    loaded = load_config(env={"HPCPILOT_HARVESTER_CONFIG": str(cfg)})
    assert loaded.settings.harvester.config_file == str(cfg)
    assert loaded.origins["harvester.config_file"] == "env:HPCPILOT_HARVESTER_CONFIG"
    assert load_config(env={"HPCPILOT_HARVESTER_CONFIG": ""}).settings.harvester.config_file == ""
    both = {"HPCPILOT_HARVESTER_CONFIG": str(cfg), "HPCPILOT_HARVESTER__CONFIG_FILE": "other.cfg"}
    with pytest.raises(ConfigError, match="both set"):
        load_config(env=both)
    cli_wins = load_config(
        env={"HPCPILOT_HARVESTER_CONFIG": str(cfg)}, overrides={"harvester.config_file": "x"}
    )
    assert cli_wins.settings.harvester.config_file == "x"


def test_a_listed_job_whose_spec_was_set_aside_fails_naming_it_and_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harvester, "STALE_S", 0.0)
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "HPCJobs.json").write_text('{"77": {"PandaID": 77, ')  # never completed
    (tmp_path / "worker_pandaids.json").write_text("[77]")
    comm = make(tmp_path, job_wait_s=3600.0)
    batch = comm.fetch_jobs(10)
    for _ in range(harvester.MAX_TRIES + 2):  # set aside after MAX_TRIES looks, then failed
        if batch.bad:
            break
        scan(comm)
        batch = comm.fetch_jobs(10)
    [bad] = batch.bad
    assert bad.panda_id == 77 and "77/HPCJobs.json.bad." in str(bad.error) and batch.exhausted
    assert comm.job_ap[77] == tmp_path / "77", "Harvester made <ap>/<PandaID>/: ManyToOne"
