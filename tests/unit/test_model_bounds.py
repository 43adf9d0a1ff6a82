"""Numeric bounds of job and range fields: a value PanDA cannot hold is refused, naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcpilot.comm.local import LocalCommunicator
from hpcpilot.comm.panda import _panda_id
from hpcpilot.comm.wire import panda_id_or_none
from hpcpilot.config.loader import load_config
from hpcpilot.config.schema import Settings
from hpcpilot.model.bounds import JOB_FIELDS, RANGE_FIELDS, Bound, is_panda_id
from hpcpilot.model.errors import ConfigError, ErrorCode, JobDefinitionError, RangeDefinitionError
from hpcpilot.model.job import parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import parse_range
from tests.conftest import write_jobs

JOB: dict[str, Any] = {
    "PandaID": "6543210987",
    "taskID": "41000123",
    "jobsetID": "6543210900",
    "attemptNr": "2",
    "transformation": "Sim_tf.py",
    "coreCount": "8",
    "minRamCount": "16000",
    "maxDiskCount": "5000",
    "maxCpuCount": "86400",
    "maxWalltime": "43200",
    "eventService": "True",
    "nEventsPerInputFile": "10000",
    "inFiles": "EVNT.01._000001.pool.root.1",
    "fsize": "123456",
}

RANGE: dict[str, Any] = {"eventRangeID": "41000123-6543210987-1-3-1", "startEvent": 21, "lastEvent": 30}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("PandaID", 10**30),  # the reproduction
        ("PandaID", "100000000000"),  # 12 digits: one more than PANDAID NUMBER(11) holds
        ("PandaID", "-5"),
        ("taskID", 10**11),
        ("jediTaskID", 10**11),
        ("jobsetID", 10**11),
        ("attemptNr", 1000),
        ("coreCount", 1000000),  # the reproduction
        ("coreCount", 0),
        ("minRamCount", 10**10),
        ("maxDiskCount", 10**10),
        ("maxCpuCount", -1),
        ("maxWalltime", 10**10),
        ("nEventsPerInputFile", 10**12),  # the reproduction
        ("nEventsPerInputFile", 0),
        ("fsize", str(2**53 + 1)),
        ("fsize", "-1"),
        ("PandaID", 1e30),  # a float that is an integer: still too large
    ],
)
def test_a_job_field_out_of_bounds_is_refused_naming_the_field(field: str, value: object) -> None:
    raw = dict(JOB)
    if field == "jediTaskID":
        del raw["taskID"]  # read only when there is no taskID
    raw[field] = value
    with pytest.raises(JobDefinitionError) as err:
        parse_job(raw, source="HPCJobs.json")
    assert err.value.code is ErrorCode.GENERAL_ERROR  # 1008: the job fails alone
    assert err.value.context["field"] == field
    assert f"{field!r}" in str(err.value) and "HPCJobs.json" in str(err.value)


def test_the_largest_values_panda_can_hold_are_accepted() -> None:
    raw = dict(JOB)
    for field in JOB_FIELDS:
        raw[field] = str(JOB_FIELDS[field].maximum)
    job = parse_job(raw, source="t")
    assert job.panda_id == 99_999_999_999 and job.task_id == 99_999_999_999
    assert job.core_count == 999 and job.attempt_nr == 999
    assert job.n_events_per_input_file == 9_999_999_999
    assert job.input_files[0].fsize == 2**53


def test_a_huge_number_is_not_spelled_out_in_the_message() -> None:
    with pytest.raises(JobDefinitionError) as err:
        parse_job({**JOB, "PandaID": 10**4000}, source="t")
    assert len(str(err.value)) < 300 and "about 10**4000" in str(err.value)


def test_an_out_of_bounds_panda_id_names_no_job() -> None:
    assert panda_id_or_none("6543210987") == 6543210987
    assert panda_id_or_none(str(10**30)) is None and panda_id_or_none("0") is None
    assert _panda_id({"PandaID": 10**30}) is None and _panda_id({"PandaID": float("inf")}) is None
    assert _panda_id({"PandaID": "17"}) == 17
    assert not is_panda_id(True) and is_panda_id(1)


def test_local_jobs_out_of_bounds_fail_alone(tmp_path: Path) -> None:
    good = {"PandaID": 1, "transformation": "true"}
    huge_id = {"PandaID": 10**30, "transformation": "true"}
    many_events = {
        "PandaID": 3,
        "transformation": "true",
        "eventService": "True",
        "nEventsPerInputFile": 10**12,
    }
    write_jobs(tmp_path, [good, huge_id, many_events])
    batch = LocalCommunicator(Settings(), WorkLayout(tmp_path)).fetch_jobs(10)
    assert [j.panda_id for j in batch.jobs] == [1]
    bad = {b.error.context["field"]: b for b in batch.bad}
    assert set(bad) == {"PandaID", "nEventsPerInputFile"}
    assert bad["PandaID"].panda_id is None  # an id PanDA cannot have is reported for no job
    assert bad["nEventsPerInputFile"].panda_id == 3
    assert all(b.error.code is ErrorCode.GENERAL_ERROR for b in batch.bad)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"startEvent": -1}, "startEvent"),
        ({"lastEvent": 10**10}, "lastEvent"),
        ({"startEvent": "10000000000", "lastEvent": "10000000000"}, "startEvent"),
        ({"startEvent": 1, "lastEvent": 1_000_000}, None),  # a million events: the largest range
        ({"startEvent": 1, "lastEvent": 1_000_001}, "lastEvent"),
        ({"startEvent": 0, "lastEvent": 9_999_999_999}, "lastEvent"),
    ],
)
def test_range_events_are_bounded(changes: dict[str, Any], field: str | None) -> None:
    raw = {**RANGE, **changes}
    if field is None:
        assert parse_range(raw, source="feed").n_events == RANGE_FIELDS["events"].maximum
        return
    with pytest.raises(RangeDefinitionError) as err:
        parse_range(raw, source="feed")
    assert err.value.context["field"] == field and "feed" in str(err.value)


def test_bound_membership_and_problems() -> None:
    bound = Bound(1, 9, "one digit")
    assert 1 in bound and 9 in bound and 10 not in bound and 0 not in bound and True not in bound
    assert bound.problem(5) is None
    assert bound.problem(10) == "must be <= 9 (one digit), got 10"
    assert bound.problem(0) == "must be >= 1, got 0"


def test_the_ranges_the_pilot_cuts_are_bounded_like_served_ones() -> None:
    assert (
        load_config(env={}, overrides={"local.events_per_range": "1000000"}).settings.local.events_per_range
        == 1000000
    )
    with pytest.raises(ConfigError, match=r"local\.events_per_range.*must be <= 1000000"):
        load_config(env={}, overrides={"local.events_per_range": "1000001"})
