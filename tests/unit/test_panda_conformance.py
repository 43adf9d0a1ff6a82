"""PanDA server v1 conformance (issue 14, parts 5 to 8), against the fake server as a current server.

* 5: the final ``update_job`` carries what Pilot 3 sends (``meta_data``, ``exe_error_code``/``diag``,
  ``n_input_files``, ``cpu_conversion_factor``, resource figures, ``job_metrics``);
* 6: ``alreadydone`` / ``badattemptnr`` stop the job and nothing more is sent for it;
* 7: a legacy call on a current server answers 403: a clear error, not retried;
* 8: ``update_event_ranges`` answers 500 after applying the updates (a server bug): range updates go on in
  the background, the final update is not held back, the 500 is logged once, the outbox stays bounded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.comm.base import Command, CommandKind, JobReport
from hpcpilot.comm.outbox import Outbox, OutboxKind
from hpcpilot.comm.panda import PandaCommunicator
from hpcpilot.comm.panda_api import Api, JobUpdate, ServerCommand, job_update, parse_command, update_job
from hpcpilot.demo.jobs import demo_job
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.states import JobState
from tests.fakes.panda_server import FakePandaServer
from tests.unit.test_panda_comm import Factory, all_ranges, finished, gather, get_jobs, make_settings, until


@pytest.fixture
def fake() -> Iterator[FakePandaServer]:
    with FakePandaServer() as server:  # the defaults: a current server
        yield server


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Factory]:
    made: list[PandaCommunicator] = []

    def build(settings: Any, env: dict[str, str] | None = None) -> PandaCommunicator:
        comm = PandaCommunicator(settings, WorkLayout(tmp_path), env=env if env is not None else {})
        made.append(comm)
        return comm

    yield build
    for comm in made:
        comm._stop.set()
        with comm._lock:
            comm._wake.notify_all()
        comm._thread.join(timeout=5)


def plain_job(panda_id: int) -> dict[str, Any]:
    job = demo_job(panda_id=panda_id, n_events=10)
    job.update(
        {
            "eventService": "False",
            "inFiles": "in1.root,in2.root",
            "GUID": "5e1f8a7c-3b1d-4c2e-9f0a-000000000001,5e1f8a7c-3b1d-4c2e-9f0a-000000000002",
        }
    )
    job.update({"fsize": "10,20", "checksum": "ad:00000001,ad:00000002", "scopeIn": "s,s"})
    job.update({"dispatchDblock": "ds.a,ds.a", "prodDBlocks": "ds.a,ds.a", "realDatasetsIn": "ds.a,ds.a"})
    return job


# --------------------------------------------------------------------------- 5: the final update


def final_report(panda_id: int, **kw: Any) -> JobReport:
    fields: dict[str, Any] = {
        "state": JobState.FAILED,
        "error_code": 1305,
        "error_diag": "payload exited with 65",
        "exit_code": 65,
        "n_events": 7,
        "ranges": {"finished": 3, "failed": 1},
        "start_time": 1000.0,
        "end_time": 1060.0,
        "cpu_s": 42.4,
        "wall_s": 60.0,
        "core_count": 8,
        "metrics": {"maxRSS": 2048.0, "totRBYTES": 4096.0},
        "job_metrics": "gpu_util=0.5",
        "host": "nid0001",
    }
    fields.update(kw)
    return JobReport(panda_id, **fields)


def test_job_update_builds_the_final_fields_as_pilot3_sends_them() -> None:
    job = Job(panda_id=31, task_id=1, attempt_nr=2, input_files=(FileSpec(lfn="a"), FileSpec(lfn="b")))
    document = {"exitCode": 1305, "exeErrorCode": 65}
    update = job_update(
        final_report(31), job, node="n", site_name="Q", batch_id="b7", now=5.0, job_report=document
    )
    assert json.loads(update.meta_data) == document
    assert (update.exe_error_code, update.exe_error_diag) == (65, "payload exited with 65")
    assert update.n_input_files == 2 and update.attempt_nr == 2
    assert update.cpu_conversion_factor == 1.0 and update.cpu_s == 42.4
    assert update.job_metrics == "finished=3 failed=1 gpu_util=0.5"
    assert update.trans_exit_code == 65 and update.pilot_error_code == 1305
    params = dict(update_job(Api.V1, update).params)
    assert params["meta_data"] == update.meta_data and params["exe_error_code"] == 65
    assert params["n_input_files"] == 2 and isinstance(params["cpu_conversion_factor"], float)
    assert params["max_rss"] == 2048 and params["job_metrics"] == "finished=3 failed=1 gpu_util=0.5"
    legacy = dict(update_job(Api.LEGACY, update).params)
    assert legacy["metaData"] == update.meta_data and legacy["exeErrorCode"] == 65
    assert legacy["nInputFiles"] == 2 and legacy["cpuConversionFactor"] == 1.0
    assert JobUpdate.from_record(update.to_record()) == update  # survives the outbox


def test_job_update_of_a_heartbeat_sends_no_final_fields() -> None:
    running = final_report(31, state=JobState.RUNNING, error_code=None, exit_code=None, cpu_s=0.0)
    update = job_update(running, None, node="n", site_name="Q", batch_id="", now=5.0, job_report={"x": 1})
    assert update.meta_data == "" and update.exe_error_code is None and update.n_input_files is None
    assert update.end_time is None and update.cpu_conversion_factor is None
    finished_ok = final_report(31, state=JobState.FINISHED, error_code=None, error_diag="", exit_code=0)
    update = job_update(finished_ok, None, node="n", site_name="Q", batch_id="", now=5.0)
    assert (update.exe_error_code, update.exe_error_diag, update.pilot_error_code) == (0, "", 0)


def test_the_final_update_reaches_the_server_with_the_job_report(
    make: Factory, fake: FakePandaServer
) -> None:
    fake.add_job(plain_job(32))
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    assert len(job.input_files) == 2
    comm.report_job(final_report(32, outputs=({"path": "/w/out.root", "fsize": 9, "adler32": "0000000a"},)))
    until(lambda: fake.final_update(32), what="the final update")
    final = fake.final_update(32)
    assert final is not None
    fields = final.fields
    report = json.loads(fields["metaData"])  # the job report, as Pilot 3 sends it
    assert report["exitCode"] == 1305 and report["resource"]["transform"]["processedEvents"] == 7
    assert fields["exeErrorCode"] == 65 and fields["exeErrorDiag"] == "payload exited with 65"
    assert fields["nInputFiles"] == 2 and fields["cpuConversionFactor"] == 1.0
    assert fields["cpuConsumptionTime"] == 42 and fields["maxRSS"] == 2048 and fields["totRBYTES"] == 4096
    assert fields["jobMetrics"] == "finished=3 failed=1 gpu_util=0.5"
    assert fake.violations == []


def test_the_fake_checks_the_types_of_the_new_fields(fake: FakePandaServer) -> None:
    import urllib.request

    fake.add_job(plain_job(33))
    body = {"job_id": 33, "job_status": "running", "cpu_conversion_factor": 1, "meta_data": "{no"}
    body["n_input_files"] = "2"
    request = urllib.request.Request(
        fake.url + "/api/v1/pilot/update_job",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        reply.read()
    text = "\n".join(fake.violations)
    assert "cpu_conversion_factor must be a float" in text
    assert "n_input_files must be an integer" in text
    assert "meta_data is not JSON" in text


# --------------------------------------------------------------------------- 6: alreadydone, badattemptnr


def test_the_abandon_commands_are_parsed() -> None:
    assert parse_command("alreadydone") == (ServerCommand.ALREADYDONE,)
    assert parse_command("debug,badattemptnr") == (ServerCommand.DEBUG, ServerCommand.BADATTEMPTNR)


@pytest.mark.parametrize("word", ["alreadydone", "badattemptnr"])
def test_an_abandoned_job_is_stopped_and_nothing_more_is_sent(
    make: Factory, fake: FakePandaServer, caplog: pytest.LogCaptureFixture, word: str
) -> None:
    fake.add_job(demo_job(panda_id=41, n_events=100))
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    fake.command(41, word)
    comm.report_job(JobReport(41, JobState.RUNNING, start_time=1))
    commands: list[Command] = []
    until(lambda: gather(commands, comm.poll()), what=word)
    assert [(c.kind, c.panda_id) for c in commands] == [(CommandKind.ABANDON, 41)]
    assert word in commands[0].reason
    n_calls = len(fake.calls)
    comm.report_ranges(job, finished(job, ranges[:3]), [])  # the coordinator's last words: not sent
    comm.report_job(JobReport(41, JobState.FAILED, error_code=1144, start_time=1, end_time=2))
    comm.close()
    assert [c.call for c in fake.calls[n_calls:] if c.call.startswith("update")] == []
    assert len(comm._outbox) == 0
    assert "job 41: the PanDA server" in caplog.text and "nothing more is reported for it" in caplog.text
    assert fake.violations == []


def test_abandon_in_a_range_update_reply_drops_what_waits(make: Factory, fake: FakePandaServer) -> None:
    fake.range_update_bug = False  # the command comes with an update_event_ranges reply
    fake.add_job(demo_job(panda_id=42, n_events=100))
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    fake.command(42, "badattemptnr")
    comm.report_ranges(job, finished(job, ranges[:2]), [])
    commands: list[Command] = []
    until(lambda: gather(commands, comm.poll()), what="badattemptnr")
    assert commands[0].kind is CommandKind.ABANDON
    comm.report_ranges(job, finished(job, ranges[2:]), [])
    comm.report_job(JobReport(42, JobState.FAILED, error_code=1144, start_time=1, end_time=2))
    comm.close()
    assert fake.final_update(42) is None and fake.violations == []


def test_the_fake_flags_an_update_after_an_abandon(fake: FakePandaServer, make: Factory) -> None:
    fake.add_job(demo_job(panda_id=43, n_events=10))
    comm = make(make_settings(fake.url))
    get_jobs(comm)
    fake.command(43, "alreadydone")
    comm.report_job(JobReport(43, JobState.RUNNING, start_time=1))
    commands: list[Command] = []
    until(lambda: gather(commands, comm.poll()), what="alreadydone")
    comm._abandoned.clear()  # a pilot that would go on reporting
    comm.report_job(JobReport(43, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.violations, what="the violation")
    assert "after the server sent 'alreadydone'" in fake.violations[0]


# --------------------------------------------------------------------------- 7: legacy on a current server


def test_the_fake_forbids_the_legacy_api_by_default(fake: FakePandaServer) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(fake.url + "/server/panda/getJob", data=b"siteName=Q")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 403 and caught.value.read() == b"method getJob is forbidden"


@pytest.mark.parametrize("apis", [("v1",), ()])
def test_a_legacy_403_is_a_clear_error_and_not_retried(
    make: Factory, caplog: pytest.LogCaptureFixture, apis: tuple[str, ...]
) -> None:
    with FakePandaServer(apis=apis) as fake:  # ("v1",) asked in legacy; (): v1 404, legacy 403
        fake.add_job(plain_job(51))
        api = "legacy" if apis else "v1"
        comm = make(make_settings(fake.url, api=api, retries=3, close_wait_s=30.0))
        with pytest.raises(CommunicatorError) as caught:
            until(lambda: comm.fetch_jobs(1).jobs, what="the error")
        text = str(caught.value)
        assert fake.url in text and "legacy API is not available" in text and "403" in text
        assert not caught.value.retryable
        assert [c.status for c in fake.calls if c.api == "legacy"] == [403]  # asked once, never again
        comm.report_job(JobReport(51, JobState.FAILED, error_code=1008, start_time=1, end_time=2))
        comm.close()  # returns at once: nothing can be sent; the update stays for a later run
        assert [c.status for c in fake.calls if c.api == "legacy"] == [403]
        assert len(comm._outbox) == 1
        assert caplog.text.count("legacy API is not available") >= 1


# --------------------------------------------------------------------------- 8: update_event_ranges 500


def test_range_updates_500_do_not_hold_back_the_final_update(
    make: Factory, fake: FakePandaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake.add_job(demo_job(panda_id=61, n_events=100))
    comm = make(make_settings(fake.url, retries=3, backoff_s=0.5, backoff_max_s=60.0))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    comm.report_ranges(job, finished(job, ranges[:5]), [])
    until(lambda: len(fake.calls_of("update_event_ranges")) >= 3, what="range updates answered 500")
    comm.report_ranges(job, finished(job, ranges[5:]), [])  # the lane is in its pause now
    comm.report_job(JobReport(61, JobState.FINISHED, start_time=1, end_time=2))  # right behind
    until(lambda: fake.final_update(61), what="the final update")
    comm.close()
    assert set(fake.finished_ranges()) == {r.range_id for r in ranges}  # each sent once before the final
    assert {c.status for c in fake.calls_of("update_event_ranges")} == {500}
    # one attempt per call of the range lane: the final update did not wait for the client's retries
    bug = [
        r for r in caplog.records if "update_event_ranges" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len([r for r in bug if "server bug" in r.getMessage()]) == 1  # the same 500, logged once
    assert len(comm._outbox) == 0  # the job's leftover range updates went with its final update
    assert fake.violations == []


def test_the_final_update_waits_for_range_updates_on_a_working_server(
    make: Factory, fake: FakePandaServer
) -> None:
    fake.range_update_bug = False
    fake.add_job(demo_job(panda_id=62, n_events=100))
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    comm.report_ranges(job, finished(job, ranges), [])
    comm.report_job(JobReport(62, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.final_update(62), what="the final update")
    assert fake.finished_ranges() == {r.range_id: 1 for r in ranges}
    assert fake.violations == []  # no range update after the final one


def test_a_full_outbox_merges_range_updates_per_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    outbox = Outbox(tmp_path / "box", 3)
    for i in range(6):
        outbox.put(OutboxKind.RANGES, 1, {"eventRanges": [{"eventRangeID": f"r{i % 4}", "eventStatus": "x"}]})
        outbox.put(OutboxKind.RANGES, 2, {"eventRanges": [{"eventRangeID": f"q{i}", "eventStatus": "x"}]})
    outbox.put(OutboxKind.FINAL, 3, {})
    items = outbox.items()
    assert len(items) <= 3
    by_job = {
        i.panda_id: [e["eventRangeID"] for e in i.payload["eventRanges"]] for i in items if i.panda_id < 3
    }
    assert sorted(by_job[1]) == ["r0", "r1", "r2", "r3"]  # one entry per range
    assert sorted(by_job[2]) == [f"q{i}" for i in range(6)]  # none lost
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == sorted(i.file_name for i in items)
    again = Outbox(tmp_path / "box", 3)
    assert [i.payload for i in again.items()] == [i.payload for i in items]
    assert outbox.drop_job(2, [OutboxKind.RANGES]) == 6 and outbox.count(OutboxKind.RANGES) == 1


def test_a_held_final_update_lets_the_updates_behind_it_go(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box", 100)
    ranges = outbox.put(OutboxKind.RANGES, 1, {"eventRanges": [{"eventRangeID": "r", "eventStatus": "x"}]})
    final = outbox.put(OutboxKind.FINAL, 1, {})
    heartbeat = outbox.put(OutboxKind.HEARTBEAT, 2, {})
    assert outbox.head_job(hold="ranges") == heartbeat  # job 1's final waits for its range update
    assert outbox.head_job(hold="untried") == heartbeat
    assert outbox.head_job() == final
    outbox.mark_tried([ranges])  # sent once, answered 500: applied by a current server
    assert outbox.untried_ranges() == 0 and outbox.head_ranges(1000, untried_only=True) == ()
    assert outbox.head_job(hold="untried") == final and outbox.head_job(hold="ranges") == heartbeat
    later = outbox.put(OutboxKind.RANGES, 1, {"eventRanges": [{"eventRangeID": "s", "eventStatus": "x"}]})
    assert (
        outbox.head_ranges(1000, untried_only=True) == (later,)
        and outbox.head_job(hold="untried") == heartbeat
    )
    outbox.remove(outbox.head_ranges(1000))
    assert outbox.count(OutboxKind.RANGES) == 0 and outbox.untried_ranges() == 0
    assert outbox.head_job(hold="ranges") == final
