"""The ``monitor.h5`` time series: rank 0 appends rows, ``hpcpilot status`` / ``report`` read them.

Layout (HDF5, via h5py)::

    /                       attrs: format = "hpcpilot-monitor", version = 1
    /nodes/rank-0003        attrs: host, rank       one row per sample of that worker's node
        t                   float64, Unix time      every column a 1-D resizable chunked dataset
        busy_slots, ...     float64                 one dataset per metric, NaN where a row lacks it
    /jobs/<PandaID>         one row per sample of that job on one node
        t, rank             float64
        rss_kb, ...         float64

Columns appear when a metric first shows up (a user plugin's metric may come late); the rows before
are back-filled with NaN, and a column a later row lacks gets NaN. Every write opens the file, appends
and closes it, so another process (``hpcpilot status`` on another node) can read between writes; a
reader that finds the file locked or half-written tries again. A resumed run appends to the file.

h5py and numpy are imported at the first write or read, not with this module: rank 0 imports it with
the coordinator, before its first assignment, and the first write comes ``monitor.write_interval_s``
later.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: see the module's description
    import h5py
    import numpy as np

log = logging.getLogger(__name__)

FORMAT = "hpcpilot-monitor"
VERSION = 1
CHUNK = 1024

#: Attempts and pause of a reader (or writer) that finds the file locked or half-written.
RETRIES = 5
RETRY_PAUSE_S = 0.2

#: Most rows kept in memory while the file cannot be written.
MAX_PENDING_ROWS = 200_000


def node_table(rank: int) -> str:
    """The path of a worker's node table: ``nodes/rank-0003``."""
    return f"nodes/rank-{rank:04d}"


def job_table(panda_id: int) -> str:
    """The path of a job's table: ``jobs/1001``."""
    return f"jobs/{panda_id}"


@dataclass(slots=True)
class _Pending:
    attrs: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, float]] = field(default_factory=list)


class TimeSeriesWriter:
    """Rank 0's buffer of rows, appended to the file by `flush`.

    Parameters
    ----------
    path
        The HDF5 file; created when missing, appended to otherwise.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: dict[str, _Pending] = defaultdict(_Pending)
        self.rows_written = 0
        self.failed_flushes = 0

    def add_node_row(self, rank: int, host: str, values: Mapping[str, float]) -> None:
        """Queue a row of a worker's node table (``values`` has ``t``)."""
        pending = self._pending[node_table(rank)]
        pending.attrs = {"host": host, "rank": rank}
        pending.rows.append(dict(values))

    def add_job_row(self, panda_id: int, rank: int, values: Mapping[str, float]) -> None:
        """Queue a row of a job's table (``values`` has ``t``); its ``rank`` column is set here."""
        pending = self._pending[job_table(panda_id)]
        pending.attrs = {"panda_id": panda_id}
        pending.rows.append({**values, "rank": float(rank)})

    def _bound(self) -> None:
        """Drop the oldest queued rows beyond `MAX_PENDING_ROWS` (the file stayed unwritable)."""
        excess = self.pending_rows - MAX_PENDING_ROWS
        if excess <= 0:
            return
        log.warning("%s: dropping %d queued rows that could not be written", self.path, excess)
        for pending in self._pending.values():
            cut = min(excess, len(pending.rows))
            del pending.rows[:cut]
            excess -= cut
            if excess <= 0:
                break

    @property
    def pending_rows(self) -> int:
        """Rows waiting for the next flush."""
        return sum(len(p.rows) for p in self._pending.values())

    def flush(self) -> bool:
        """Append every queued row (open, append, close); False if the file could not be written.

        Rows that could not be written stay queued for the next flush.
        """
        if not self._pending:
            return True
        self._bound()
        try:
            aside = _set_aside(self.path)
            if aside is not None:
                log.warning("%s is not an HDF5 file: moved to %s, starting a new one", self.path, aside)
            with _open(self.path, "a") as f:
                f.attrs["format"] = FORMAT
                f.attrs["version"] = VERSION
                for name, pending in self._pending.items():
                    append_rows(f.require_group(name), pending.rows, pending.attrs)
                    self.rows_written += len(pending.rows)
        except OSError as exc:
            self.failed_flushes += 1
            log.warning("cannot write %s (kept for the next write): %s", self.path, exc)
            return False
        self._pending.clear()
        return True


def _file(path: Path, mode: str) -> h5py.File:
    """``h5py.File`` with HDF5's file locking where the filesystem has it (Lustre may not)."""
    import h5py

    try:
        return h5py.File(path, mode, locking="best-effort")
    except (ValueError, TypeError):  # an HDF5 older than 1.12.1: no best-effort locking
        return h5py.File(path, mode)


def _open(path: Path, mode: str) -> h5py.File:
    """Open the file, trying again while another process holds it."""
    for attempt in range(RETRIES):
        try:
            return _file(path, mode)
        except OSError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def _set_aside(path: Path) -> Path | None:
    """Rename a file that exists but is no HDF5 file (a write cut short); None if it is fine."""
    import h5py

    if not path.exists() or h5py.is_hdf5(path):
        return None
    aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
    path.rename(aside)
    return aside


def append_rows(group: h5py.Group, rows: list[dict[str, float]], attrs: Mapping[str, Any]) -> None:
    """Append rows to a table group: new columns back-filled with NaN, missing values NaN."""
    import numpy as np

    for key, value in attrs.items():
        group.attrs[key] = value
    if not rows:
        return
    old = group["t"].shape[0] if "t" in group else 0
    have = set(group.keys())
    for name in have | {name for row in rows for name in row}:
        column = np.array([row.get(name, math.nan) for row in rows], dtype=np.float64)
        if name not in have:  # created whole: a resize and a write per column cost more than the rows
            group.create_dataset(
                name,
                data=np.concatenate([np.full(old, math.nan), column]),
                maxshape=(None,),
                chunks=(CHUNK,),
                dtype=np.float64,
            )
            continue
        data = group[name]
        data.resize((old + len(rows),))
        data[old:] = column


@dataclass(frozen=True, slots=True)
class Table:
    """One table read back: its attributes and its columns (equal lengths)."""

    attrs: dict[str, Any]
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns.get("t", ()))


@dataclass(frozen=True, slots=True)
class MonitorData:
    """Every table of a ``monitor.h5``.

    Attributes
    ----------
    nodes
        Node tables by rank.
    jobs
        Job tables by PandaID.
    """

    nodes: dict[int, Table]
    jobs: dict[int, Table]


def read_series(path: Path) -> MonitorData | None:
    """Read the whole file; None when it does not exist (or stays unreadable after retries)."""
    if not path.exists():
        return None
    for attempt in range(RETRIES):
        try:
            with _file(path, "r") as f:
                return MonitorData(
                    nodes={int(t.attrs.get("rank", -1)): t for t in _tables(f, "nodes")},
                    jobs={int(t.attrs.get("panda_id", -1)): t for t in _tables(f, "jobs")},
                )
        except (OSError, KeyError, ValueError) as exc:
            if attempt == RETRIES - 1:
                log.warning("cannot read %s: %s", path, exc)
                return None
            time.sleep(RETRY_PAUSE_S)
    return None


def _tables(f: h5py.File, section: str) -> list[Table]:
    import numpy as np

    if section not in f:
        return []
    tables = []
    for group in f[section].values():
        columns = {name: np.asarray(group[name]) for name in group}
        n = min((len(c) for c in columns.values()), default=0)  # a torn append: the common part
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in group.attrs.items()}
        tables.append(Table(attrs, {k: c[:n] for k, c in columns.items()}))
    return tables
