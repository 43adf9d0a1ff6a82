"""Rank 0's journal: an append-only JSON-lines file of every range's state changes.

Records are buffered and written in batches (one write + fsync per flush, never one per range). The
frequent events (ranges handed out, ranges finished) are *collected*: entries of the same event, job
and rank are gathered into one record with aligned lists until the next flush, its ``t`` the time of
the first entry and ``t_end`` of the last. Any other record closes the open groups first, so each
range's events stay in order; only a record no collected entry can be about yet (``ranges``: new
ranges) goes before the open groups. A reader tolerates a torn last line, which is all a crash can
leave behind.

Every record is one of the frozen classes of `hpcpilot.runtime.records` (one per event: ``run``,
``worker``, ``lost``, ``job``, ``ranges``, ``exhausted``, ``assigned``, ``finished``, ``failed``,
``fatal``, ``returned``, ``dropped``, ``reported``, ``end``), queued with `Journal.write`, or with
`Journal.gather` for the collected ones; `hpcpilot.runtime.records.read_records` reads them back.
`Journal.append` and `Journal.collect` are the untyped layer beneath. Two of the shapes:

    {"t": 1732480000.1, "t_end": ..., "ev": "assigned", "job": 1001, "rank": 3, "ids": ["...", ...]}
    {"t": ..., "t_end": ..., "ev": "finished", "job": 1001, "rank": 3, "ids": ["...", ...],
     "paths": [...], "fsize": [...], "adler32": [...], "nevents": [...]}      (aligned lists)

The journal writes some columns compactly where they allow (`hpcpilot.runtime.records.compact`: ids
as a pattern and runs of numbers, one path prefix, checksums as one string, integers as runs of equal
steps); `read_journal` yields the plain form above.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpcpilot.model.errors import DiskFullError
from hpcpilot.runtime.diskspace import is_disk_full
from hpcpilot.runtime.records import CollectedRecord, Record, RecordError, compact, parse_record


def _line(event: str, fields: dict[str, Any]) -> str:
    """One record's JSON line, stamped with the time now."""
    return json.dumps({"t": round(time.time(), 3), "ev": event, **fields}, separators=(",", ":"))


class Journal:
    """Buffered, append-only journal file.

    Parameters
    ----------
    path
        The journal file; created (with its directory) if missing, appended to otherwise.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._buffer: list[str] = []
        self._tail = b""  # bytes of a failed write that could not be cut back: written first next time
        self._groups: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.records_written = 0

    def write(self, record: Record) -> None:
        """Queue one typed record (`hpcpilot.runtime.records`), stamped with the time now."""
        fields = compact(record.to_json())
        del fields["t"], fields["ev"]
        if record.BEFORE_OPEN_GROUPS:
            self._buffer.append(_line(record.EVENT, fields))
        else:
            self.append(record.EVENT, **fields)

    def gather(self, record: CollectedRecord) -> None:
        """Add a columnar record's entries to its group of (event, job, rank) until the next flush."""
        self.collect(record.EVENT, record.job, record.rank, **record.columns())

    def append(self, event: str, **fields: Any) -> None:
        """Queue one raw record (`write` is the typed way); it reaches the file at the next `flush`."""
        self._close_groups()
        self._buffer.append(_line(event, fields))

    def collect(self, event: str, job: int, rank: int, **columns: list[Any]) -> None:
        """Add entries to the group record of (``event``, ``job``, ``rank``): each column is extended.

        Every call for one group must give the same columns, of equal lengths.
        """
        now = round(time.time(), 3)
        key = (event, job, rank)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = {
                "t": now,
                "t_end": now,
                "ev": event,
                "job": job,
                "rank": rank,
                **{name: [] for name in columns},
            }
        group["t_end"] = now
        for name, values in columns.items():
            group[name].extend(values)

    def _close_groups(self) -> None:
        for group in self._groups.values():
            self._buffer.append(json.dumps(compact(group), separators=(",", ":")))
        self._groups.clear()

    @property
    def pending(self) -> int:
        """Records waiting for the next flush (open groups included, and a torn one to complete)."""
        return len(self._buffer) + len(self._groups) + bool(self._tail)

    def flush(self) -> None:
        """Write every queued record and collected group in one write, then fsync.

        A write or fsync that fails (a full disk: ENOSPC, EDQUOT) leaves no partial line behind: the
        file is cut back to its length before the write, and the records stay queued for the next
        flush, which writes them whole (never twice). Should even the cut fail, the bytes that did not
        reach the file are kept and written first by the next flush, completing the torn line: every
        record is still written once (a crash before that leaves the torn last line `read_journal`
        skips).

        Raises
        ------
        DiskFullError
            If the disk is full (the records stay queued; flush again when there is space).
        OSError
            Any other failure to write (the records stay queued too).
        """
        self._close_groups()
        if not self._buffer and not self._tail:
            return
        data = self._tail + ("\n".join(self._buffer) + "\n").encode() if self._buffer else self._tail
        size = os.fstat(self._fd).st_size
        written = 0
        try:
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])
            os.fsync(self._fd)
        except OSError as exc:
            if not self._cut_back(size):  # what reached the file stays: the rest completes it later
                self._tail = data[written:]
                self._written()
            if is_disk_full(exc):
                raise DiskFullError(
                    f"cannot write the journal: {exc.strerror}",
                    retryable=True,
                    context={"path": str(self.path), "records": len(self._buffer)},
                ) from exc
            raise
        self._tail = b""
        self._written()

    def _written(self) -> None:
        self.records_written += len(self._buffer)
        self._buffer.clear()

    def _cut_back(self, size: int) -> bool:
        """Cut the file back to ``size`` bytes after a failed write: no partial record stays."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            return False
        return True

    def discard(self) -> int:
        """Drop what is still queued (a full disk that did not clear); returns how many records."""
        self._close_groups()
        lost = len(self._buffer) + bool(self._tail)
        self._buffer.clear()
        self._tail = b""
        return lost

    def close(self) -> None:
        """Flush and close (closed also when the flush fails; the error is raised). Closing twice is fine."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the journal's records in order, as plain dicts; a torn or garbled line is skipped.

    A record of `hpcpilot.runtime.records` comes in its plain form (``to_json``: ``ids`` and
    ``paths`` as lists, also where the file has them compact); any other is yielded as it is.
    `hpcpilot.runtime.records.read_records` gives the typed records.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "ev" in record:
                yield plain(record)


#: Keys whose string value marks a record written compactly (`hpcpilot.runtime.records.compact`).
_COMPACT_KEYS = ("id_fmt", "path_prefix", "start", "last", "nevents", "adler32")


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """A journal record's plain form (`Record.to_json`), or the record itself if it is none of ours."""
    if not any(
        isinstance(record.get(k), str)
        for k in ("id_fmt", "path_prefix", "start", "last", "nevents", "adler32")
    ):
        return record  # already plain: the record as written
    try:
        return parse_record(record).to_json()
    except RecordError:
        return record
