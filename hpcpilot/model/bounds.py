"""Numeric bounds of job and event-range fields: a value outside them is not a real job's.

Every integer that comes from the server (or Harvester, or a local job file) is checked against a
`Bound` where it is parsed (`hpcpilot.model.job.parse_job`, `hpcpilot.model.ranges.parse_range`).
Most bounds are the widths of the PanDA server's own database columns (Oracle ``NUMBER(p)`` holds
at most ``10**p - 1``; ``ATLAS_PANDA.JOBSACTIVE4``, ``FILESTABLE4``, ``JEDI_EVENTS``): a value the
server cannot store did not come from a real task, and refusing it at the door keeps absurd numbers
out of the pilot's arithmetic (cores, events, range counts). The tables are `JOB_FIELDS` and
`RANGE_FIELDS`; ``docs/security.md`` lists them with their reasons.

The same columns bound what the pilot sends: `JOB_METRICS_MAX` is what PanDA keeps of ``jobMetrics``,
and `fit_words` cuts such a text at whole words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bound:
    """The closed interval an integer field must lie in, and why.

    Attributes
    ----------
    minimum
        Smallest value accepted.
    maximum
        Largest value accepted.
    why
        Where the bound comes from (for the documentation and the error message).
    """

    minimum: int
    maximum: int
    why: str

    def __contains__(self, value: object) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool) and self.minimum <= value <= self.maximum
        )

    def problem(self, value: int) -> str | None:
        """What is wrong with ``value`` (None if it lies within the bound)."""
        if value < self.minimum:
            return f"must be >= {self.minimum}, got {value}"
        if value > self.maximum:
            shown = str(value) if value < 10**24 else f"about 10**{int(value.bit_length() * 0.30103)}"
            return f"must be <= {self.maximum} ({self.why}), got {shown}"
        return None


def _digits(n: int) -> int:
    """The largest value of an Oracle ``NUMBER(n)`` column: ``n`` nines."""
    return int("9" * n)


#: ``PandaID``: PanDA's PANDAID columns are ``NUMBER(11)``.
PANDA_ID = Bound(1, _digits(11), "PanDA's PANDAID column is NUMBER(11)")
#: ``taskID``/``jediTaskID``, ``jobsetID``: ``JEDITASKID`` and ``JOBSETID`` are ``NUMBER(11)``.
TASK_ID = Bound(0, _digits(11), "PanDA's JEDITASKID and JOBSETID columns are NUMBER(11)")
#: ``attemptNr``: ``ATTEMPTNR`` is ``NUMBER(3)``.
ATTEMPT_NR = Bound(0, _digits(3), "PanDA's ATTEMPTNR column is NUMBER(3)")
#: ``coreCount``: ``CORECOUNT`` is ``NUMBER(3)``; a job asking for more cores than a node has gets
#: the whole node.
CORE_COUNT = Bound(1, _digits(3), "PanDA's CORECOUNT column is NUMBER(3)")
#: ``minRamCount`` (MB), ``maxDiskCount`` (MB), ``maxCpuCount`` (s), ``maxWalltime`` (s): ``NUMBER(10)``.
RESOURCE = Bound(0, _digits(10), "PanDA's resource columns are NUMBER(10)")
#: Event numbers (``nEventsPerInputFile``, ``startEvent``, ``lastEvent``): JEDI's event ids are
#: ``NUMBER(10)`` (``JEDI_EVENTS.DEF_MIN_EVENTID``/``DEF_MAX_EVENTID``).
EVENT_NUMBER = Bound(0, _digits(10), "JEDI's event id columns are NUMBER(10)")
#: ``nEventsPerInputFile``: at least one event, numbered within `EVENT_NUMBER`.
EVENTS_PER_FILE = Bound(1, EVENT_NUMBER.maximum, EVENT_NUMBER.why)
#: ``fsize``: sizes are summed and written as JSON numbers, exact only up to 2**53 (about 9 PB);
#: PanDA's own FSIZE columns are NUMBER(11) (live) to NUMBER(19) (archive).
FILE_SIZE = Bound(0, 2**53, "JSON numbers are exact up to 2**53")
#: Events in one range (``lastEvent - startEvent + 1``): a range is a few minutes of one payload's
#: work, a handful of events in practice; a million is hours even for the fastest generators.
RANGE_EVENTS = Bound(1, 1_000_000, "a range is a short piece of one payload's work")

#: The bounds of the integer fields of a job dict, by wire name.
JOB_FIELDS: Mapping[str, Bound] = {
    "PandaID": PANDA_ID,
    "taskID": TASK_ID,
    "jediTaskID": TASK_ID,
    "jobsetID": TASK_ID,
    "attemptNr": ATTEMPT_NR,
    "coreCount": CORE_COUNT,
    "minRamCount": RESOURCE,
    "maxDiskCount": RESOURCE,
    "maxCpuCount": RESOURCE,
    "maxWalltime": RESOURCE,
    "nEventsPerInputFile": EVENTS_PER_FILE,
    "fsize": FILE_SIZE,
}

#: The bounds of the integer fields of an event range, by wire name (``events``: the range's size).
RANGE_FIELDS: Mapping[str, Bound] = {
    "startEvent": EVENT_NUMBER,
    "lastEvent": EVENT_NUMBER,
    "events": RANGE_EVENTS,
}


#: The longest ``jobMetrics`` PanDA keeps, in bytes: its ``JOBMETRICS`` column is
#: ``VARCHAR2(500 BYTE)`` and ``update_job`` cuts the text there, whatever it cuts in half.
JOB_METRICS_MAX = 500


def fit_words(words: Iterable[str], limit: int = JOB_METRICS_MAX) -> str:
    """The first ``words`` joined by spaces, as many whole words as fit in ``limit`` bytes (UTF-8)."""
    kept: list[str] = []
    size = -1
    for word in words:
        grown = size + 1 + len(word.encode())
        if grown > limit:
            break
        kept.append(word)
        size = grown
    return " ".join(kept)


def is_panda_id(value: object) -> bool:
    """Whether ``value`` is an int PanDA could have given a job as its PandaID."""
    return value in PANDA_ID
