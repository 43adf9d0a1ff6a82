from __future__ import annotations

import json

import pytest

from hpcpilot.model.errors import RangeDefinitionError
from hpcpilot.model.ranges import (
    EventRange,
    RangeId,
    RangeState,
    parse_range,
    range_columns,
    ranges_from_columns,
)

SERVED = {
    "eventRangeID": "41000123-6543210987-17-3-1",
    "startEvent": 21,
    "lastEvent": 30,
    "LFN": "EVNT.01._000001.pool.root.1",
    "GUID": "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B",
    "scope": "mc23_13p6TeV",
}


def test_served_range_round_trips() -> None:
    rng = parse_range(SERVED, source="JobsEventRanges.json")
    assert rng.n_events == 10
    assert rng.to_wire() == SERVED
    with_pfn = EventRange(rng.range_id, 1, 1, pfn="/data/f")
    assert with_pfn.to_wire()["PFN"] == "/data/f"


def test_range_id_structure() -> None:
    rid = RangeId.parse(SERVED["eventRangeID"])  # type: ignore[arg-type]
    assert (rid.task_id, rid.panda_id, rid.file_id, rid.process_id, rid.attempt_nr) == (
        41000123,
        6543210987,
        17,
        3,
        1,
    )
    assert str(rid) == SERVED["eventRangeID"]
    with pytest.raises(RangeDefinitionError, match="is not <taskID>"):
        RangeId.parse("Range-1")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("eventRangeID", None, "'eventRangeID'"),
        ("eventRangeID", "a/b", "unsafe 'eventRangeID'"),
        ("startEvent", "one", "'startEvent' must be an integer"),
        ("lastEvent", True, "'lastEvent' must be an integer"),
        ("lastEvent", 5, "lastEvent 5 is before startEvent 21"),
        ("GUID", 12, "'GUID' must be a string"),
    ],
)
def test_malformed_range_names_field(field: str, value: object, needle: str) -> None:
    raw = dict(SERVED)
    raw[field] = value
    with pytest.raises(RangeDefinitionError) as err:
        parse_range(raw, source="JobsEventRanges.json")
    assert needle in str(err.value)
    assert "JobsEventRanges.json" in str(err.value)


def test_range_states() -> None:
    assert RangeState.FINISHED.is_final and RangeState.FATAL.is_final
    assert not RangeState.FAILED.is_final
    assert RangeState.ASSIGNED.value == "running"


def test_ranges_journal_as_columns_and_come_back_the_same() -> None:
    shared = [
        EventRange(
            f"1-2-1-{i}-1", 10 * i + 1, 10 * i + 10, "EVNT.01", "0f0f0f0f-0000-4000-8000-000000000001", "mc23"
        )
        for i in range(3)
    ]
    mixed = [
        *shared,
        EventRange(
            "1-2-2-1-1",
            1,
            5,
            "EVNT.02",
            "0f0f0f0f-0000-4000-8000-000000000002",
            "mc23",
            pfn="/scratch/EVNT.02",
        ),
    ]
    columns = range_columns(shared)
    assert columns["LFN"] == "EVNT.01" and columns["PFN"] == ""  # shared: written once
    for ranges in (shared, mixed, []):
        columns = json.loads(json.dumps(range_columns(ranges)))
        back = [parse_range(w, source="journal") for w in ranges_from_columns(columns)]
        assert back == ranges
    with pytest.raises(ValueError, match="'start'"):
        ranges_from_columns({"ids": ["a", "b"], "start": [1], "last": [1, 2]})
