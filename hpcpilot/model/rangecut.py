"""Ranges the pilot cuts from a job's event count, each computed from the job and its index.

A job with ``nEventsPerInputFile`` events in each input file (one pseudo-file when it has none) is cut
into ranges of ``events_per_range`` events, file after file; range ``i`` (from 0) is worked out from
``i`` alone, so neither rank 0 nor a worker ever keeps a list of them. Range ids follow
``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>``, with ``processID = i + 1`` and ``fileID``
the input file's number from 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hpcpilot.model.errors import ErrorCode, JobDefinitionError, RangeDefinitionError
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeId
from hpcpilot.model.wire import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class RangeCut:
    """How one job's events are cut into ranges.

    Attributes
    ----------
    task_id, panda_id, attempt_nr
        The job's, as its range ids carry them.
    per_file
        Events in each input file (``nEventsPerInputFile``).
    per_range
        Events in each range (the last range of a file may hold fewer).
    files
        ``(LFN, GUID, scope)`` of each input file; empty for a job without inputs (one pseudo-file).
    """

    task_id: int
    panda_id: int
    attempt_nr: int
    per_file: int
    per_range: int
    files: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def of(cls, job: Job, events_per_range: int) -> RangeCut:
        """The cut of ``job`` into ranges of ``events_per_range`` events.

        Raises
        ------
        JobDefinitionError
            If the job does not say how many events it has (1238, ``nEventsPerInputFile``).
        """
        per_file = job.n_events_per_input_file
        if per_file is None:
            raise JobDefinitionError(
                "event-service job has no range feed and no 'nEventsPerInputFile' to cut ranges from",
                code=ErrorCode.ES_NO_EVENTS,
                context={"PandaID": job.panda_id, "field": "nEventsPerInputFile"},
            )
        files = tuple((f.lfn, f.guid or "", f.scope or "") for f in job.input_files)
        return cls(job.task_id, job.panda_id, job.attempt_nr, per_file, max(events_per_range, 1), files)

    @property
    def ranges_per_file(self) -> int:
        """Ranges cut from each input file."""
        return -(-self.per_file // self.per_range) if self.per_file > 0 else 0

    def __len__(self) -> int:
        return max(len(self.files), 1) * self.ranges_per_file

    def range_id(self, index: int) -> str:
        """The id of range ``index``."""
        file_id = index // self.ranges_per_file + 1
        return f"{self.task_id}-{self.panda_id}-{file_id}-{index + 1}-{self.attempt_nr}"

    def range_ids(self, start: int, stop: int) -> list[str]:
        """The ids of ranges ``start`` to ``stop - 1``."""
        return self.ids_of(range(start, stop))

    def ids_of(self, indices: Iterable[int]) -> list[str]:
        """The ids of ranges ``indices``."""
        per = self.ranges_per_file
        head = f"{self.task_id}-{self.panda_id}-"
        tail = f"-{self.attempt_nr}"
        return [f"{head}{i // per + 1}-{i + 1}{tail}" for i in indices]

    def event_range(self, index: int) -> EventRange:
        """Range ``index`` (from 0).

        Raises
        ------
        IndexError
            If the job has no such range.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"job {self.panda_id} has no range {index} (it has {len(self)})")
        per = self.ranges_per_file
        file_index, k = divmod(index, per)
        start = 1 + k * self.per_range
        lfn, guid, scope = self.files[file_index] if self.files else ("", "", "")
        return EventRange(
            range_id=self.range_id(index),
            start_event=start,
            last_event=min(start + self.per_range - 1, self.per_file),
            lfn=lfn,
            guid=guid,
            scope=scope,
        )

    def index_of(self, range_id: str) -> int | None:
        """The index of the range with this id, or None when the cut has no such range."""
        try:
            parts = RangeId.parse(range_id)
        except RangeDefinitionError:
            return None
        index = parts.process_id - 1
        job = (self.task_id, self.panda_id, self.attempt_nr)
        if (parts.task_id, parts.panda_id, parts.attempt_nr) != job:
            return None
        if not 0 <= index < len(self) or parts.file_id != index // self.ranges_per_file + 1:
            return None
        return index

    def columns(self, start: int, stop: int) -> dict[str, object]:
        """Ranges ``start`` to ``stop - 1`` as `hpcpilot.model.ranges.range_columns` writes them."""
        per, size = self.ranges_per_file, self.per_range
        firsts = [1 + (i % per) * size for i in range(start, stop)]
        columns: dict[str, object] = {
            "ids": self.range_ids(start, stop),
            "start": firsts,
            "last": [min(s + size - 1, self.per_file) for s in firsts],
        }
        for pos, key in enumerate(("LFN", "GUID", "scope")):
            if not self.files or stop <= start:
                columns[key] = ""
                continue
            values = {self.files[i][pos] for i in range(start // per, (stop - 1) // per + 1)}
            if len(values) == 1:
                columns[key] = values.pop()
            else:
                columns[key] = [self.files[i // per][pos] for i in range(start, stop)]
        columns["PFN"] = ""
        return columns
