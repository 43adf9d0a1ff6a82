"""The panda communicator against the fake PanDA server, in process: jobs, ranges, updates, faults."""

from __future__ import annotations

import datetime
import importlib
import ipaddress
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.comm import panda_api
from hpcpilot.comm.base import Command, CommandKind, JobReport
from hpcpilot.comm.http import HttpClient
from hpcpilot.comm.outbox import Outbox, OutboxKind
from hpcpilot.comm.panda import PandaCommunicator
from hpcpilot.config.schema import EventServiceSettings, PandaSettings, RunSettings, Settings
from hpcpilot.demo.jobs import demo_job
from hpcpilot.model.errors import CommunicatorError, ConfigError, ErrorCode, HpcPilotError
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from tests.conftest import need
from tests.fakes.panda_server import FakePandaServer

QUEUE = "TEST_QUEUE"


def make_settings(
    url: str, *, run: RunSettings | None = None, es: EventServiceSettings | None = None, **panda: Any
) -> Settings:
    options: dict[str, Any] = {
        "url": url,
        "site_name": QUEUE,
        "timeout_s": 1.0,
        "retries": 3,
        "backoff_s": 0.05,
        "backoff_max_s": 0.2,
        "close_wait_s": 5.0,
        **panda,
    }
    return Settings(
        run=run or RunSettings(), eventservice=es or EventServiceSettings(), panda=PandaSettings(**options)
    )


def until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


Factory = Callable[..., PandaCommunicator]


def gather(into: list[Any], items: Iterable[Any]) -> list[Any]:
    """Add ``items`` to ``into`` and return it (truthy once anything came)."""
    into.extend(items)
    return into


@pytest.fixture
def fake() -> Iterator[FakePandaServer]:
    with FakePandaServer() as server:
        yield server


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Factory]:
    """Build communicators on the work directory ``tmp_path``; close them at the end."""
    made: list[PandaCommunicator] = []

    def build(settings: Settings, env: dict[str, str] | None = None) -> PandaCommunicator:
        comm = PandaCommunicator(settings, WorkLayout(tmp_path), env=env if env is not None else {})
        made.append(comm)
        return comm

    yield build
    for comm in made:  # no flush needed here: just stop the threads
        comm._stop.set()
        with comm._lock:
            comm._wake.notify_all()
        comm._thread.join(timeout=5)


def get_jobs(comm: PandaCommunicator, n: int = 100, expect: int = 1) -> list[Job]:
    jobs: list[Job] = []

    def more() -> bool:
        batch = comm.fetch_jobs(n)
        jobs.extend(batch.jobs)
        return len(jobs) >= expect or batch.exhausted

    until(more, what="jobs")
    return jobs


def all_ranges(comm: PandaCommunicator, job: Job, n: int = 1000) -> list[EventRange]:
    ranges: list[EventRange] = []

    def more() -> bool:
        batch = comm.fetch_ranges(job, n)
        ranges.extend(batch.ranges)
        return batch.exhausted

    until(more, what="ranges")
    return ranges


def finished(job: Job, ranges: list[EventRange]) -> list[RangeResult]:
    return [
        RangeResult(job.panda_id, r.range_id, RangeState.FINISHED, n_events=r.n_events, cpu_s=0.5)
        for r in ranges
    ]


# --------------------------------------------------------------------------- jobs and ranges


@pytest.mark.parametrize(("api", "shape"), [("v1", "list"), ("v1", "dict"), ("legacy", "dict")])
def test_jobs_and_ranges_arrive(make: Factory, api: str, shape: str) -> None:
    with FakePandaServer(range_reply_shape=shape, apis=("v1", "legacy")) as fake:  # an older server
        fake.add_job(demo_job(panda_id=11, n_events=250))
        comm = make(make_settings(fake.url, api=api))
        [job] = get_jobs(comm)
        assert job.panda_id == 11 and job.event_service
        comm.set_slots(2)
        ranges = all_ranges(comm, job, n=4)  # asking for few: requests sized by the slots alone
        assert [r.range_id for r in ranges] == [f"42-11-1-{k}-1" for k in range(1, 26)]
        sizes = {
            c.params.get("n_ranges", c.params.get("nRanges")) for c in fake.calls_of("acquire_event_ranges")
        }
        assert sizes <= {3, 6, "3", "6"}  # each slot and its prefetch of 2 (1 slot before set_slots)
        assert {c.api for c in fake.calls} == {api}
        assert fake.violations == []


def test_a_served_range_that_breaks_a_naming_rule_is_refused_alone(
    make: Factory, fake: FakePandaServer
) -> None:
    guid = "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B"
    served = [
        {"eventRangeID": f"42-16-1-{i}-1", "startEvent": i, "lastEvent": i, "LFN": "EVNT.1", "GUID": guid}
        for i in range(1, 4)
    ]
    served[1]["GUID"] = "$(touch pwned)"
    fake.add_job(demo_job(panda_id=16, n_events=3), ranges=served)
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    ranges: list[EventRange] = []
    errors: list[HpcPilotError] = []

    def more() -> bool:
        batch = comm.fetch_ranges(job, 10)
        ranges.extend(batch.ranges)
        errors.extend(batch.errors)
        return batch.exhausted

    until(more, what="ranges")
    assert [r.range_id for r in ranges] == ["42-16-1-1-1", "42-16-1-3-1"]
    [error] = errors
    assert error.context["PandaID"] == 16 and error.context["field"] == "GUID"
    assert error.context["eventRangeID"] == "42-16-1-2-1"


def test_jobs_are_asked_for_free_slots_and_end_when_the_server_has_none(
    make: Factory, fake: FakePandaServer
) -> None:
    for i in range(5):
        fake.add_job({"PandaID": 100 + i, "transformation": "true", "coreCount": 1})
    comm = make(make_settings(fake.url))
    comm.set_slots(3)
    jobs = get_jobs(comm, expect=3)
    assert len(jobs) == 3
    time.sleep(0.2)
    assert comm.fetch_jobs(100).jobs == ()  # every slot busy: nothing more asked for
    assert [c.params["n_jobs"] for c in fake.calls_of("acquire_jobs")][-1] <= 3
    for job in jobs:
        comm.report_job(JobReport(job.panda_id, JobState.FINISHED, start_time=1, end_time=2))
    jobs += get_jobs(comm, expect=2)
    assert sorted(j.panda_id for j in jobs) == list(range(100, 105))
    until(lambda: comm.fetch_jobs(100).exhausted, what="no more jobs")
    assert fake.violations == []


def test_max_jobs_bounds_what_is_acquired(make: Factory, fake: FakePandaServer) -> None:
    for i in range(5):
        fake.add_job({"PandaID": 200 + i, "transformation": "true"})
    comm = make(make_settings(fake.url, run=RunSettings(max_jobs=2)))
    comm.set_slots(8)
    jobs: list[Job] = []

    def two() -> bool:
        batch = comm.fetch_jobs(100)
        jobs.extend(batch.jobs)
        return batch.exhausted

    until(two, what="max_jobs")
    assert len(jobs) == 2
    assert sum(int(c.params["n_jobs"]) for c in fake.calls_of("acquire_jobs")) == 2


def test_a_bad_job_arrives_as_bad(make: Factory, fake: FakePandaServer) -> None:
    fake.add_job({"PandaID": 7, "coreCount": "many"})
    comm = make(make_settings(fake.url))
    bad: list[Any] = []
    until(lambda: gather(bad, comm.fetch_jobs(10).bad), what="a bad job")
    assert bad[0].panda_id == 7 and "coreCount" in str(bad[0].error)


def test_v1_404_falls_back_to_legacy(make: Factory, caplog: pytest.LogCaptureFixture) -> None:
    with FakePandaServer(apis=("legacy",)) as fake:
        fake.add_job({"PandaID": 8, "transformation": "true"})
        comm = make(make_settings(fake.url, api="v1"))
        assert [j.panda_id for j in get_jobs(comm)] == [8]
        assert [c.api for c in fake.calls] == ["unknown", "legacy"]
        assert "using the legacy API" in caplog.text


# --------------------------------------------------------------------------- updates


def test_range_updates_are_batched_and_precede_the_final_update(make: Factory, fake: FakePandaServer) -> None:
    fake.add_job(demo_job(panda_id=12, n_events=320))
    comm = make(make_settings(fake.url, es=EventServiceSettings(exhausted_status="fatal")))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    assert len(ranges) == 32
    failed = [
        RangeResult(
            12,
            ranges[0].range_id,
            RangeState.FAILED,
            error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE,
            error_diag="exit 3",
        ),
        RangeResult(
            12, ranges[1].range_id, RangeState.FAILED, error_code=ErrorCode.PAYLOAD_EXECUTION_FAILURE
        ),
    ]
    comm.report_ranges(job, finished(job, ranges[2:]) + failed, fatal=[ranges[0].range_id])
    comm.report_job(JobReport(12, JobState.FINISHED, n_events=300, start_time=1, end_time=2))
    until(lambda: fake.final_update(12), what="the final update")
    [call] = fake.calls_of("update_event_ranges")
    sent = json.loads(call.params["event_ranges"])
    assert len(sent) == 31  # 30 finished + 1 fatal; the failed attempt to be retried is not reported
    assert sent[-1] == {
        "eventRangeID": ranges[0].range_id,
        "eventStatus": "fatal",
        "errorCode": 1305,
        "errorDiag": "exit 3",
    }
    assert set(fake.finished_ranges().values()) == {1} and len(fake.finished_ranges()) == 30
    order = [c.call for c in fake.calls if c.call.startswith("update")]
    assert order == ["update_event_ranges", "update_job"]
    assert fake.violations == []


def test_range_batches_waiting_together_share_one_call(make: Factory, fake: FakePandaServer) -> None:
    fake.add_job(demo_job(panda_id=13, n_events=100))
    comm = make(make_settings(fake.url))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    fake.slow(0.4)
    comm.report_job(JobReport(13, JobState.RUNNING, start_time=1))
    until(lambda: fake.calls_of("update_job"), what="the heartbeat to be on its way")
    for chunk in (ranges[:3], ranges[3:6], ranges[6:]):
        comm.report_ranges(job, finished(job, chunk), [])
    until(lambda: len(fake.finished_ranges()) == 10, what="all range updates")
    assert len(fake.calls_of("update_event_ranges")) == 1


def test_final_update_carries_outputs_and_the_log(make: Factory, fake: FakePandaServer) -> None:
    fake.add_job(demo_job(panda_id=14, n_events=10))
    comm = make(make_settings(fake.url))
    get_jobs(comm)
    comm.report_job(
        JobReport(
            14,
            JobState.FINISHED,
            exit_code=0,
            n_events=10,
            outputs=(
                {
                    "type": "output",
                    "path": "/w/14/HITS.demo._000001.h5",
                    "fsize": 1234,
                    "adler32": "0a0b0c0d",
                },
            ),
            log={"path": "/w/14/log.demo._000001.tgz", "fsize": 99, "adler32": "00000001"},
            start_time=1000.0,
            end_time=1060.0,
            cpu_s=59.6,
            core_count=1,
            metrics={"maxRSS": 2048.0},
            host="nid0001",
        )
    )
    until(lambda: fake.final_update(14), what="the final update")
    final = fake.final_update(14)
    assert final is not None
    fields = final.fields
    assert fields["jobStatus"] == "finished" and fields["nEvents"] == 10 and fields["attemptNr"] == 1
    assert fields["startTime"] == "1970-01-01 00:16:40" and fields["endTime"] == "1970-01-01 00:17:40"
    assert fields["cpuConsumptionTime"] == 60 and fields["maxRSS"] == 2048 and fields["node"] == "nid0001"
    assert fields["siteName"] == QUEUE and fields["pilotErrorCode"] == 0 and fields["transExitCode"] == 0
    report = json.loads(fields["xml"])
    assert report["HITS.demo._000001.h5"]["fsize"] == 1234
    assert report["log.demo._000001.tgz"] == {
        "guid": "5e1f8a7c-3b1d-4c2e-9f0a-000000001001",
        "fsize": 99,
        "adler32": "00000001",
    }
    assert fake.violations == []


def test_a_newer_heartbeat_replaces_a_waiting_one(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box", 100)
    outbox.put(OutboxKind.HEARTBEAT, 1, {"n": 1})
    outbox.put(OutboxKind.RANGES, 1, {"eventRanges": [{}]})
    outbox.put(OutboxKind.HEARTBEAT, 1, {"n": 2})
    outbox.put(OutboxKind.HEARTBEAT, 2, {"n": 3})
    assert [(i.kind.value, i.payload) for i in outbox.items()] == [
        ("ranges", {"eventRanges": [{}]}),
        ("heartbeat", {"n": 2}),
        ("heartbeat", {"n": 3}),
    ]
    outbox.put(OutboxKind.FINAL, 1, {"n": 4})
    assert [i.payload for i in outbox.items()][1:] == [{"n": 3}, {"n": 4}]
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == [i.file_name for i in outbox.items()]


def test_a_full_outbox_drops_heartbeats_first_never_finals_or_ranges(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "box", 3)
    outbox.put(OutboxKind.HEARTBEAT, 1, {})
    outbox.put(OutboxKind.RANGES, 1, {"eventRanges": []})
    outbox.put(OutboxKind.HEARTBEAT, 2, {})
    outbox.put(OutboxKind.FINAL, 3, {})
    assert [(i.kind, i.panda_id) for i in outbox.items()] == [
        (OutboxKind.RANGES, 1),
        (OutboxKind.HEARTBEAT, 2),
        (OutboxKind.FINAL, 3),
    ]
    assert "dropped the 1 oldest heartbeat(s) of job(s) 1" in caplog.text
    for panda_id in (4, 5):
        outbox.put(OutboxKind.FINAL, panda_id, {})
    assert [i.kind for i in outbox.items()].count(OutboxKind.HEARTBEAT) == 0
    assert len(outbox) == 4 and "final and range updates are never dropped" in caplog.text


def test_outbox_reloads_in_order_and_sets_unreadable_files_aside(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box", 100)
    for i in range(3):
        outbox.put(OutboxKind.RANGES, i, {"eventRanges": [i]})
    (tmp_path / "box" / "000000000002-ranges-1.json").write_text("{torn")
    again = Outbox(tmp_path / "box", 100)
    assert [i.panda_id for i in again.items()] == [0, 2]
    assert (tmp_path / "box" / "000000000002-ranges-1.bad").exists()
    assert again.put(OutboxKind.FINAL, 9, {}).seq == 4
    assert [i.panda_id for i in again.head(10)] == [0, 2]


# --------------------------------------------------------------------------- faults


def test_errors_timeouts_and_malformed_replies_are_retried(make: Factory, fake: FakePandaServer) -> None:
    fake.add_job(demo_job(panda_id=15, n_events=100))
    fake.fail_next(2, 500, call="acquire_jobs")
    fake.malformed_next(1, call="acquire_event_ranges")
    fake.missing_keys_next(1, call="acquire_event_ranges")
    fake.drop_next(1, call="update_event_ranges")
    fake.fail_next(1, 503, call="update_event_ranges")
    fake.delay_next(1, 1.5, call="update_job")  # past the client's timeout of 0.5 s
    comm = make(make_settings(fake.url, timeout_s=0.5, retries=2))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    assert len(ranges) == 10
    comm.report_ranges(job, finished(job, ranges), [])
    comm.report_job(JobReport(15, JobState.RUNNING, start_time=1))
    comm.report_job(JobReport(15, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.final_update(15), what="the final update")
    assert fake.finished_ranges() == {r.range_id: 1 for r in ranges}
    statuses = [c.status for c in fake.calls_of("acquire_jobs")]
    assert statuses[:3] == [500, 500, 200]
    assert fake.violations == []


def test_an_outage_loses_nothing(make: Factory, caplog: pytest.LogCaptureFixture) -> None:
    with FakePandaServer(range_update_bug=False) as fake:  # every failure below is the outage's
        _outage_loses_nothing(make, fake, caplog)


def _outage_loses_nothing(make: Factory, fake: FakePandaServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.add_job(demo_job(panda_id=16, n_events=100))
    comm = make(make_settings(fake.url, timeout_s=0.5))
    [job] = get_jobs(comm)
    ranges = all_ranges(comm, job)
    fake.down_for(2.0)
    start = time.monotonic()
    comm.report_job(JobReport(16, JobState.RUNNING, start_time=1))
    for chunk in (ranges[:5], ranges[5:]):
        comm.report_ranges(job, finished(job, chunk), [])
    comm.report_job(JobReport(16, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.final_update(16), timeout=15, what="the final update after the outage")
    assert time.monotonic() - start >= 1.5
    assert fake.finished_ranges() == {r.range_id: 1 for r in ranges}
    # the operator is told, by whichever lane met the outage first (a loaded machine may send the
    # heartbeat only once the job lane's own retries outlast it)
    assert "could not send the" in caplog.text
    comm.close()
    assert not any((Path(comm.layout.root) / "panda_outbox").iterdir())
    assert fake.violations == []


def test_the_outbox_survives_a_new_communicator(
    tmp_path: Path, make: Factory, fake: FakePandaServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_job(demo_job(panda_id=17, n_events=50))
    first = make(make_settings(fake.url, close_wait_s=0.5))
    [job] = get_jobs(first)
    ranges = all_ranges(first, job)
    fake.stop()
    first.report_ranges(job, finished(job, ranges), [])
    first.report_job(JobReport(17, JobState.FINISHED, start_time=1, end_time=2))
    first.close()
    assert "2 update(s) could not be sent" in caplog.text
    assert len(list((tmp_path / "panda_outbox").glob("*.json"))) == 2
    fake.start()
    second = make(make_settings(fake.url))
    until(lambda: fake.final_update(17), what="the final update from the new communicator")
    assert fake.finished_ranges() == {r.range_id: 1 for r in ranges}
    second.close()
    assert list((tmp_path / "panda_outbox").glob("*.json")) == []
    assert fake.violations == []


def test_a_refused_update_is_dropped_not_retried_forever(
    make: Factory, fake: FakePandaServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_job({"PandaID": 18, "transformation": "true"})
    comm = make(make_settings(fake.url))
    get_jobs(comm)
    fake.fail_next(1, 400, call="update_job")
    comm.report_job(JobReport(18, JobState.RUNNING, start_time=1))
    comm.report_job(JobReport(18, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.final_update(18), what="the final update")
    assert "HTTP 400" in caplog.text


def test_jobs_cannot_be_fetched_while_the_server_is_unreachable(make: Factory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    comm = make(make_settings(f"http://127.0.0.1:{port}", give_up_s=0.3, timeout_s=0.2))
    errors: list[CommunicatorError] = []

    def failed() -> bool:
        try:
            comm.fetch_jobs(1)
        except CommunicatorError as exc:
            errors.append(exc)
        return bool(errors)

    until(failed, what="the error")
    assert errors[0].retryable and "cannot reach" in str(errors[0])


# --------------------------------------------------------------------------- commands


def test_tobekilled_and_softkill_become_commands(make: Factory, fake: FakePandaServer) -> None:
    fake.range_update_bug = False  # the softkill comes with an update_event_ranges reply
    fake.add_job(demo_job(panda_id=19, n_events=100))
    fake.add_job(demo_job(panda_id=20, n_events=100))
    comm = make(make_settings(fake.url))
    comm.set_slots(1)
    jobs = get_jobs(comm, expect=1)
    comm.report_job(JobReport(jobs[0].panda_id, JobState.FINISHED, start_time=1, end_time=2))
    jobs += get_jobs(comm, expect=1)
    job19, job20 = sorted(jobs, key=lambda j: j.panda_id)
    fake.command(20, "tobekilled")
    comm.report_job(JobReport(20, JobState.RUNNING, start_time=1))
    commands: list[Command] = []
    until(lambda: gather(commands, comm.poll()), what="tobekilled")
    assert [(c.kind, c.panda_id) for c in commands] == [(CommandKind.TOBEKILLED, 20)]
    ranges = comm.fetch_ranges(job20, 2).ranges or all_ranges(comm, job20)[:2]
    fake.command(20, "softkill")
    comm.report_ranges(job20, finished(job20, list(ranges)), [])
    commands.clear()
    until(lambda: gather(commands, comm.poll()), what="softkill")
    assert [(c.kind, c.panda_id) for c in commands] == [(CommandKind.SOFTKILL, 20)]
    assert comm.poll() == ()
    assert job19.panda_id == 19


# --------------------------------------------------------------------------- credentials and TLS


def test_the_token_is_sent_and_never_logged(
    make: Factory, fake: FakePandaServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "eyJhbGciOi.s3cr3t-t0ken-value"
    token = tmp_path / "token"
    token.write_text(secret + "\n")
    caplog.set_level(logging.DEBUG)
    fake.add_job({"PandaID": 21, "transformation": "true"})
    fake.fail_next(1, 500)
    fake.fail_next(1, 403, call="update_job")
    settings = make_settings(fake.url, token_file=str(token), origin="atlas.pilot", allow_insecure_token=True)
    comm = make(settings)
    get_jobs(comm)
    comm.report_job(JobReport(21, JobState.RUNNING, start_time=1))
    comm.report_job(JobReport(21, JobState.FINISHED, start_time=1, end_time=2))
    until(lambda: fake.final_update(21), what="the final update")
    comm.close()
    headers = fake.calls[-1].headers
    assert headers["Authorization"] == f"Bearer {secret}" and headers["Origin"] == "atlas.pilot"
    assert secret not in caplog.text and "s3cr3t" not in caplog.text
    assert "HTTP 403" in caplog.text  # the failures were logged, without the credentials
    assert all(secret not in p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p != token)


def test_token_from_the_environment_and_missing_credentials(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("abc")
    env = {"PANDA_AUTH_TOKEN": "tok", "PANDA_AUTH_DIR": str(tmp_path), "PANDA_AUTH_ORIGIN": "vo"}
    client = HttpClient(PandaSettings(url="http://127.0.0.1:1", allow_insecure_token=True), env)
    assert client.credentials.token_file == str(tmp_path / "tok") and client.credentials.origin == "vo"
    with pytest.raises(ConfigError, match=r"\$X509_USER_PROXY"):
        HttpClient(PandaSettings(url="https://127.0.0.1:1"), {"X509_USER_PROXY": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match=r"panda\.url"):
        HttpClient(PandaSettings(url="ftp://x"), {})
    with pytest.raises(ConfigError, match=r"panda\.site_name"):
        PandaCommunicator(
            Settings(panda=PandaSettings(url="http://127.0.0.1:1")), WorkLayout(tmp_path), env={}
        )


def test_a_token_over_plain_http_is_refused_unless_a_setting_allows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t")
    token.chmod(0o600)
    url = "http://127.0.0.1:1"
    by_setting = PandaSettings(url=url, token_file=str(token))
    by_env = {"PANDA_AUTH_TOKEN": str(token)}
    for settings, env in ((by_setting, {}), (PandaSettings(url=url), by_env)):
        with pytest.raises(ConfigError) as refused:
            HttpClient(settings, env)
        assert url in str(refused.value) and "panda.allow_insecure_token" in str(refused.value)
    caplog.set_level(logging.WARNING)
    allowed = HttpClient(PandaSettings(url=url, token_file=str(token), allow_insecure_token=True), {})
    assert allowed.credentials.token_file == str(token)
    assert "plain http" in caplog.text and "panda.allow_insecure_token" in caplog.text
    assert HttpClient(PandaSettings(url=url), {}).credentials.token_file == ""  # no token: no refusal
    secure = HttpClient(PandaSettings(url="https://127.0.0.1:1", token_file=str(token)), {})
    assert secure.credentials.token_file == str(token)  # over https the token is fine
    assert "s3cr3t" not in caplog.text


def test_a_credential_file_others_may_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token, proxy = tmp_path / "token", tmp_path / "x509up"
    token.write_text("s3cr3t")
    proxy.write_text("not a real proxy")  # over http the proxy is found, not loaded
    caplog.set_level(logging.WARNING, logger="hpcpilot.comm.http")
    for path in (token, proxy):
        path.chmod(0o600)
    HttpClient(PandaSettings(url="https://127.0.0.1:1", token_file=str(token)), {})
    HttpClient(PandaSettings(url="http://127.0.0.1:1", proxy=str(proxy)), {})
    assert not [r for r in caplog.records if "0600" in r.getMessage()]  # private files: no word
    token.chmod(0o644)
    proxy.chmod(0o640)
    client = HttpClient(PandaSettings(url="https://127.0.0.1:1", token_file=str(token)), {})
    HttpClient(PandaSettings(url="http://127.0.0.1:1"), {"X509_USER_PROXY": str(proxy)})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("panda.token_file" in w and str(token) in w and "0644" in w for w in warnings), warnings
    assert any("$X509_USER_PROXY" in w and str(proxy) in w and "0640" in w for w in warnings), warnings
    assert client.credentials.token_file == str(token)  # used all the same
    caplog.clear()
    assert client._token is not None and client._token.value() == "s3cr3t"
    token.write_text("r3fr3sh3d-token")  # a refreshed token, still 0644
    assert client._token.value() == "r3fr3sh3d-token"
    assert any("refreshed token file" in r.getMessage() and "0644" in r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in caplog.text and "r3fr3sh3d" not in caplog.text


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    client = HttpClient(PandaSettings(url="http://127.0.0.1:1", backoff_s=1.0, backoff_max_s=5.0), {})
    delays = [client.backoff(k) for k in range(6)]
    for k, delay in enumerate(delays):
        ceiling = min(5.0, 2.0**k)
        assert ceiling / 2 <= delay <= ceiling


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (made with the cryptography package, else openssl)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if _cert_with_cryptography(cert, key):
        return cert, key
    openssl = shutil.which("openssl")
    need(openssl is not None, "the cryptography package (hpcpilot[dev]) or openssl")
    assert openssl is not None
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _cert_with_cryptography(cert: Path, key: Path) -> bool:
    try:  # imported by name: an optional package, possibly without type information
        x509: Any = importlib.import_module("cryptography.x509")
        hashes: Any = importlib.import_module("cryptography.hazmat.primitives.hashes")
        serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
        ec: Any = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    except ImportError:
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return True


def test_tls_verification_rejects_an_unknown_certificate(make: Factory, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with FakePandaServer(tls=(cert, key)) as fake:
        fake.add_job({"PandaID": 22, "transformation": "true"})
        assert fake.url.startswith("https://")
        untrusting = make(make_settings(fake.url))
        errors: list[CommunicatorError] = []

        def refused() -> bool:
            try:
                untrusting.fetch_jobs(1)
            except CommunicatorError as exc:
                errors.append(exc)
            return bool(errors)

        until(refused, what="the TLS error")
        assert not errors[0].retryable and "not trusted" in str(errors[0])
        assert fake.calls == []  # nothing got through
        trusting = make(make_settings(fake.url, ca_path=str(cert)))
        assert [j.panda_id for j in get_jobs(trusting)] == [22]
        assert fake.violations == []


# --------------------------------------------------------------------------- the fake itself


def test_the_fake_records_protocol_violations(fake: FakePandaServer) -> None:
    fake.apis = ("v1", "legacy")  # an older server, which still served the legacy API

    def post(path: str, body: bytes, ctype: str) -> None:
        request = urllib.request.Request(
            fake.url + path, data=body, headers={"Content-Type": ctype, "Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            reply.read()

    post(
        "/api/v1/pilot/update_job",
        json.dumps({"job_status": "done", "colour": "red"}).encode(),
        "application/json",
    )
    post(
        "/server/panda/updateEventRanges",
        b"eventRanges=%5B%7B%22eventRangeID%22%3A%20%22x%22%7D%5D",
        "text/plain",
    )
    text = "\n".join(fake.violations)
    assert "unknown parameter 'colour'" in text
    assert "required parameter 'job_id' is missing" in text
    assert "invalid state 'done'" in text
    assert "not form-encoded" in text
    assert "lacks eventRangeID/eventStatus" in text


def test_the_fake_runs_as_a_process(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([demo_job(panda_id=61, n_events=30)]))
    record = tmp_path / "record.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.panda_server", "--jobs", str(jobs), "--record", str(record)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        client = HttpClient(PandaSettings(url=url), {})
        request = panda_api.acquire_jobs(panda_api.Api.V1, site_name=QUEUE, n_jobs=1, node="n")
        reply = client.call(
            request.encode(), lambda r: panda_api.parse_acquire_jobs(panda_api.Api.V1, json.loads(r.body))
        )
        assert [j["PandaID"] for j in reply.jobs] == [61]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert [c["call"] for c in json.loads(record.read_text())["calls"]] == ["acquire_jobs"]
