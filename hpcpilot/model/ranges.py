"""Event ranges: what the server serves, their identifiers, and what became of them.

A range as served (PROTOCOLS.md section 3):

    {"eventRangeID": "<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>",
     "startEvent": 1, "lastEvent": 1, "LFN": "EVNT...pool.root.1", "GUID": "...", "scope": "..."}

Its text fields become file names and payload arguments (``{LFN}``, ``{GUID}``, ...): `parse_range`
checks each against its naming rule (`hpcpilot.model.naming.RANGE_FIELD_RULES`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcpilot.model.bounds import RANGE_FIELDS
from hpcpilot.model.errors import RangeDefinitionError
from hpcpilot.model.naming import RANGE_FIELD_RULES
from hpcpilot.model.wire import compact_pickle

#: PanDA's range id: five decimal numbers as Python writes them (ASCII digits, no leading zero), at most
#: 20 digits each: `RangeId.parse` gives them back exactly as they came.
_ID_NUMBER = r"(0|[1-9][0-9]{0,19})"
_RANGE_ID = re.compile("-".join([_ID_NUMBER] * 5))


class RangeState(enum.Enum):
    """Where a range stands. The wire statuses are ``running``, ``finished``, ``failed``, ``fatal``.

    ``dropped`` is local only: a range this pilot took but will not process (its job was soft-killed
    or killed); it is not reported, so the server hands it out again.
    """

    QUEUED = "queued"
    ASSIGNED = "running"
    FINISHED = "finished"
    FAILED = "failed"
    FATAL = "fatal"
    DROPPED = "dropped"

    @property
    def is_final(self) -> bool:
        """Whether no more work will be done on a range in this state."""
        return self in {RangeState.FINISHED, RangeState.FATAL}


@dataclass(frozen=True, slots=True)
class RangeId:
    """The parts of a structured range id ``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>``."""

    task_id: int
    panda_id: int
    file_id: int
    process_id: int
    attempt_nr: int

    @classmethod
    def parse(cls, text: str) -> RangeId:
        """Split a range id into its five numbers.

        Raises
        ------
        RangeDefinitionError
            If ``text`` is not five decimal numbers joined by ``-`` as PanDA writes them (ASCII
            digits, no leading zero, at most 20 digits each).
        """
        match = _RANGE_ID.fullmatch(text)
        if match is None:
            raise RangeDefinitionError(
                f"event range id {text[:80]!r} is not <taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>",
                context={"field": "eventRangeID"},
            )
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"{self.task_id}-{self.panda_id}-{self.file_id}-{self.process_id}-{self.attempt_nr}"


@compact_pickle
@dataclass(frozen=True, slots=True)
class EventRange:
    """One event range of an event-service job.

    Attributes
    ----------
    range_id
        ``eventRangeID``: unique within the job; safe as a file-name suffix.
    start_event, last_event
        First and last event (inclusive).
    lfn
        The input file the events come from (``LFN``).
    guid
        The input file's GUID.
    scope
        The input file's scope.
    pfn
        A physical path to the input, added by the pilot for payloads that need one.
    """

    range_id: str
    start_event: int
    last_event: int
    lfn: str = ""
    guid: str = ""
    scope: str = ""
    pfn: str = ""

    @property
    def n_events(self) -> int:
        """How many events the range holds."""
        return self.last_event - self.start_event + 1

    def to_wire(self) -> dict[str, Any]:
        """The range as the server serves it (plus ``PFN`` when set)."""
        wire: dict[str, Any] = {
            "eventRangeID": self.range_id,
            "startEvent": self.start_event,
            "lastEvent": self.last_event,
            "LFN": self.lfn,
            "GUID": self.guid,
            "scope": self.scope,
        }
        if self.pfn:
            wire["PFN"] = self.pfn
        return wire


def parse_range(raw: object, *, source: str, panda_id: int | None = None) -> EventRange:
    """Parse one range dict as served.

    Parameters
    ----------
    raw
        The range as served.
    source
        Where it came from (a file, a URL): named in every error.
    panda_id
        The job the range was asked for, named in every error when given.

    Raises
    ------
    RangeDefinitionError
        Naming ``source``, the job (``PandaID``), the range id (when readable) and the bad field: a
        missing or wrong-typed field, or a text field that breaks its naming rule
        (`hpcpilot.model.naming.RANGE_FIELD_RULES`: ``GUID`` a UUID, ``LFN`` a plain file name,
        ``scope`` a Rucio scope, ``PFN`` a path of safe characters).
    """
    context: dict[str, Any] = {"source": source}
    if panda_id is not None:
        context["PandaID"] = panda_id
    if not isinstance(raw, Mapping):
        raise RangeDefinitionError(f"event range is a {type(raw).__name__}, not a dict", context=context)
    range_id = raw.get("eventRangeID")
    if not isinstance(range_id, str):
        problem: str | None = "it is not a string"
    else:
        problem = RANGE_FIELD_RULES["eventRangeID"].problem(range_id)
    if not isinstance(range_id, str) or problem is not None:
        raise RangeDefinitionError(
            f"event range has a missing or unsafe 'eventRangeID': {range_id!r} ({problem})",
            context={**context, "field": "eventRangeID"},
        )
    context["eventRangeID"] = range_id
    start = _int_field(raw, "startEvent", context)
    last = _int_field(raw, "lastEvent", context)
    if last < start:
        raise RangeDefinitionError(
            f"lastEvent {last} is before startEvent {start}",
            context={**context, "field": "lastEvent"},
        )
    too_many = RANGE_FIELDS["events"].problem(last - start + 1)
    if too_many is not None:
        raise RangeDefinitionError(
            f"event range of startEvent {start} to lastEvent {last}: its number of events {too_many}",
            context={**context, "field": "lastEvent"},
        )
    return EventRange(
        range_id=range_id,
        start_event=start,
        last_event=last,
        lfn=_str_field(raw, "LFN", context),
        guid=_str_field(raw, "GUID", context),
        scope=_str_field(raw, "scope", context),
        pfn=_str_field(raw, "PFN", context),
    )


def _int_field(raw: Mapping[str, Any], key: str, context: dict[str, Any]) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RangeDefinitionError(
            f"event range field {key!r} must be an integer, got {value!r}",
            context={**context, "field": key},
        )
    try:
        number = int(value)
    except ValueError:
        raise RangeDefinitionError(
            f"event range field {key!r} must be an integer, got {repr(value)[:80]}",
            context={**context, "field": key},
        ) from None
    problem = RANGE_FIELDS[key].problem(number)
    if problem is not None:
        raise RangeDefinitionError(f"event range field {key!r} {problem}", context={**context, "field": key})
    return number


def _str_field(raw: Mapping[str, Any], key: str, context: dict[str, Any]) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RangeDefinitionError(
            f"event range field {key!r} must be a string, got {value!r}",
            context={**context, "field": key},
        )
    rule = RANGE_FIELD_RULES[key]
    if value and (problem := rule.problem(value)) is not None:
        raise RangeDefinitionError(
            f"event range field {key!r} {value!r} is not a {rule.name}: {problem}",
            context={**context, "field": key},
        )
    return value


#: Per-range columns of a journal ``ranges`` record (`range_columns`), besides ``ids``.
_NUMBER_COLUMNS = (("start", "startEvent"), ("last", "lastEvent"))
_TEXT_COLUMNS = ("LFN", "GUID", "scope", "PFN")


def range_columns(ranges: Sequence[EventRange]) -> dict[str, Any]:
    """Ranges as compact columns for the journal: ids, first and last events, and the file fields.

    A file field (``LFN``, ``GUID``, ``scope``, ``PFN``) that all ranges share is written once, as a
    string; otherwise as a list. Half the size of a list of wire dicts, and cheaper to encode.
    `ranges_from_columns` inverts it.
    """
    columns: dict[str, Any] = {
        "ids": [r.range_id for r in ranges],
        "start": [r.start_event for r in ranges],
        "last": [r.last_event for r in ranges],
    }
    for name, values in (
        ("LFN", [r.lfn for r in ranges]),
        ("GUID", [r.guid for r in ranges]),
        ("scope", [r.scope for r in ranges]),
        ("PFN", [r.pfn for r in ranges]),
    ):
        first = values[0] if values else ""
        columns[name] = first if all(v == first for v in values) else values
    return columns


def ranges_from_columns(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The wire dicts of a `range_columns` record (for `parse_range`).

    Raises
    ------
    ValueError
        If the columns are not aligned lists (not a record `range_columns` wrote).
    """
    ids = record.get("ids")
    if not isinstance(ids, list):
        raise ValueError("no 'ids' list")
    n = len(ids)
    wire: list[dict[str, Any]] = [{"eventRangeID": i} for i in ids]
    for column, key in _NUMBER_COLUMNS:
        values = record.get(column)
        if not isinstance(values, list) or len(values) != n:
            raise ValueError(f"column {column!r} is not a list of {n}")
        for item, value in zip(wire, values, strict=True):
            item[key] = value
    for key in _TEXT_COLUMNS:
        value = record.get(key, "")
        values = value if isinstance(value, list) else [value] * n
        if len(values) != n:
            raise ValueError(f"column {key!r} is not a list of {n}")
        for item, text in zip(wire, values, strict=True):
            if text or key != "PFN":
                item[key] = text
    return wire
