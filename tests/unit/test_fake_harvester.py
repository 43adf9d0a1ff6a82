"""The fake Harvester on its own: driven by hand, writing what a pilot would write."""

from __future__ import annotations

import configparser
import json
import os
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.fakes.harvester import (
    ACK_SUFFIX,
    UNKNOWN_PANDA_ID,
    FakeHarvester,
    Fault,
    HarvesterFiles,
    MapType,
    cut_ranges,
)

PID = 5001


def es_job(panda_id: int = PID, n_events: int = 50) -> dict[str, Any]:
    return {
        "PandaID": panda_id,
        "taskID": 42,
        "jobsetID": 7,
        "attemptNr": 1,
        "eventService": "True",
        "transformation": "sim.sh",
        "jobPars": "--events 'all of them' & more",
        "nEventsPerInputFile": n_events,
        "outFiles": "HITS.pool.root,log.tgz",
        "logFile": "log.tgz",
        "logGUID": "0f0f0f0f-0000-0000-0000-000000000001",
    }


def plain_job(panda_id: int) -> dict[str, Any]:
    return {
        "PandaID": panda_id,
        "taskID": 43,
        "transformation": "run.sh",
        "jobPars": "-x",
        "inFiles": f"in.{panda_id}.txt",
        "GUID": f"0f0f0f0f-0000-4000-8000-{panda_id:012d}",
        "outFiles": "out.txt",
    }


def write_json(path: Path, data: Any) -> None:
    """Atomically, as a pilot must."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def request_events(fake: FakeHarvester, n: int, panda_id: int = PID) -> None:
    write_json(
        fake.access_point / fake.files.eventRequestFile,
        {str(panda_id): {"pandaID": panda_id, "taskID": 42, "jobsetID": 7, "nRanges": n}},
    )


def take_feed(fake: FakeHarvester) -> dict[str, Any]:
    """Consume the range feed as a pilot does: rename it, then read it."""
    path = fake.access_point / fake.files.eventRangesFile
    taken = path.with_name(path.name + ".read")
    os.replace(path, taken)
    data: dict[str, Any] = json.loads(taken.read_text())
    return data


def range_output(fake: FakeHarvester, range_id: str, content: bytes = b"events") -> dict[str, Any]:
    """Write a range's output file and return its es_output entry."""
    job_dir = fake.access_point / str(PID)
    job_dir.mkdir(exist_ok=True)
    path = job_dir / f"HITS.pool.root.{range_id}"
    path.write_bytes(content)
    return {
        "path": str(path),
        "type": "es_output",
        "fsize": len(content),
        "chksum": f"{zlib.adler32(content) & 0xFFFFFFFF:08x}",
        "guid": f"guid-{range_id}",
        "eventRangeID": range_id,
        "eventStatus": "finished",
        "isZip": 0,
    }


def dump(fake: FakeHarvester, entries: list[dict[str, Any]], panda_id: int = PID) -> None:
    ap = fake.job_access_point(panda_id)
    write_json(ap / fake.files.eventStatusDumpJsonFile, {str(panda_id): entries})


def attributes(fake: FakeHarvester, status: str, panda_id: int = PID, **extra: Any) -> None:
    ap = fake.job_access_point(panda_id)
    write_json(ap / fake.files.workerAttributesFile, {"jobStatus": status, "pilotErrorCode": 0, **extra})


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeHarvester]:
    with FakeHarvester(tmp_path / "ap", [es_job()], prefeed=2, polling=False) as harvester:
        yield harvester


def test_initial_layout_one_to_one(fake: FakeHarvester) -> None:
    ap = fake.access_point
    spec = json.loads((ap / "HPCJobs.json").read_text())
    assert spec == {str(PID): es_job()}
    assert json.loads((ap / "worker_pandaids.json").read_text()) == [PID]
    assert (ap / "PoolFileCatalog_H.xml").read_text().startswith('<?xml version="1.0" ?>')
    feed = json.loads((ap / "JobsEventRanges.json").read_text())
    assert [r["eventRangeID"] for r in feed[str(PID)]] == ["42-5001-1-1-1", "42-5001-1-2-1"]
    assert set(feed[str(PID)][0]) == {"eventRangeID", "startEvent", "lastEvent", "LFN", "GUID", "scope"}
    assert fake.event_feeds[0].prefed and fake.ranges_left(PID) == 3


def test_event_request_is_fed_on_the_next_look_only(tmp_path: Path) -> None:
    with FakeHarvester(tmp_path / "ap", [es_job()], period_s=0.6) as fake:
        feed_path = fake.access_point / "JobsEventRanges.json"
        fake.wait_cycles(1)  # just after a look: the next one is 0.6 s away
        request_events(fake, 2)
        time.sleep(0.3)
        assert not feed_path.exists(), "fed before Harvester's next period"
        assert (fake.access_point / "worker_requestevents.json").exists()
        fake.wait_cycles(1)
        fake.wait_for(lambda: not (fake.access_point / "worker_requestevents.json").exists(), timeout=5)
        feed = json.loads(feed_path.read_text())
        assert [r["eventRangeID"] for r in feed[str(PID)]] == ["42-5001-1-1-1", "42-5001-1-2-1"]
        assert not (fake.access_point / "worker_requestevents.json").exists()
        assert fake.event_requests[0].content[str(PID)]["nRanges"] == 2
    assert fake.violations == []


def test_store_runs_dry_then_an_empty_list(fake: FakeHarvester) -> None:
    take_feed(fake)
    request_events(fake, 10)
    fake.tick()
    assert len(take_feed(fake)[str(PID)]) == 3
    assert not fake.told_no_more(PID)
    request_events(fake, 10)
    fake.tick()
    assert take_feed(fake) == {str(PID): []}
    assert fake.told_no_more(PID) and len(fake.served_ranges(PID)) == 5
    request_events(fake, 10)  # asking again after "no more" is a breach
    fake.tick()
    assert any("after it was fed its empty list" in v for v in fake.violations)


def test_feeding_over_an_unconsumed_feed_is_flagged(fake: FakeHarvester) -> None:
    request_events(fake, 1)  # the pre-feed is still there
    fake.tick()
    assert any("was not consumed" in v and "2 range(s)" in v for v in fake.violations)


def test_dump_is_renamed_read_and_acknowledged(fake: FakeHarvester) -> None:
    first, second = fake.served_ranges(PID)
    take_feed(fake)
    dump(fake, [range_output(fake, first), {"eventRangeID": second, "eventStatus": "failed"}])
    fake.tick()
    ap = fake.access_point
    assert not (ap / "event_status.dump.json").exists()
    assert not (ap / "event_status.dump.json.read").exists()
    [acked] = fake.consumed_dumps
    assert (
        acked.exists() and ACK_SUFFIX.search(acked.name) and acked.name.startswith("event_status.dump.json")
    )
    assert fake.finished_ranges(PID) == [first]
    assert fake.range_reports(PID) == {first: ["finished"], second: ["failed"]}
    [es] = fake.declared_outputs(PID, "es_output")
    assert es.range_id == first and es.fsize == 6
    updates = list(ap.glob("worker_updateevents.json.read.*"))
    assert len(updates) == 1
    assert json.loads(updates[0].read_text()) == {
        str(PID): [
            {"eventRangeID": first, "eventStatus": "finished"},
            {"eventRangeID": second, "eventStatus": "failed"},
        ]
    }
    assert fake.violations == []


def test_an_unacknowledged_read_file_is_read_first(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    path = fake.access_point / "event_status.dump.json.read"
    path.write_text(json.dumps({str(PID): [range_output(fake, first)]}))
    fake.tick()
    assert fake.finished_ranges(PID) == [first] and not path.exists()


def test_filetype_entry_is_flagged(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    entry = range_output(fake, first)
    entry["filetype"] = entry.pop("type")
    dump(fake, [entry])
    fake.tick()
    assert any("'filetype'" in v for v in fake.violations)
    assert fake.finished_ranges(PID) == []  # Harvester drops it: the range is not finished


def test_duplicate_finished_range_is_flagged(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    dump(fake, [range_output(fake, first)])
    fake.tick()
    assert fake.violations == []
    dump(fake, [range_output(fake, first)])
    fake.tick()
    assert fake.finished_ranges(PID) == [first, first]
    assert any(f"range {first} reported finished twice" in v for v in fake.violations)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"fsize": 5}, "differs from its size"),
        ({"chksum": "00000001"}, "differs from its adler32"),
        ({"chksum": "ad:0a1b2c3d"}, "8 lower-case hex digits"),
        ({"type": "es-output"}, "valid 'type'"),
        ({"guid": None}, "lacks ['guid']"),
        ({"eventRangeID": "42-5001-1-9-1"}, "never served"),
        ({"path": "HITS.pool.root.x"}, "not absolute"),
        ({"eventStatus": "failed"}, "declared with eventStatus 'failed'"),
    ],
)
def test_bad_es_output_entries_are_flagged(fake: FakeHarvester, change: dict[str, Any], needle: str) -> None:
    first, _ = fake.served_ranges(PID)
    entry = {**range_output(fake, first), **change}
    dump(fake, [{k: v for k, v in entry.items() if v is not None}])
    fake.tick()
    assert any(needle in v for v in fake.violations), fake.violations


def test_output_file_renamed_from_its_range_is_flagged(fake: FakeHarvester) -> None:
    first, second = fake.served_ranges(PID)
    dump(fake, [{**range_output(fake, first), "eventRangeID": second}])
    fake.tick()
    assert any(f"does not end in .{second}" in v for v in fake.violations)


def test_finished_without_output_and_unreadable_dump_are_flagged(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    dump(fake, [{"eventRangeID": first, "eventStatus": "finished"}])
    fake.tick()
    assert any("finished without its output" in v for v in fake.violations)
    (fake.access_point / "event_status.dump.json").write_text('{"5001": [')
    fake.tick()
    assert any("not valid JSON (not written atomically?)" in v for v in fake.violations)


def test_zip_output_and_job_files(fake: FakeHarvester) -> None:
    first, second = fake.served_ranges(PID)
    job_dir = fake.access_point / str(PID)
    outputs = [Path(range_output(fake, rid)["path"]) for rid in (first, second)]
    tar_path = job_dir / "ranges.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path in outputs:
            tar.add(path, arcname=path.name)
    data = tar_path.read_bytes()
    zipped = {
        "path": str(tar_path),
        "type": "zip_output",
        "fsize": len(data),
        "chksum": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "guid": "g",
        "eventStatus": "finished",
        "isZip": 1,
    }
    log = job_dir / "log.tgz"
    log.write_bytes(b"log")
    log_entry = {
        "path": str(log),
        "type": "log",
        "fsize": 3,
        "chksum": f"{zlib.adler32(b'log'):08x}",
        "guid": "0f0f0f0f-0000-0000-0000-000000000001",
        "isZip": 0,
    }
    dump(fake, [{**zipped, "eventRangeID": first}, {**zipped, "eventRangeID": second}, log_entry])
    fake.tick()
    assert fake.violations == []
    assert sorted(fake.finished_ranges(PID)) == sorted([first, second])
    assert [d.path for d in fake.declared_outputs(PID, "log")] == [str(log)]
    dump(fake, [{**log_entry, "guid": "another"}, {**zipped, "eventRangeID": "42-5001-1-3-1"}])
    fake.tick()
    assert any("not the job's logGUID" in v for v in fake.violations)
    assert any("never served" in v for v in fake.violations)


def test_attribute_sequence_and_kill_worker(fake: FakeHarvester) -> None:
    attributes(fake, "starting")
    fake.tick()
    attributes(fake, "running", nEvents=10)
    fake.tick()
    assert fake.violations == []
    (fake.access_point / "kill_worker.json").write_text("{}")
    fake.tick()
    assert fake.kill_seen
    assert any("appeared before the final worker_attributes.json of job 5001" in v for v in fake.violations)
    attributes(fake, "finished")
    fake.tick()
    assert any("changed after kill_worker.json" in v for v in fake.violations)
    assert fake.status_sequence(PID) == ["starting", "running", "finished"]


def test_attributes_going_backwards_are_flagged(fake: FakeHarvester) -> None:
    attributes(fake, "running")
    fake.tick()
    attributes(fake, "starting")
    fake.tick()
    attributes(fake, "failed", pilotErrorCode=1144)
    fake.tick()
    assert fake.final_attributes(PID) == {"jobStatus": "failed", "pilotErrorCode": 1144}
    attributes(fake, "finished")
    fake.tick()
    attributes(fake, "failed")  # no error code
    fake.tick()
    joined = "\n".join(fake.violations)
    assert "went backwards from 'running' to 'starting'" in joined
    assert "went from final 'failed' to 'finished'" in joined
    assert "failed without a pilotErrorCode" in joined


def test_outputs_after_final_attributes_are_flagged(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    attributes(fake, "finished")
    fake.tick()
    dump(fake, [range_output(fake, first)])
    fake.tick()
    assert any("declared after its final" in v for v in fake.violations)


def test_a_good_end_of_worker_has_no_violation(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    take_feed(fake)
    attributes(fake, "running")
    fake.tick()
    dump(fake, [range_output(fake, first)])
    attributes(fake, "finished", nEvents=10)
    write_json(fake.access_point / "jobReport.json", {"exitCode": 0})
    write_json(fake.access_point / "kill_worker.json", {})
    fake.tick()
    fake.stop()
    assert fake.violations == [] and fake.kill_seen
    assert fake.job_report(PID) == {"exitCode": 0}
    assert fake.final_attributes(PID) == {"jobStatus": "finished", "pilotErrorCode": 0, "nEvents": 10}


def test_removed_output_is_flagged_at_stop(fake: FakeHarvester) -> None:
    first, _ = fake.served_ranges(PID)
    entry = range_output(fake, first)
    dump(fake, [entry])
    fake.tick()
    Path(entry["path"]).unlink()
    fake.stop()
    assert any("was removed before Harvester staged it out" in v for v in fake.violations)


def test_many_to_one_layout(tmp_path: Path) -> None:
    inputs = tmp_path / "storage"
    inputs.mkdir()
    for pid in (11, 12, 13):
        (inputs / f"in.{pid}.txt").write_text(str(pid))
    jobs = [plain_job(11), plain_job(12)]
    with FakeHarvester(
        tmp_path / "ap",
        jobs,
        map_type=MapType.MANY_TO_ONE,
        more_jobs=[plain_job(13)],
        polling=False,
        input_dir=inputs,
    ) as fake:
        ap = fake.access_point
        assert json.loads((ap / "worker_pandaids.json").read_text()) == [11, 12]
        for pid in (11, 12):
            assert json.loads((ap / str(pid) / "HPCJobs.json").read_text()) == {str(pid): plain_job(pid)}
            assert f'name="in.{pid}.txt"' in (ap / str(pid) / "PoolFileCatalog_H.xml").read_text()
            assert (ap / str(pid) / f"in.{pid}.txt").is_symlink()
            assert (ap / str(pid) / f"in.{pid}.txt").read_text() == str(pid)
        assert not (ap / "HPCJobs.json").exists()
        # events are not fed to a ManyToOne worker: the request is removed all the same
        write_json(
            ap / "worker_requestevents.json",
            {"11": {"pandaID": 11, "taskID": 43, "jobsetID": 1, "nRanges": 4}},
        )
        fake.tick()
        assert not (ap / "worker_requestevents.json").exists() and not (ap / "JobsEventRanges.json").exists()
        # a job request: one more job, worker_pandaids.json lists that feed only
        write_json(ap / "worker_requestjob.json", {"nJobs": 3})
        fake.tick()
        assert json.loads((ap / "worker_pandaids.json").read_text()) == [13]
        assert (ap / "13" / "HPCJobs.json").exists() and not (ap / "worker_requestjob.json").exists()
        # nothing left: the next request stays unanswered
        write_json(ap / "worker_requestjob.json", {"nJobs": 1})
        fake.tick()
        assert (ap / "worker_requestjob.json").exists() and len(fake.job_feeds) == 2
        assert [r.content for r in fake.job_requests] == [{"nJobs": 3}, {"nJobs": 1}]
        # per-job attributes and dumps live in the job's directory
        for pid in (11, 12, 13):
            out = ap / str(pid) / "out.txt"
            out.write_text("x")
            entry = {
                "path": str(out),
                "type": "output",
                "fsize": 1,
                "chksum": f"{zlib.adler32(b'x'):08x}",
                "guid": "g",
            }
            dump(fake, [entry], panda_id=pid)
            attributes(fake, "finished", panda_id=pid)
        write_json(ap / "worker_attributes.json", {"jobStatus": "failed"})  # at the top: not read
        fake.tick()
        assert all(fake.final_attributes(pid) for pid in (11, 12, 13))
        assert fake.misplaced_reports() == [ap / "worker_attributes.json"]
        assert [len(fake.declared_outputs(pid, "output")) for pid in (11, 12, 13)] == [1, 1, 1]
        assert all(list((ap / str(pid)).glob("event_status.dump.json.read.*")) for pid in (11, 12, 13))
        # a job's dump naming another job is a breach
        dump(fake, [], panda_id=11)
        write_json(
            ap / "11" / "event_status.dump.json", {"12": [{"eventRangeID": "x", "eventStatus": "failed"}]}
        )
        fake.tick()
    assert any("not a job of this access point" in v for v in fake.violations)
    assert any("worker_attributes.json is written where" in v for v in fake.violations)


def test_one_to_one_reads_reports_only_at_the_top_of_the_access_point(tmp_path: Path) -> None:
    # the real messenger: get_access_point() is the access point itself unless mapType is ManyToOne
    with FakeHarvester(tmp_path / "ap", [plain_job(21)], polling=False) as fake:
        ap = fake.access_point
        assert fake.job_access_point(21) == ap
        (ap / "21").mkdir()
        write_json(ap / "21" / "worker_attributes.json", {"jobStatus": "failed", "pilotErrorCode": 1008})
        write_json(ap / "21" / "jobReport.json", {"exitCode": 1008})
        (ap / "99").mkdir()  # a job this worker does not have: nothing is read for it anywhere
        write_json(ap / "99" / "worker_attributes.json", {"jobStatus": "failed", "pilotErrorCode": 1008})
        fake.tick()
        assert fake.attributes(21) == [] and fake.job_report(21) is None, "Harvester sees nothing"
        assert fake.misplaced_reports() == [
            ap / "21" / "jobReport.json",
            ap / "21" / "worker_attributes.json",
        ]
        write_json(ap / "worker_attributes.json", {"jobStatus": "failed", "pilotErrorCode": 1008})
        fake.tick()
        assert fake.final_attributes(21) == {"jobStatus": "failed", "pilotErrorCode": 1008}
    assert (
        sum("is written where Harvester's messenger (OneToOne) never reads it" in v for v in fake.violations)
        == 2
    )


def test_cgi_job_spec(tmp_path: Path) -> None:
    job = es_job()
    with FakeHarvester(tmp_path / "ap", [job], job_spec_format="cgi", polling=False) as fake:
        text = (fake.access_point / "HPCJobs.json").read_text()
        assert not text.startswith("{")
        assert dict(parse_qsl(text)) == {k: str(v) for k, v in job.items()}


def test_custom_names_and_config_file(tmp_path: Path) -> None:
    files = HarvesterFiles.custom()
    with FakeHarvester(
        tmp_path / "ap", [es_job()], files=files, write_config=True, prefeed=1, polling=False
    ) as fake:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(fake.config_path.read_text())
        section = parser["payload_interaction"]
        assert section["jobSpecFile"] == "pandaJobData.out"
        assert section["eventRangesFile"] == files.eventRangesFile
        assert "heartbeatFile" not in section and "updateEventsFile" not in section
        ap = fake.access_point
        assert (ap / "pandaJobData.out").exists() and (ap / files.eventRangesFile).exists()
        assert (ap / files.pandaIDsFile).exists() and not (ap / "HPCJobs.json").exists()
        [rid] = fake.served_ranges(PID)
        write_json(ap / files.eventStatusDumpJsonFile, {str(PID): [range_output(fake, rid)]})
        write_json(ap / files.workerAttributesFile, {"jobStatus": "finished", "pilotErrorCode": 0})
        write_json(ap / files.killWorkerFile, {})
        fake.tick()
        assert fake.finished_ranges(PID) == [rid] and fake.kill_seen and fake.final_attributes(PID)
    assert fake.violations == []


def test_half_written_feed_is_completed_through_the_same_file(tmp_path: Path) -> None:
    with FakeHarvester(
        tmp_path / "ap", [es_job()], prefeed=3, event_faults=[Fault.HALF], half_pause_s=0.3, polling=False
    ) as fake:
        path = fake.access_point / "JobsEventRanges.json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(path.read_text())
        taken = path.with_name(path.name + ".reading")
        os.replace(path, taken)  # a pilot takes the half-written file
        fake.tick()
        with pytest.raises(json.JSONDecodeError):
            json.loads(taken.read_text())
        time.sleep(0.35)
        fake.tick()
        assert len(json.loads(taken.read_text())[str(PID)]) == 3
        assert not path.exists()


def test_half_written_job_feed(tmp_path: Path) -> None:
    with FakeHarvester(
        tmp_path / "ap", [es_job()], job_faults=[Fault.HALF], half_pause_s=0.2, polling=False
    ) as fake:
        spec = fake.access_point / "HPCJobs.json"
        ids = fake.access_point / "worker_pandaids.json"
        assert spec.exists() and not ids.exists()
        with pytest.raises(json.JSONDecodeError):
            json.loads(spec.read_text())
        time.sleep(0.25)
        fake.tick()
        assert json.loads(spec.read_text()) == {str(PID): es_job()}
        assert ids.exists()
        time.sleep(0.25)
        fake.tick()
        assert json.loads(ids.read_text()) == [PID]


def test_garbage_and_foreign_feeds(tmp_path: Path) -> None:
    faults = [None, Fault.GARBAGE, Fault.FOREIGN]  # the pre-feed is sound, the next two are not
    with FakeHarvester(tmp_path / "ap", [es_job()], prefeed=2, event_faults=faults, polling=False) as fake:
        check_garbage_and_foreign(fake)


def check_garbage_and_foreign(fake: FakeHarvester) -> None:
    take_feed(fake)
    request_events(fake, 2)
    fake.tick()
    path = fake.access_point / "JobsEventRanges.json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    assert fake.ranges_left(PID) == 3 and not (fake.access_point / "worker_requestevents.json").exists()
    request_events(fake, 2)
    fake.tick()  # garbage is overwritten: no ranges lost, no violation
    feed = take_feed(fake)
    assert set(feed) == {str(PID), str(UNKNOWN_PANDA_ID)}
    assert fake.foreign_ranges == {f"42-{UNKNOWN_PANDA_ID}-1-1-1"}
    assert fake.violations == []
    dump(fake, [{"eventRangeID": f"42-{UNKNOWN_PANDA_ID}-1-1-1", "eventStatus": "failed"}])
    fake.tick()
    assert any("fed for an unknown PandaID" in v for v in fake.violations)


def test_foreign_panda_id_listed_without_spec(tmp_path: Path) -> None:
    with FakeHarvester(
        tmp_path / "ap",
        [plain_job(21)],
        map_type=MapType.MANY_TO_ONE,
        job_faults=[Fault.FOREIGN],
        polling=False,
    ) as fake:
        ap = fake.access_point
        assert json.loads((ap / "worker_pandaids.json").read_text()) == [21, UNKNOWN_PANDA_ID]
        assert not (ap / str(UNKNOWN_PANDA_ID)).exists()
        assert fake.panda_ids() == [21]


def test_bad_requests_are_flagged(fake: FakeHarvester) -> None:
    take_feed(fake)
    (fake.access_point / "worker_requestevents.json").write_text('{"5001": {"pandaID"')
    fake.tick()
    assert any("event request" in v and "not valid JSON" in v for v in fake.violations)
    assert (fake.access_point / "worker_requestevents.json").exists()  # Harvester leaves it
    write_json(fake.access_point / "worker_requestevents.json", {"5001": {"pandaID": 5001, "nRanges": 2}})
    fake.tick()
    write_json(
        fake.access_point / "worker_requestevents.json",
        {"77": {"pandaID": 77, "taskID": 42, "jobsetID": 7, "nRanges": 2}},
    )
    fake.tick()
    joined = "\n".join(fake.violations)
    assert "is not {pandaID, taskID, jobsetID, nRanges}" in joined
    assert "'77', which is not a job of this worker" in joined


def test_operator_command(fake: FakeHarvester) -> None:
    path = fake.operator_command("softkill")
    assert path.name == "pilot_softkill.json" and path.read_text() == ""
    path = fake.operator_command("tobekilled", [PID])
    assert json.loads(path.read_text()) == {"PandaIDs": [PID]}


def test_cut_ranges_follow_the_input_files() -> None:
    job = {
        **es_job(n_events=15),
        "inFiles": "EVNT.1,EVNT.2",
        "GUID": "0f0f0f0f-0000-4000-8000-000000000001,0f0f0f0f-0000-4000-8000-000000000002",
        "scopeIn": "mc,mc",
    }
    ranges = cut_ranges(job, 10)
    assert [(r["eventRangeID"], r["startEvent"], r["lastEvent"], r["LFN"]) for r in ranges] == [
        ("42-5001-1-1-1", 1, 10, "EVNT.1"),
        ("42-5001-1-2-1", 11, 15, "EVNT.1"),
        ("42-5001-2-3-1", 1, 10, "EVNT.2"),
        ("42-5001-2-4-1", 11, 15, "EVNT.2"),
    ]
