"""One job's event ranges on rank 0, as columns: tens of bytes a range, not an object each.

A range is its index in the job's table (0, 1, .. in the order the ranges came). What became of it
lives in numpy columns (state, attempts, rank, output size, adler32, events); what it is lives in one
of two forms:

* ranges the pilot cuts (`hpcpilot.model.rangecut.RangeCut`) are worked out from the job and the index,
  so the table keeps nothing per range but the columns;
* ranges fed from outside (Harvester, PanDA) are stored once, as columns: first and last event, a
  reference into the job's few input files, and the id as numbers where it follows PanDA's pattern
  ``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>`` (any other id is kept as it came).

Outputs sit at ``<prefix><range id>`` (`hpcpilot.model.layout.WorkLayout.range_output`): the prefix
is kept once per job, only an output elsewhere keeps its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from hpcpilot.model.errors import RangeDefinitionError
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, RangeId, RangeState, range_columns

#: Range states as stored in the ``state`` column (the index is the code).
STATES: tuple[RangeState, ...] = (
    RangeState.QUEUED,
    RangeState.ASSIGNED,
    RangeState.FINISHED,
    RangeState.FATAL,
    RangeState.DROPPED,
)
QUEUED, ASSIGNED, FINISHED, FATAL, DROPPED = range(len(STATES))
CODE: dict[RangeState, int] = {state: code for code, state in enumerate(STATES)}

#: Up to this many ranges are read or booked one by one: below it numpy's cost per call is more
#: than the work (a worker's results at batch size 1 are one range).
SMALL_BATCH = 8

#: Bits of a packed fed range id: fileID, processID, attemptNr (PandaID and taskID are the job's).
_FILE_BITS, _PROCESS_BITS, _ATTEMPT_BITS = 22, 33, 8

Array = npt.NDArray[Any]


def shared_or_list(values: list[str]) -> str | list[str]:
    """A text column as `hpcpilot.model.ranges.range_columns` writes it: once when all share it."""
    first = values[0] if values else ""
    return first if all(v == first for v in values) else values


class KeySet:
    """A set of int64 keys in about 8 bytes each: a sorted numpy array, and a small set of recent ones.

    The recent set is merged into the array when it holds an eighth of it (4,096 at least), so a key
    costs amortised O(1) to add and O(log n) to look up; a Python set of a million ints takes 70 MB.
    """

    __slots__ = ("_recent", "_sorted")

    def __init__(self) -> None:
        self._sorted = np.zeros(0, np.int64)
        self._recent: set[int] = set()

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        at = int(np.searchsorted(self._sorted, key))
        return at < len(self._sorted) and int(self._sorted[at]) == key

    def add(self, key: int) -> None:
        """Add a key (not in the set)."""
        self._recent.add(key)
        if len(self._recent) >= max(4096, len(self._sorted) // 8):
            fresh = np.fromiter(self._recent, np.int64, len(self._recent))
            self._sorted = np.sort(np.concatenate((self._sorted, fresh)), kind="stable")
            self._recent.clear()


def _grown(array: Array, size: int) -> Array:
    """``array`` with room for ``size`` items (doubling), its contents kept."""
    if size <= len(array):
        return array
    out = np.zeros(max(size, 2 * len(array), 16), dtype=array.dtype)
    out[: len(array)] = array
    return out


class FedRanges:
    """The definitions of ranges fed from outside, as columns (see the module)."""

    __slots__ = (
        "_file_index",
        "_keys",
        "_odd_ids",
        "file",
        "files",
        "head",
        "key",
        "last",
        "n",
        "odd",
        "start",
    )

    def __init__(self) -> None:
        self.n = 0
        self.start = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)
        self.file = np.zeros(0, np.int32)  # index into ``files``
        self.key = np.zeros(0, np.int64)  # packed id (-1: an odd id, in ``odd``)
        self.files: list[tuple[str, str, str, str]] = []  # (LFN, GUID, scope, PFN)
        self._file_index: dict[tuple[str, str, str, str], int] = {}
        self.odd: dict[int, str] = {}  # index -> id, for ids off the pattern
        self._keys = KeySet()  # every packed id known (no range twice)
        self._odd_ids: set[str] = set()  # every odd id known
        self.head: tuple[int, int] | None = None  # (taskID, PandaID) of the packed ids

    def _pack(self, range_id: str) -> int | None:
        try:
            p = RangeId.parse(range_id)
        except RangeDefinitionError:
            return None
        if self.head is None:
            self.head = (p.task_id, p.panda_id)
        fits = (
            (p.task_id, p.panda_id) == self.head
            and p.file_id < 1 << _FILE_BITS
            and p.process_id < 1 << _PROCESS_BITS
            and p.attempt_nr < 1 << _ATTEMPT_BITS
        )
        if not fits:
            return None
        return (p.file_id << (_PROCESS_BITS + _ATTEMPT_BITS)) | (p.process_id << _ATTEMPT_BITS) | p.attempt_nr

    def knows(self, range_id: str) -> bool:
        """Whether a range with this id was added."""
        key = self._pack(range_id)
        return range_id in self._odd_ids if key is None else key in self._keys

    def add(self, ranges: Iterable[EventRange]) -> int:
        """Append the ranges not known yet (by id); returns how many were appended."""
        start = self.n
        for rng in ranges:
            key = self._pack(rng.range_id)
            if key is None:
                if rng.range_id in self._odd_ids:
                    continue
                self._odd_ids.add(rng.range_id)
            elif key in self._keys:
                continue
            else:
                self._keys.add(key)
            i = self.n
            if i >= len(self.start):
                size = i + 1
                self.start, self.last = _grown(self.start, size), _grown(self.last, size)
                self.file, self.key = _grown(self.file, size), _grown(self.key, size)
            self.start[i], self.last[i] = rng.start_event, rng.last_event
            self.file[i] = self._file_of((rng.lfn, rng.guid, rng.scope, rng.pfn))
            if key is None:
                self.key[i] = -1
                self.odd[i] = rng.range_id
            else:
                self.key[i] = key
            self.n += 1
        return self.n - start

    def _file_of(self, spec: tuple[str, str, str, str]) -> int:
        index = self._file_index.get(spec)
        if index is None:
            index = self._file_index[spec] = len(self.files)
            self.files.append(spec)
        return index

    def range_id(self, index: int) -> str:
        """The id of range ``index``."""
        key = int(self.key[index])
        if key < 0:
            return self.odd[index]
        assert self.head is not None
        attempt = key & ((1 << _ATTEMPT_BITS) - 1)
        process = (key >> _ATTEMPT_BITS) & ((1 << _PROCESS_BITS) - 1)
        file_id = key >> (_PROCESS_BITS + _ATTEMPT_BITS)
        return f"{self.head[0]}-{self.head[1]}-{file_id}-{process}-{attempt}"

    def event_range(self, index: int) -> EventRange:
        """Range ``index``."""
        lfn, guid, scope, pfn = self.files[int(self.file[index])]
        return EventRange(
            self.range_id(index), int(self.start[index]), int(self.last[index]), lfn, guid, scope, pfn
        )

    def index_of(self, range_id: str) -> int | None:
        """The index of the range with this id, or None (a linear search: for the rare paths)."""
        key = self._pack(range_id)
        if key is None:
            return next((i for i, rid in self.odd.items() if rid == range_id), None)
        if key not in self._keys:
            return None
        found = np.flatnonzero(self.key[: self.n] == key)
        return int(found[0]) if len(found) else None

    def columns(self, indices: Sequence[int]) -> dict[str, Any]:
        """Ranges as `hpcpilot.model.ranges.range_columns` writes them (for the wire and the journal)."""
        idx = np.asarray(indices, dtype=np.int64)
        files = self.file[idx]
        columns: dict[str, Any] = {
            "ids": [self.range_id(int(i)) for i in idx],
            "start": self.start[idx].tolist(),
            "last": self.last[idx].tolist(),
        }
        for pos, name in enumerate(("LFN", "GUID", "scope", "PFN")):
            columns[name] = shared_or_list([self.files[int(f)][pos] for f in files])
        return columns


class RangeTable:
    """One job's ranges: what they are (cut or fed) and what became of each (columns).

    ``attempts`` counts the attempts handed out, the running one included; the next attempt of a
    queued range is ``attempts + 1``.
    """

    __slots__ = (
        "adler32",
        "attempts",
        "cut",
        "disk_full",
        "fed",
        "fsize",
        "n",
        "nevents",
        "odd_adler",
        "out_prefix",
        "paths",
        "rank",
        "state",
    )

    def __init__(self) -> None:
        self.cut: RangeCut | None = None
        self.fed: FedRanges | None = None
        self.n = 0
        self.state = np.zeros(0, np.uint8)
        self.attempts = np.zeros(0, np.uint16)
        self.rank = np.zeros(0, np.int32)
        self.disk_full = np.zeros(0, np.uint8)
        self.nevents = np.zeros(0, np.int32)
        self.fsize = np.zeros(0, np.int64)  # -1: no output
        self.adler32 = np.zeros(0, np.uint32)
        self.out_prefix: str | None = None
        self.paths: dict[int, str] = {}  # outputs not at ``out_prefix + range id``
        self.odd_adler: dict[int, str] = {}  # checksums that are not 8 hex digits (none: "")

    def __len__(self) -> int:
        return self.n

    # --- ranges in ----------------------------------------------------------------------------

    def _extend(self, to: int) -> tuple[int, int]:
        """Room for ranges up to ``to``; returns the new span ``(old n, to)``, queued."""
        old = self.n
        if to > len(self.state):
            self.state = _grown(self.state, to)
            self.attempts = _grown(self.attempts, to)
            self.rank = _grown(self.rank, to)
            self.disk_full = _grown(self.disk_full, to)
            self.nevents = _grown(self.nevents, to)
            self.fsize = _grown(self.fsize, to)
            self.adler32 = _grown(self.adler32, to)
        self.state[old:to] = QUEUED
        self.rank[old:to] = -1
        self.n = to
        return old, to

    def add_cut(self, cut: RangeCut, start: int, stop: int) -> tuple[int, int]:
        """Add ranges ``start`` to ``stop - 1`` of the job's cut; returns the span of the new ones.

        Those known already are skipped; a table that holds fed ranges (a resumed job) stores them
        as fed ones.
        """
        if self.fed is None and (self.cut is None or self.cut == cut) and start <= self.n:
            self.cut = cut
            return self._extend(max(stop, self.n)) if stop > self.n else (self.n, self.n)
        return self.add_fed([cut.event_range(i) for i in range(start, stop)])

    def add_fed(self, ranges: Sequence[EventRange]) -> tuple[int, int]:
        """Add ranges fed from outside, skipping those known (same id); returns the span of the new ones."""
        if self.cut is not None:
            self._unfold()
        if self.fed is None:
            self.fed = FedRanges()
        added = self.fed.add(ranges)
        return self._extend(self.n + added)

    def _unfold(self) -> None:
        """Store the cut ranges as fed ones (fed ranges join a cut job: only after a resume)."""
        cut, self.cut = self.cut, None
        assert cut is not None
        self.fed = FedRanges()
        self.fed.add(cut.event_range(i) for i in range(self.n))

    # --- what a range is ----------------------------------------------------------------------

    def range_id(self, index: int) -> str:
        """The id of range ``index``."""
        if self.cut is not None:
            return self.cut.range_id(index)
        assert self.fed is not None
        return self.fed.range_id(index)

    def range_ids(self, indices: Sequence[int] | range) -> list[str]:
        """The ids of ranges ``indices``."""
        if self.cut is not None:
            return self.cut.ids_of(indices)
        return [self.range_id(int(i)) for i in indices]

    def event_range(self, index: int) -> EventRange:
        """Range ``index`` as an object (for the rare paths: reports, merges)."""
        if self.cut is not None:
            return self.cut.event_range(index)
        assert self.fed is not None
        return self.fed.event_range(index)

    def index_of(self, range_id: str) -> int | None:
        """The index of the range with this id, or None when the job has no such range."""
        if self.cut is not None:
            index = self.cut.index_of(range_id)
            return index if index is not None and index < self.n else None
        return self.fed.index_of(range_id) if self.fed is not None else None

    def knows(self, range_id: str) -> bool:
        """Whether the job has a range with this id."""
        if self.cut is not None or self.fed is None:
            return self.index_of(range_id) is not None
        return self.fed.knows(range_id)

    def columns(self, indices: Sequence[int] | range) -> dict[str, Any]:
        """Ranges as `hpcpilot.model.ranges.range_columns` writes them."""
        if self.cut is not None and isinstance(indices, range) and indices.step == 1:
            return self.cut.columns(indices.start, indices.stop)
        if self.cut is not None:
            return range_columns([self.cut.event_range(int(i)) for i in indices])
        assert self.fed is not None
        return self.fed.columns(list(indices))

    # --- what became of it --------------------------------------------------------------------

    def state_of(self, index: int) -> RangeState:
        """The state of range ``index``."""
        return STATES[int(self.state[index])]

    def count(self, state: RangeState) -> int:
        """How many ranges are in ``state``."""
        return int(np.count_nonzero(self.state[: self.n] == CODE[state]))

    def indices(self, state: RangeState, rank: int | None = None) -> list[int]:
        """The ranges in ``state`` (held by ``rank`` if given), in order."""
        mask = self.state[: self.n] == CODE[state]
        if rank is not None:
            mask &= self.rank[: self.n] == rank
        return [int(i) for i in np.flatnonzero(mask)]

    def set_output(self, index: int, path: str | None, fsize: int, adler32: str) -> None:
        """Keep a finished range's output (its path only when it is not at the job's prefix)."""
        if path is None:
            self.fsize[index] = -1
            return
        self.fsize[index] = fsize
        self.set_adler32(index, adler32)
        rid = self.range_id(index)
        if self.out_prefix is None and path.endswith(rid):
            self.out_prefix = path[: len(path) - len(rid)]
        if self.out_prefix is None or path != self.out_prefix + rid:
            self.paths[index] = path

    def set_adler32(self, index: int, adler32: str) -> None:
        """Keep an output's adler32 (as a number when it is 8 hex digits, else as it is)."""
        try:
            value = int(adler32, 16) if len(adler32) == 8 else -1
        except ValueError:
            value = -1
        if value >= 0:
            self.adler32[index] = value
            self.odd_adler.pop(index, None)
        else:
            self.odd_adler[index] = adler32

    def _adler(self, index: int, value: int) -> str:
        odd = self.odd_adler.get(index) if self.odd_adler else None
        return odd if odd is not None else f"{value:08x}"

    def output(self, index: int) -> tuple[str, int, str] | None:
        """A finished range's output: (path, size, adler32), or None when it wrote none."""
        fsize = int(self.fsize[index])
        if fsize < 0:
            return None
        path = self.paths.get(index)
        if path is None:
            path = (self.out_prefix or "") + self.range_id(index)
        return path, fsize, self._adler(index, int(self.adler32[index]))

    def outputs(self, indices: Sequence[int], ids: Sequence[str]) -> list[tuple[str, int, str] | None]:
        """`output` of each of ``indices`` (whose ids are ``ids``), in one pass."""
        prefix, paths = self.out_prefix or "", self.paths
        if len(indices) <= SMALL_BATCH:  # numpy's cost per call is more than the work
            sizes = [int(self.fsize[i]) for i in indices]
            adlers = [int(self.adler32[i]) for i in indices]
        else:
            sizes = self.fsize[list(indices)].tolist()
            adlers = self.adler32[list(indices)].tolist()
        return [
            None if size < 0 else (paths.get(i) or prefix + rid, size, self._adler(i, adler))
            for i, rid, size, adler in zip(indices, ids, sizes, adlers, strict=True)
        ]

    def nbytes(self) -> int:
        """Bytes its numpy columns take (not the Python objects around them)."""
        arrays: list[Array] = [self.state, self.attempts, self.rank, self.disk_full]
        arrays += [self.nevents, self.fsize, self.adler32]
        if self.fed is not None:
            arrays += [self.fed.start, self.fed.last, self.fed.file, self.fed.key]
        return sum(a.nbytes for a in arrays)
