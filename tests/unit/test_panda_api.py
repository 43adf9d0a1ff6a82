"""The PanDA API's builders and parsers, both generations, on replies shaped like the real server's."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from hpcpilot.comm import panda_api as api
from hpcpilot.comm.panda_api import Api, Call, JobUpdate, RangeUpdate, ServerCommand
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.states import JobState

V1, LEGACY = Api.V1, Api.LEGACY


def body(request: api.Request) -> dict[str, Any]:
    encoded = request.encode()
    assert encoded.body is not None
    if request.api is V1:
        data: dict[str, Any] = json.loads(encoded.body)
        return data
    return {k: v[-1] for k, v in urllib.parse.parse_qs(encoded.body.decode()).items()}


# --------------------------------------------------------------------------- requests


def test_paths_and_methods_of_both_generations() -> None:
    args = {"panda_id": 1, "jobset_id": 2, "task_id": 3}
    v1 = [
        api.acquire_jobs(V1, site_name="S", n_jobs=1, node="n"),
        api.update_job(V1, JobUpdate(1, JobState.RUNNING)),
        api.acquire_event_ranges(V1, n_ranges=5, **args),
        api.update_event_ranges(V1, [RangeUpdate("1-1-1-1-1", "finished")]),
        api.get_available_event_range_count(V1, **args),
    ]
    assert [(r.method, r.path) for r in v1] == [
        ("POST", "/api/v1/pilot/acquire_jobs"),
        ("POST", "/api/v1/pilot/update_job"),
        ("POST", "/api/v1/event/acquire_event_ranges"),
        ("POST", "/api/v1/event/update_event_ranges"),
        ("GET", "/api/v1/event/get_available_event_range_count"),
    ]
    legacy = [
        api.acquire_jobs(LEGACY, site_name="S", n_jobs=1, node="n"),
        api.update_job(LEGACY, JobUpdate(1, JobState.RUNNING)),
        api.acquire_event_ranges(LEGACY, n_ranges=5, **args),
        api.update_event_ranges(LEGACY, [RangeUpdate("1-1-1-1-1", "finished")]),
        api.get_available_event_range_count(LEGACY, **args),
    ]
    assert [r.path for r in legacy] == [
        "/server/panda/getJob",
        "/server/panda/updateJob",
        "/server/panda/getEventRanges",
        "/server/panda/updateEventRanges",
        "/server/panda/checkEventsAvailability",
    ]
    assert all(r.method == "POST" for r in legacy)


def test_v1_bodies_are_typed_json_and_legacy_bodies_are_forms() -> None:
    v1 = api.acquire_jobs(
        V1, site_name="Q", n_jobs=3, node="nid001", worker_id="17", prod_source_label="managed"
    )
    encoded = v1.encode()
    assert dict(encoded.headers) == {"Content-Type": "application/json", "Accept": "application/json"}
    assert body(v1) == {
        "site_name": "Q",
        "n_jobs": 3,
        "node": "nid001",
        "worker_id": 17,
        "prod_source_label": "managed",
    }
    legacy = api.acquire_jobs(LEGACY, site_name="Q", n_jobs=3, node="nid001", computing_element="ce")
    assert dict(legacy.encode().headers)["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(legacy.encode().headers)["Accept"] == "application/json"
    assert body(legacy) == {"siteName": "Q", "nJobs": "3", "node": "nid001", "computingElement": "ce"}


def test_v1_get_uses_a_query_string() -> None:
    encoded = api.get_available_event_range_count(V1, panda_id=5, jobset_id=6, task_id=7).encode()
    assert encoded.body is None
    assert encoded.target == "/api/v1/event/get_available_event_range_count?job_id=5&jobset_id=6&task_id=7"


def test_update_job_fields_under_each_generation() -> None:
    update = JobUpdate(
        panda_id=42,
        state=JobState.FINISHED,
        trans_exit_code=0,
        pilot_error_code=0,
        node="nid1",
        site_name="Q",
        batch_id="123",
        cpu_s=12.6,
        core_count=8,
        start_time=0.5,
        end_time=3600.0,
        n_events=100,
        attempt_nr=2,
        metrics=(("maxRSS", 1000.4), ("notAMetric", 1.0)),
        output_report='{"a": {}}',
    )
    v1 = body(api.update_job(V1, update))
    assert v1 == {
        "job_id": 42,
        "job_status": "finished",
        "trans_exit_code": 0,
        "pilot_error_code": 0,
        "node": "nid1",
        "site_name": "Q",
        "cpu_consumption_time": 13,
        "cpu_consumption_unit": "s",
        "core_count": 8,
        "start_time": "1970-01-01 00:00:00",
        "end_time": "1970-01-01 01:00:00",
        "n_events": 100,
        "attempt_nr": 2,
        "batch_id": "123",
        "job_output_report": '{"a": {}}',
        "max_rss": 1000,
    }
    legacy = body(api.update_job(LEGACY, update))
    assert legacy["jobId"] == "42" and legacy["state"] == "finished" and legacy["xml"] == '{"a": {}}'
    assert legacy["cpuConsumptionTime"] == "13" and legacy["maxRSS"] == "1000" and legacy["batchID"] == "123"
    assert "notAMetric" not in legacy and "transExitCode" in legacy


def test_heartbeat_sends_only_what_is_known() -> None:
    assert body(api.update_job(V1, JobUpdate(7, JobState.RUNNING))) == {"job_id": 7, "job_status": "running"}


def test_job_update_survives_the_outbox_round_trip() -> None:
    update = JobUpdate(
        3, JobState.FAILED, pilot_error_code=1305, pilot_error_diag="x", metrics=(("maxPSS", 5.0),)
    )
    assert JobUpdate.from_record(json.loads(json.dumps(update.to_record()))) == update
    with pytest.raises(CommunicatorError):
        JobUpdate.from_record({"panda_id": 1, "state": "exploded"})


def test_range_updates_version_0() -> None:
    updates = [
        RangeUpdate("1-2-3-4-5", "finished", cpu_s=1.23456, core_count=1),
        RangeUpdate("1-2-3-5-5", "failed", error_code=1228, error_diag="boom"),
    ]
    for generation, key in ((V1, "event_ranges"), (LEGACY, "eventRanges")):
        sent = body(api.update_event_ranges(generation, updates))
        assert str(sent["version"]) == "0"
        assert json.loads(sent[key]) == [
            {
                "eventRangeID": "1-2-3-4-5",
                "eventStatus": "finished",
                "cpuConsumptionTime": 1.235,
                "coreCount": 1,
            },
            {"eventRangeID": "1-2-3-5-5", "eventStatus": "failed", "errorCode": 1228, "errorDiag": "boom"},
        ]
    assert [RangeUpdate.from_wire(u.to_wire()) for u in updates] == [
        RangeUpdate("1-2-3-4-5", "finished", cpu_s=1.235, core_count=1),
        updates[1],
    ]


def test_output_report_is_the_json_the_adder_reads() -> None:
    report = json.loads(
        api.output_report([("f.root", "g-1", 12, "0a0b0c0d"), ("log.tgz", "g-2", 3, "00000001")])
    )
    assert report == {
        "f.root": {"guid": "g-1", "fsize": 12, "adler32": "0a0b0c0d"},
        "log.tgz": {"guid": "g-2", "fsize": 3, "adler32": "00000001"},
    }
    assert api.output_report([]) == ""


# --------------------------------------------------------------------------- replies


JOB = {"PandaID": 11, "jobsetID": 1, "transformation": "t"}


@pytest.mark.parametrize(
    ("generation", "reply"),
    [
        (V1, {"success": True, "message": "", "data": {"StatusCode": 0, "jobs": [JOB]}}),
        (LEGACY, {"StatusCode": 0, "jobs": [JOB]}),
        (LEGACY, {"StatusCode": "0", **JOB}),
        (LEGACY, {"StatusCode": "0", "jobs": json.dumps([JOB])}),  # from an urlencoded reply
    ],
)
def test_jobs_replies(generation: Api, reply: object) -> None:
    parsed = api.parse_acquire_jobs(generation, reply)
    assert not parsed.no_jobs
    assert [j["PandaID"] for j in parsed.jobs] == [11]
    assert "StatusCode" not in parsed.jobs[0]


@pytest.mark.parametrize(
    ("generation", "reply"),
    [
        (V1, {"success": False, "message": "No jobs in PanDA", "data": None}),
        (V1, {"success": True, "message": "", "data": {"StatusCode": 0, "jobs": []}}),
        (V1, {"success": True, "message": "", "data": []}),
        (LEGACY, {"StatusCode": 20}),
        (LEGACY, {"StatusCode": "20"}),
        (LEGACY, {}),  # an empty reply
    ],
)
def test_no_jobs(generation: Api, reply: object) -> None:
    assert api.parse_acquire_jobs(generation, reply).no_jobs


def test_urlencoded_reply_is_decoded() -> None:
    decoded = api.decode_reply(Call.ACQUIRE_JOBS, b"StatusCode=20")
    assert decoded == {"StatusCode": "20"}
    assert api.parse_acquire_jobs(LEGACY, decoded).no_jobs
    assert api.decode_reply(Call.ACQUIRE_JOBS, b"") == {}


@pytest.mark.parametrize(
    ("generation", "reply", "field"),
    [
        (V1, {"message": "", "data": None}, "success"),
        (V1, {"success": "yes", "data": None}, "success"),
        (V1, {"success": True, "message": ""}, "data"),
        (V1, {"success": True, "data": "text"}, "jobs"),
        (V1, {"success": True, "data": {"StatusCode": 0}}, "jobs"),
        (LEGACY, {"jobs": [JOB]}, "StatusCode"),
        (LEGACY, {"StatusCode": "zero"}, "StatusCode"),
        (LEGACY, {"StatusCode": 0, "jobs": "{oops"}, "jobs"),
    ],
)
def test_malformed_job_replies_name_call_and_field(generation: Api, reply: object, field: str) -> None:
    with pytest.raises(CommunicatorError) as err:
        api.parse_acquire_jobs(generation, reply)
    assert err.value.context == {"call": "acquire_jobs", "field": field}
    assert str(err.value).startswith("acquire_jobs: ") and err.value.retryable


def test_broken_json_is_retryable_and_names_the_call() -> None:
    with pytest.raises(CommunicatorError) as err:
        api.decode_reply(Call.UPDATE_JOB, b'{"success": tru')
    assert err.value.retryable and err.value.context == {"call": "update_job", "field": "body"}
    with pytest.raises(CommunicatorError):
        api.decode_reply(Call.UPDATE_JOB, b"<html>proxy error</html>")


@pytest.mark.parametrize(
    ("code", "retryable", "rejected"),
    [(10, True, False), (30, True, False), (50, False, True), (60, False, False), (70, False, False)],
)
def test_status_codes(code: int, retryable: bool, rejected: bool) -> None:
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(LEGACY, {"StatusCode": code, "ErrorDiag": "why"})
    assert err.value.retryable is retryable
    assert bool(err.value.context.get("rejected")) is rejected
    assert f"StatusCode {code}" in str(err.value) and "why" in str(err.value)


def test_v1_refusals() -> None:
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(V1, {"success": False, "message": "Timed out", "data": None})
    assert err.value.retryable
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(
            V1, {"success": False, "message": "production or pilot role required", "data": None}
        )
    assert not err.value.retryable and "rejected" not in err.value.context
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(
            V1, {"success": False, "message": "Invalid job status: bad", "data": {"StatusCode": 50}}
        )
    assert not err.value.retryable and err.value.context["rejected"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (None, ()),
        ("NULL", ()),
        ("tobekilled", (ServerCommand.TOBEKILLED,)),
        ("softkill", (ServerCommand.SOFTKILL,)),
        ("debug,tobekilled", (ServerCommand.DEBUG, ServerCommand.TOBEKILLED)),
        ("debugoff", (ServerCommand.DEBUGOFF,)),
        ("tail -30 payload.stdout", (ServerCommand.DEBUG,)),
        ("nocleanup", ()),
    ],
)
def test_update_job_commands(command: str | None, expected: tuple[ServerCommand, ...]) -> None:
    v1 = api.parse_update_job(
        V1, {"success": True, "message": "", "data": {"StatusCode": 0, "command": command}}
    )
    legacy = api.parse_update_job(LEGACY, {"StatusCode": "0", "command": command})
    assert v1.commands == legacy.commands == expected


def test_update_job_reply_without_status_names_the_field() -> None:
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(V1, {"success": True, "message": "", "data": {"command": "NULL"}})
    assert err.value.context == {"call": "update_job", "field": "StatusCode"}
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_job(V1, {"success": True, "message": "", "data": None})
    assert err.value.context == {"call": "update_job", "field": "data"}


RANGE = {
    "eventRangeID": "1-2-3-4-5",
    "startEvent": 1,
    "lastEvent": 10,
    "LFN": "f",
    "GUID": "0f0f0f0f-0000-4000-8000-000000000007",
    "scope": "s",
}


@pytest.mark.parametrize(
    ("generation", "reply"),
    [
        (V1, {"success": True, "message": "", "data": [RANGE]}),  # the server's bare list
        (V1, {"success": True, "message": "", "data": {"StatusCode": 0, "eventRanges": [RANGE]}}),
        (LEGACY, {"StatusCode": 0, "eventRanges": [RANGE]}),
        (LEGACY, {"StatusCode": "0", "eventRanges": json.dumps([RANGE])}),  # urlencoded
        (LEGACY, [RANGE]),
    ],
)
def test_both_range_reply_shapes(generation: Api, reply: object) -> None:
    assert api.parse_acquire_event_ranges(generation, reply) == (RANGE,)


def test_no_more_ranges_and_bad_range_replies() -> None:
    assert api.parse_acquire_event_ranges(V1, {"success": True, "message": "", "data": []}) == ()
    assert api.parse_acquire_event_ranges(LEGACY, {"StatusCode": 0, "eventRanges": []}) == ()
    with pytest.raises(CommunicatorError) as err:
        api.parse_acquire_event_ranges(LEGACY, {"StatusCode": 0})
    assert err.value.context == {"call": "acquire_event_ranges", "field": "eventRanges"}
    with pytest.raises(CommunicatorError) as err:
        api.parse_acquire_event_ranges(
            V1, {"success": True, "message": "", "data": {"StatusCode": 0, "eventRanges": 3}}
        )
    assert err.value.context["field"] == "eventRanges"
    with pytest.raises(CommunicatorError) as err:
        api.parse_acquire_event_ranges(LEGACY, {"StatusCode": 30})
    assert err.value.retryable


def test_range_update_replies() -> None:
    v1 = api.parse_update_event_ranges(
        V1,
        {"success": True, "message": "", "data": {"Returns": [True, False], "Commands": {"5": "softkill"}}},
    )
    assert v1.accepted == (True, False) and v1.commands == ((5, "softkill"),)
    legacy = api.parse_update_event_ranges(LEGACY, {"StatusCode": 0, "Returns": [True, None], "Command": {}})
    assert legacy.accepted == (True, False) and legacy.commands == ()
    assert api.parse_update_event_ranges(V1, {"success": True, "message": "", "data": [True]}).accepted == (
        True,
    )
    with pytest.raises(CommunicatorError) as err:
        api.parse_update_event_ranges(V1, {"success": True, "message": "", "data": {"Commands": {}}})
    assert err.value.context == {"call": "update_event_ranges", "field": "Returns"}


def test_range_count_replies() -> None:
    assert api.parse_event_range_count(V1, {"success": True, "message": "", "data": 17}) == 17
    assert api.parse_event_range_count(LEGACY, {"StatusCode": 0, "nEventRanges": "3"}) == 3
    with pytest.raises(CommunicatorError) as err:
        api.parse_event_range_count(LEGACY, {"StatusCode": 0})
    assert err.value.context == {"call": "get_available_event_range_count", "field": "nEventRanges"}
