"""Event ranges from files: a range feed file, or ranges the pilot cuts from a job's event count.

Shared by the communicators that serve ranges without a workload manager to ask (``local``, ``act``):

* a feed file ``{"<PandaID>": [range, ...]}`` (Harvester's ``JobsEventRanges.json`` shape): a job listed
  gets exactly those ranges;
* otherwise an event-service job has its events cut into ranges of a fixed number of events, from
  ``nEventsPerInputFile`` events per input file (one file when the job has no inputs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import CutSpan, RangeBatch
from hpcpilot.comm.wire import parse_json_object
from hpcpilot.model.errors import CommunicatorError, HpcPilotError
from hpcpilot.model.job import Job
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, parse_range


def read_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON object keyed by PandaID from ``path``.

    Raises
    ------
    CommunicatorError
        If the file cannot be read, is not JSON or not an object; names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommunicatorError(
            f"cannot read {path.name}: {exc.strerror}", context={"source": str(path)}
        ) from None
    return parse_json_object(text, source=str(path))


class RangeFiles:
    """Serves the ranges of event-service jobs from a feed file, or cuts them.

    Parameters
    ----------
    feed_path
        The feed file (None: none). A missing file is an empty feed unless ``required``.
    events_per_range
        Events per range when the pilot cuts them.
    required
        Whether the feed file must exist (a setting named it explicitly).
    """

    def __init__(self, feed_path: Path | None, events_per_range: int, *, required: bool = False) -> None:
        self.feed_path = feed_path
        self.events_per_range = events_per_range
        self.required = required
        self._feed: dict[str, list[Any]] | None = None
        self._feed_error: CommunicatorError | None = None
        self._cuts: dict[int, RangeCut] = {}
        self._cut_next: dict[int, int] = {}  # the next index to hand out, per job
        self._served: dict[str, int] = {}  # entries of the feed handed out, per job

    def fetch(self, job: Job, n: int) -> RangeBatch:
        """Up to ``n`` ranges of ``job``: from the feed if it lists the job, else cut here.

        Raises
        ------
        CommunicatorError
            If the feed file cannot be used (every event-service job fails alike).
        JobDefinitionError
            If the job must be cut and has no event count.
        """
        feed = self._range_feed()
        key = str(job.panda_id)
        if key in feed:
            return self._from_feed(job.panda_id, feed[key], n)
        cut = self._cuts.get(job.panda_id)
        if cut is None:
            cut = self._cuts[job.panda_id] = RangeCut.of(job, self.events_per_range)
        start = self._cut_next.get(job.panda_id, 0)
        stop = self._cut_next[job.panda_id] = min(start + max(n, 0), len(cut))
        return RangeBatch(exhausted=stop >= len(cut), cut=CutSpan(cut, start, stop))

    def expected(self, job: Job) -> int | None:
        """The ranges the feed lists for ``job``, else the number `cut_ranges` cuts.

        None when that cannot be told (a feed that cannot be read, a job without an event count).
        """
        try:
            feed = self._range_feed()
        except CommunicatorError:
            return None
        key = str(job.panda_id)
        if key in feed:
            return len(feed[key]) + self._served.get(key, 0)
        return count_ranges(job, self.events_per_range)

    def _range_feed(self) -> dict[str, list[Any]]:
        if self._feed_error is not None:
            raise self._feed_error  # every event-service job fails alike, not just the first
        if self._feed is None:
            try:
                self._feed = self._load_feed()
            except CommunicatorError as exc:
                self._feed_error = exc
                raise
        return self._feed

    def _load_feed(self) -> dict[str, list[Any]]:
        feed: dict[str, list[Any]] = {}
        path = self.feed_path
        if path is None or (not self.required and not path.exists()):
            return feed
        for key, value in read_json_object(path).items():
            if not isinstance(value, list):
                raise CommunicatorError(
                    f"ranges of job {key} must be a list, got {type(value).__name__}",
                    context={"source": str(path), "field": key},
                )
            feed[key] = list(value)
        return feed

    def _from_feed(self, panda_id: int, items: list[Any], n: int) -> RangeBatch:
        taken, items[:] = items[:n], items[n:]
        self._served[str(panda_id)] = self._served.get(str(panda_id), 0) + len(taken)
        ranges: list[EventRange] = []
        errors: list[HpcPilotError] = []
        for raw in taken:
            try:
                source = f"{self.feed_path}['{panda_id}']"
                ranges.append(parse_range(raw, source=source, panda_id=panda_id))
            except HpcPilotError as exc:
                errors.append(exc)
        return RangeBatch(tuple(ranges), exhausted=not items, errors=tuple(errors))


def count_ranges(job: Job, events_per_range: int) -> int | None:
    """How many ranges `cut_ranges` cuts from ``job`` (None without ``nEventsPerInputFile``)."""
    if job.n_events_per_input_file is None or events_per_range <= 0:
        return None
    return len(RangeCut.of(job, events_per_range))


def cut_ranges(job: Job, events_per_range: int) -> Iterator[EventRange]:
    """Cut an event-service job's events into ranges, lazily (`hpcpilot.model.rangecut.RangeCut`).

    Raises
    ------
    JobDefinitionError
        (on first use) if the job does not say how many events it has.
    """
    cut = RangeCut.of(job, events_per_range)
    for index in range(len(cut)):
        yield cut.event_range(index)
