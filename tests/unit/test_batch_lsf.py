"""The LSF plugin against recorded bsub/bjobs output."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcpilot.batch.lsf import (
    END_FIELDS,
    LsfBatchSystem,
    compute_hosts,
    lsf_state,
    parse_bjobs_json,
    parse_mcpu_hosts,
    parse_time_left,
)
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.model.errors import BatchSystemError
from tests.fakes.batchq import Replay, recorded

S = BatchJobState
NOW = 1_795_600_000.0
END_QUERY = ("bjobs", "-o", END_FIELDS, "-json", "1234")


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("RUN", S.RUNNING),
        ("DONE", S.FINISHED),
        ("PEND", S.SUBMITTED),
        ("PROV", S.SUBMITTED),
        ("WAIT", S.SUBMITTED),
        ("PSUSP", S.RUNNING),
        ("USUSP", S.RUNNING),
        ("SSUSP", S.RUNNING),
        ("EXIT", S.FAILED),
        ("ZOMBI", S.FAILED),
        ("UNKWN", S.FAILED),
    ],
)
def test_state_mapping(stat: str, state: BatchJobState) -> None:
    assert lsf_state(stat) is state


def test_plugin_facts() -> None:
    assert (LsfBatchSystem.name, LsfBatchSystem.template, LsfBatchSystem.default_launcher) == (
        "lsf",
        "lsf.sh",
        "jsrun",
    )
    assert LsfBatchSystem.in_allocation({"LSB_JOBID": "1"})
    assert not LsfBatchSystem.in_allocation({})


# --- parsers --------------------------------------------------------------------------------------


def test_recorded_status() -> None:
    lsf = LsfBatchSystem(Replay(), {})
    assert lsf.parse_status(recorded("bjobs/status.txt")) == {
        "1234": S.RUNNING,
        "1235": S.SUBMITTED,
        "1236": S.FINISHED,
        "1237": S.FAILED,
        "1238": S.RUNNING,
        "1239": S.RUNNING,
        "1240": S.RUNNING,
        "1241": S.SUBMITTED,
        "1242": S.SUBMITTED,
        "1243": S.FAILED,
    }
    assert lsf.parse_status(recorded("bjobs/not_found.stderr")) == {}


def test_status_garbage_names_the_field() -> None:
    with pytest.raises(BatchSystemError, match="not 'JOBID STAT'") as info:
        LsfBatchSystem(Replay(), {}).parse_status("JOBID USER STAT QUEUE\n")
    assert info.value.context["field"] == "STAT"


def test_recorded_submit() -> None:
    lsf = LsfBatchSystem(Replay(), {})
    assert lsf.parse_submit(recorded("bsub/submitted.txt")) == "1234"
    assert lsf.parse_submit(recorded("bsub/submitted_default_queue.txt")) == "1235"
    with pytest.raises(BatchSystemError, match="bsub printed no job id") as info:
        lsf.parse_submit("Project not found. Job not submitted.\n")
    assert info.value.context["command"] == "bsub"


def test_builders_pass_paths_as_arguments() -> None:
    lsf = LsfBatchSystem(Replay(), {})
    argv = lsf.submit_argv(Path("/s $(x).sh"), Path("/w d"), ["-P", "abc"])
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["bsub", "/w d", "/s $(x).sh", "-P", "abc"]
    assert lsf.status_argv(["1", "2"]) == ["bjobs", "-a", "-noheader", "-o", "jobid stat", "1", "2"]
    assert lsf.cancel_argv("1") == ["bkill", "1"]


def test_bjobs_json() -> None:
    records = parse_bjobs_json(recorded("bjobs/end_time.json"))
    assert records == [
        {
            "JOBID": "1234",
            "STAT": "RUN",
            "START_TIME": "Nov 25 12:20",
            "RUNTIMELIMIT": "120.0",
            "TIME_LEFT": "1:43 L",
        }
    ]


@pytest.mark.parametrize("text", ["Job <1> is not found", '{"COMMAND": "bjobs"}', '{"RECORDS": [1]}'])
def test_bjobs_json_garbage(text: str) -> None:
    with pytest.raises(BatchSystemError) as info:
        parse_bjobs_json(text)
    assert info.value.context["field"] == "RECORDS"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:43 L", 6180.0),
        ("0:05 L", 300.0),
        ("12:00", 43200.0),
        ("01:02:03 L", 3723.0),
        ("0:43 E", None),
        ("0:00 X", None),
        ("", None),
        ("-", None),
    ],
)
def test_time_left(text: str, seconds: float | None) -> None:
    assert parse_time_left(text) == seconds


def test_time_left_garbage() -> None:
    with pytest.raises(BatchSystemError, match="TIME_LEFT") as info:
        parse_time_left("soon")
    assert info.value.context["field"] == "TIME_LEFT"


def test_hosts_and_launch_node() -> None:
    summit = parse_mcpu_hosts("batch1 1 h41n04 42 h41n05 42")
    assert compute_hosts(summit) == [("h41n04", 42), ("h41n05", 42)]
    assert compute_hosts([("a", 1), ("b", 1)]) == [("a", 1), ("b", 1)]  # all 1 slot: keep
    assert compute_hosts([("a", 1)]) == [("a", 1)]
    assert compute_hosts([("a", 4), ("b", 1)]) == [("a", 4), ("b", 1)]  # only a *first* 1-slot host
    with pytest.raises(BatchSystemError, match="LSB_MCPU_HOSTS") as info:
        parse_mcpu_hosts("host1 4 host2")
    assert info.value.context["field"] == "LSB_MCPU_HOSTS"


# --- discovery ------------------------------------------------------------------------------------


def test_discover_summit_like() -> None:
    env = {
        "LSB_JOBID": "1234",
        "LSB_MCPU_HOSTS": "batch1 1 h41n04 42 h41n05 42",
        "LSB_QUEUE": "batch",
        "LSB_PROJECT_NAME": "abc123",
    }
    run = Replay({END_QUERY: recorded("bjobs/end_time.json")})
    alloc = LsfBatchSystem(run, env, clock=lambda: NOW).discover()
    assert alloc.batch_system == "lsf"
    assert alloc.job_id == "1234"
    assert alloc.nodes == ("h41n04", "h41n05")
    assert alloc.cores_per_node == 42
    assert (alloc.queue, alloc.account) == ("batch", "abc123")
    assert alloc.end_time == NOW + 6180
    assert run.calls == [END_QUERY]


def test_discover_from_the_host_file(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn1\nn1\nn2\nn2\nn2\n")
    env = {"LSB_JOBID": "1234", "LSB_DJOB_HOSTFILE": str(hostfile)}
    run = Replay({END_QUERY: recorded("bjobs/end_time_no_limit.json")})
    alloc = LsfBatchSystem(run, env).discover()
    assert alloc.nodes == ("n1", "n2")
    assert alloc.cores_per_node == 3
    assert alloc.end_time is None
    assert (alloc.queue, alloc.account) == (None, None)


def test_discover_errors(tmp_path: Path) -> None:
    run = Replay({END_QUERY: recorded("bjobs/end_time.json")})
    with pytest.raises(BatchSystemError, match="neither LSB_MCPU_HOSTS"):
        LsfBatchSystem(run, {"LSB_JOBID": "1234"}).discover()
    with pytest.raises(BatchSystemError, match="cannot read the host file") as info:
        LsfBatchSystem(run, {"LSB_JOBID": "1234", "LSB_DJOB_HOSTFILE": str(tmp_path / "x")}).discover()
    assert info.value.context["field"] == "LSB_DJOB_HOSTFILE"
    unknown = Replay(
        {END_QUERY: '{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"ERROR":"Job <1234> is not found"}]}'}
    )
    with pytest.raises(BatchSystemError, match="does not know job 1234"):
        LsfBatchSystem(unknown, {"LSB_JOBID": "1234", "LSB_MCPU_HOSTS": "n1 4"}).discover()


# --- poll / submit --------------------------------------------------------------------------------


def test_poll_tolerates_not_found() -> None:
    run = Replay()
    run.add(
        ["bjobs", "-a", "-noheader", "-o", "jobid stat", "1234", "999"],
        "1234 RUN\n",
        code=255,
        stderr=recorded("bjobs/not_found.stderr"),
    )
    assert LsfBatchSystem(run, {}).poll(["1234", "999"]) == {"1234": S.RUNNING}


def test_poll_real_errors_raise() -> None:
    run = Replay()
    run.add(["bjobs", "-a", "-noheader", "-o", "jobid stat", "1"], "", code=255, stderr="LSF is down.")
    with pytest.raises(BatchSystemError, match="LSF is down") as info:
        LsfBatchSystem(run, {}).poll(["1"])
    assert info.value.context["exit_code"] == 255


def test_submit_through_the_runner() -> None:
    run = Replay()
    lsf = LsfBatchSystem(run, {})
    run.add(lsf.submit_argv(Path("/s.sh"), Path("/w")), recorded("bsub/submitted.txt"))
    assert lsf.submit(Path("/s.sh"), Path("/w")) == "1234"
    failing = Replay()
    failing.add(
        lsf.submit_argv(Path("/s.sh"), Path("/w")), "", code=255, stderr="Bad project. Job not submitted."
    )
    with pytest.raises(BatchSystemError, match="bsub failed: Bad project"):
        LsfBatchSystem(failing, {}).submit(Path("/s.sh"), Path("/w"))
