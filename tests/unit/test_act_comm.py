"""The ``act`` communicator: pandaJobData.out in; heartbeat.json and output.list out, read by a fake aCT."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.comm.act import ActCommunicator
from hpcpilot.comm.act_files import heartbeat, output_list, parse_job_data, surl_of
from hpcpilot.comm.base import Communicator, JobReport
from hpcpilot.comm.local import LocalCommunicator
from hpcpilot.config.schema import ActSettings, Settings
from hpcpilot.model.errors import CommunicatorError, ConfigError, ErrorCode
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.states import JobState
from tests.fakes.act import ARC_FAILED_CODE, FakeAct, adler32_of

JOB: dict[str, Any] = {
    "PandaID": 4711,
    "taskID": 42,
    "jobsetID": 7,
    "attemptNr": 2,
    "transformation": "/bin/true",
    "jobPars": "",
    "coreCount": 8,
    "prodSourceLabel": "managed",
    "outFiles": "EVNT.pool.root,log.tgz",
    "scopeOut": "mc23,mc23",
    "logFile": "log.tgz",
    "scopeLog": "mc23",
    "logGUID": "5e1f8a7c-3b1d-4c2e-9f0a-000000004711",
}


def make(tmp_path: Path, **act: Any) -> tuple[ActCommunicator, FakeAct, Path]:
    """A communicator in ``tmp_path/session``, uploading to ``tmp_path/storage``."""
    storage = tmp_path / "storage"
    options = {"output_url": storage.as_uri(), **act}
    session = tmp_path / "session"
    session.mkdir(exist_ok=True)
    comm = ActCommunicator(Settings(act=ActSettings(**options)), WorkLayout(session))
    return comm, FakeAct(session), storage


def write_outputs(session: Path, panda_id: int) -> tuple[dict[str, object], dict[str, object]]:
    """An output and a log tarball in the job directory, as a report lists them."""
    job_dir = session / str(panda_id)
    job_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, content in (("EVNT.pool.root", b"events" * 1000), ("log.tgz", b"logs")):
        path = job_dir / name
        path.write_bytes(content)
        files.append({"path": str(path), "fsize": len(content), "adler32": adler32_of(path)})
    return files[0], files[1]


def final(panda_id: int, state: JobState, session: Path, **extra: Any) -> JobReport:
    output, log = write_outputs(session, panda_id)
    now = time.time()
    fields: dict[str, Any] = {
        "outputs": ({"type": "output", **output},),
        "log": {"type": "log", **log},
        "start_time": now - 100,
        "end_time": now,
        "cpu_s": 750.4,
        "wall_s": 100.0,
        "core_count": 8,
        "n_events": 50,
        "host": "node01",
        "metrics": {"maxRSS": 123456.0, "totRBYTES": 42.0, "notPanda": 1.0},
        "job_metrics": "gpus=0",
    }
    fields.update(extra)
    return JobReport(panda_id, state, **fields)


# --- pandaJobData.out ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["cgi", "json"])
def test_the_job_comes_from_pandajobdata_as_act_writes_it(tmp_path: Path, fmt: str) -> None:
    comm, act, _ = make(tmp_path)
    act.submit(JOB, fmt=fmt)
    batch = comm.fetch_jobs(10)
    [job] = batch.jobs
    assert batch.exhausted and not batch.bad
    assert (job.panda_id, job.attempt_nr, job.core_count) == (4711, 2, 8)
    assert [f.lfn for f in job.output_files] == ["EVNT.pool.root"] and job.log_file is not None
    assert comm.fetch_jobs(10) == type(batch)(exhausted=True)  # one ARC job runs one PanDA job


def test_json_keyed_by_pandaid_and_panda_cgi_extras() -> None:
    assert parse_job_data(json.dumps({"4711": JOB}), source="x")["PandaID"] == 4711
    cgi = "StatusCode=0&" + urllib.parse.urlencode({"PandaID": 5, "jobPars": "a&b=c d"})
    assert parse_job_data(cgi, source="x") == {"StatusCode": "0", "PandaID": "5", "jobPars": "a&b=c d"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "no PandaID"),
        ("{oops", "not valid JSON"),
        ("[1]", "no PandaID"),
        ('{"a": 1, "b": 2}', "no PandaID"),
    ],
)
def test_a_file_without_a_job_is_named(content: str, needle: str) -> None:
    with pytest.raises(CommunicatorError) as err:
        parse_job_data(content, source="/s/pandaJobData.out")
    assert needle in str(err.value) and "pandaJobData.out" in str(err.value)


def test_a_missing_job_file_names_it_and_the_setting(tmp_path: Path) -> None:
    comm, _, _ = make(tmp_path)
    with pytest.raises(CommunicatorError) as err:
        comm.fetch_jobs(1)
    assert "pandaJobData.out" in str(err.value) and "act.session_dir" in str(err.value)


def test_a_bad_job_definition_is_a_bad_job_with_its_pandaid(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path)
    act.submit({**JOB, "coreCount": "many"})
    batch = comm.fetch_jobs(1)
    [bad] = batch.bad
    assert bad.panda_id == 4711 and "coreCount" in str(bad.error) and batch.exhausted


def test_a_session_dir_setting_is_where_the_files_are(tmp_path: Path) -> None:
    session = tmp_path / "arc-session"
    FakeAct(session).submit(JOB)
    settings = Settings(act=ActSettings(session_dir=str(session), output_url="file:///x"))
    comm = ActCommunicator(settings, WorkLayout(tmp_path / "work"))
    [job] = comm.fetch_jobs(1).jobs
    comm.report_job(JobReport(job.panda_id, JobState.STARTING, start_time=1.0))
    assert (session / "heartbeat.json").exists() and not (tmp_path / "work" / "heartbeat.json").exists()


# --- heartbeat.json and output.list, read by the fake aCT --------------------------------------


def test_a_finished_job_is_validated_and_forwarded_by_act(tmp_path: Path) -> None:
    comm, act, storage = make(tmp_path)
    act.submit(JOB)
    comm.fetch_jobs(1)
    session = act.session_dir
    comm.report_job(JobReport(4711, JobState.STARTING, start_time=time.time(), core_count=8))
    assert act.heartbeat()["state"] == "starting" and act.heartbeat()["jobId"] == "4711"
    comm.report_job(JobReport(4711, JobState.RUNNING, start_time=time.time(), core_count=8))
    assert act.heartbeat()["state"] == "running"
    comm.report_job(final(4711, JobState.FINISHED, session))

    outcome = act.collect(exit_code=0)
    assert outcome.violations == []
    assert outcome.panda_status == "finished"
    update = outcome.update
    assert update is not None
    assert update["state"] == "finished" and update["jobId"] == "4711" and update["attemptNr"] == 2
    assert update["pilotErrorCode"] == 0 and update["transExitCode"] == 0
    assert update["coreCount"] == 8 and update["cpuConsumptionTime"] == 750 and update["nEvents"] == 50
    assert update["maxRSS"] == 123456 and update["totRBYTES"] == 42 and "notPanda" not in update
    assert update["jobMetrics"] == "gpus=0"
    assert len(update["startTime"]) == len("2026-01-01 00:00:00")  # epoch seconds became dates
    assert update["metaData"]["exitCode"] == 0
    xml = json.loads(act.heartbeat()["xml"])
    assert set(xml) == {"EVNT.pool.root", "log.tgz"}
    assert xml["EVNT.pool.root"]["surl"] == f"{storage.as_uri()}/EVNT.pool.root"
    assert xml["log.tgz"]["guid"] == JOB["logGUID"]
    assert set(outcome.uploaded) == {xml["EVNT.pool.root"]["surl"], xml["log.tgz"]["surl"]}
    assert (storage / "EVNT.pool.root").read_bytes() == (session / "4711" / "EVNT.pool.root").read_bytes()


def test_a_failed_job_reports_its_error_and_uploads_only_its_log(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path)
    act.submit(JOB)
    comm.fetch_jobs(1)
    diag = "payload exited with 65: " + "x" * 800
    comm.report_job(
        final(
            4711,
            JobState.FAILED,
            act.session_dir,
            error_code=int(ErrorCode.PAYLOAD_EXECUTION_FAILURE),
            error_diag=diag,
            exit_code=65,
        )
    )
    assert [line.split()[0] for line in (act.session_dir / "output.list").read_text().splitlines()] == [
        "4711/log.tgz"
    ]
    outcome = act.collect(exit_code=0)
    assert outcome.violations == [] and outcome.update is not None
    assert outcome.update["state"] == "failed"
    assert outcome.update["pilotErrorCode"] == int(ErrorCode.PAYLOAD_EXECUTION_FAILURE)
    assert outcome.update["pilotErrorDiag"] == diag[:500] and outcome.update["transExitCode"] == 65
    assert set(json.loads(act.heartbeat()["xml"])) == {"log.tgz"}


def test_a_failed_batch_job_loses_the_pilots_report() -> None:
    """Why the run must exit 0: aCT replaces what the pilot wrote by its own 9000 on donefailed."""
    outcome = FakeAct(Path("/nonexistent")).collect(exit_code=3)
    assert outcome.arc_state == "donefailed" and outcome.update is not None
    assert outcome.update["errorCode"] == ARC_FAILED_CODE
    assert ActCommunicator.exits_ok_on_failed_jobs and not LocalCommunicator.exits_ok_on_failed_jobs
    assert Communicator.exits_ok_on_failed_jobs is False


def test_heartbeat_is_rewritten_on_state_changes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comm, act, _ = make(tmp_path)
    act.submit(JOB)
    comm.fetch_jobs(1)
    writes: list[str] = []
    from hpcpilot.runtime.atomic import write_json_atomic as real

    def counting(path: Path, data: Any, **kw: Any) -> None:
        writes.append(data["state"])
        real(path, data, **kw)

    monkeypatch.setattr("hpcpilot.comm.act.write_json_atomic", counting)
    for state in (JobState.STARTING, JobState.RUNNING, JobState.RUNNING, JobState.RUNNING):
        comm.report_job(JobReport(4711, state, start_time=1.0))
    comm.report_job(final(4711, JobState.FINISHED, act.session_dir))
    assert writes == ["starting", "running", "finished"]
    assert not list(act.session_dir.glob("*.tmp*")), "no temporary left: written atomically"


def test_times_are_epoch_seconds_and_final_fields_only_at_the_end(tmp_path: Path) -> None:
    report = JobReport(1, JobState.RUNNING, start_time=1700000000.5, cpu_s=3.6, host="h")
    data = heartbeat(report, None, now=1700000100.0)
    assert data["startTime"] == 1700000000.5 and "endTime" not in data and "pilotErrorCode" not in data
    assert data["timestamp"] == "2023-11-14T22:15:00+00:00" and data["cpuConsumptionTime"] == 4
    done = heartbeat(JobReport(1, JobState.FAILED, error_code=1008, end_time=0.0), None, now=1700000100.0)
    assert done["endTime"] == 1700000100.0 and done["startTime"] == 1700000100.0
    assert done["pilotErrorCode"] == 1008


def test_the_payloads_own_job_report_is_the_metadata(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path)
    act.submit(JOB)
    comm.fetch_jobs(1)
    report = final(4711, JobState.FINISHED, act.session_dir)
    (act.session_dir / "4711" / "jobReport.json").write_text(
        json.dumps({"exitCode": 0, "reportVersion": "2.0"})
    )
    comm.report_job(report)
    assert json.loads(act.heartbeat()["metaData"])["reportVersion"] == "2.0"


def test_surl_templates() -> None:
    assert (
        surl_of("davs://se:443/atlas/", lfn="a.root", scope="mc", panda_id=1) == "davs://se:443/atlas/a.root"
    )
    templ = "root://se//atlas/{scope}/{PandaID}/{lfn}"
    assert surl_of(templ, lfn="a.root", scope="mc", panda_id=7) == "root://se//atlas/mc/7/a.root"


def test_output_list_lines_as_pilot3_writes_them(tmp_path: Path) -> None:
    from hpcpilot.comm.act_files import StagedFile

    line = output_list([StagedFile("a", "1/a", "davs://se/a", 3, "0000abcd", "g")])
    assert line == "1/a davs://se/a:checksumtype=adler32:checksumvalue=0000abcd\n"


def test_log_url_is_used_for_the_log(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path, log_url="davs://logs.example/atlas")
    act.submit(JOB)
    comm.fetch_jobs(1)
    comm.report_job(final(4711, JobState.FINISHED, act.session_dir))
    xml = json.loads(act.heartbeat()["xml"])
    assert xml["log.tgz"]["surl"] == "davs://logs.example/atlas/log.tgz"


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("act", "needle"),
    [
        ({}, "act.output_url is required"),
        ({"output_url": "/just/a/path"}, "act.output_url must be a URL"),
        ({"output_url": "davs://se/x", "log_url": "nope"}, "act.log_url must be a URL"),
    ],
)
def test_settings_are_checked(act: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        ActCommunicator.check_settings(Settings(act=ActSettings(**act)))
    assert needle in str(err.value)


# --- event service -------------------------------------------------------------------------------


def es_job() -> dict[str, Any]:
    return {**JOB, "eventService": "True", "nEventsPerInputFile": 25}


def test_event_service_ranges_are_cut_from_the_event_count(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path, events_per_range=10)
    act.submit(es_job())
    [job] = comm.fetch_jobs(1).jobs
    assert comm.ranges_expected(job) == 3
    batch = comm.fetch_ranges(job, 10)
    assert [(r.start_event, r.last_event) for r in batch.materialized()] == [(1, 10), (11, 20), (21, 25)]
    assert batch.exhausted


def test_event_service_ranges_from_the_ranges_file(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path, ranges_file="ranges.json")
    act.submit(es_job())
    ranges = [
        {
            "eventRangeID": f"42-4711-1-{i}-2",
            "startEvent": i,
            "lastEvent": i,
            "LFN": "x",
            "GUID": JOB["logGUID"],
            "scope": "s",
        }
        for i in (1, 2)
    ]
    (act.session_dir / "ranges.json").write_text(json.dumps({"4711": ranges}))
    [job] = comm.fetch_jobs(1).jobs
    assert comm.ranges_expected(job) == 2
    assert [r.range_id for r in comm.fetch_ranges(job, 5).ranges] == ["42-4711-1-1-2", "42-4711-1-2-2"]


def test_a_named_ranges_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path, ranges_file="ranges.json")
    act.submit(es_job())
    [job] = comm.fetch_jobs(1).jobs
    with pytest.raises(CommunicatorError, match=r"ranges\.json"):
        comm.fetch_ranges(job, 5)


def test_adopt_knows_a_job_the_killed_run_ended(tmp_path: Path) -> None:
    comm, act, _ = make(tmp_path)
    act.submit(JOB)
    [job] = comm.fetch_jobs(1).jobs
    comm.report_job(final(4711, JobState.FINISHED, act.session_dir))
    again, _, _ = make(tmp_path)
    assert again.adopt(job) is JobState.FINISHED
    (act.session_dir / "heartbeat.json").write_text(json.dumps({"jobId": "4711", "state": "running"}))
    assert make(tmp_path)[0].adopt(job) is None
