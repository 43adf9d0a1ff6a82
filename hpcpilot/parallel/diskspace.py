"""The pilot's one policy for a full disk (DESIGN.md section 6): a state to wait out, not a crash.

A full disk (ENOSPC or EDQUOT) anywhere the pilot writes (rank 0's journal, reports and summary, a
payload's output or log, a merge, a stage-in) puts the run into one state:

* **Rank 0** (`DiskWait`) stops handing out work and fetching new work, keeps what it knows in
  memory, and tries its failed writes again with a doubling pause (``disk.retry_s``, at most 10 s).
  When they succeed and the work directory has space again it goes on; when the disk stays full for
  ``disk.wait_s`` (never past the point where no work fits before the end of the allocation) it
  drains with 1098. For its last records it gives up the space it held back (``disk.reserve_mb``).
* **A worker** (`NodeDisk`) that sees a range or job fail for lack of space, or whose monitor finds
  too little free space (the same check, `hpcpilot.monitor.checks.disk_verdict`, at
  ``monitor.min_free_disk_mb``), starts nothing new and asks for nothing until its disks have space
  again; if that takes longer than ``disk.wait_s`` it stops and says bye with 1098.
* **A range that failed for lack of space** is reported with 1098 and does not spend one of its
  attempts: rank 0 queues it again (`hpcpilot.parallel.books.Books.record_range`).

A failed item counts as failed for lack of space when its diagnosis says so ("No space left on
device", "Disk quota exceeded") or when, at the moment it failed, a disk of the node has less free
space than ``monitor.min_free_disk_mb`` (1 MB at least).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpcpilot.config.schema import DiskSettings, MonitorSettings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.layout import WorkLayout
from hpcpilot.monitor.checks import disk_verdict
from hpcpilot.runtime.diskspace import Reserve, free_mb, mentions_disk_full, takes_writes

log = logging.getLogger(__name__)

#: Free MB under which a disk counts as full even when ``monitor.min_free_disk_mb`` is 0 (off).
FLOOR_MB = 1
#: Longest pause between two tries of failed writes (unless ``disk.retry_s`` is longer).
MAX_RETRY_S = 10.0

#: Codes of failures a full disk can cause: a payload that exits non-zero (or crashes: SIGSEGV, SIGBUS
#: of a mapped file), cannot start or write its logs, writes no output, or says so itself. A payload
#: killed (by a monitor, a signal, the end of the run) keeps its code.
_DISK_SENSITIVE = frozenset(
    {
        ErrorCode.PAYLOAD_EXECUTION_FAILURE,
        ErrorCode.SETUP_FAILURE,
        ErrorCode.MISSING_OUTPUT_FILE,
        ErrorCode.UNKNOWN_PAYLOAD_FAILURE,
        ErrorCode.SIGSEGV,
        ErrorCode.SIGBUS,
        ErrorCode.NO_LOCAL_SPACE,
    }
)


def may_be_disk_full(code: ErrorCode | None) -> bool:
    """Whether a failure with ``code`` may have been caused by a full disk (then look at the disk)."""
    return code in _DISK_SENSITIVE


def low_disks(paths: Mapping[str, Path], monitor: MonitorSettings) -> str | None:
    """Why the disks of ``paths`` (by name) are too full to work on, or None when they have space.

    The threshold is the disk check's own (``monitor.min_free_disk_mb``), `FLOOR_MB` at least.
    """
    free = {name: mb for name, path in paths.items() if (mb := free_mb(path)) is not None}
    limit = max(monitor.min_free_disk_mb, FLOOR_MB)
    verdict = disk_verdict(free, dataclasses.replace(monitor, min_free_disk_mb=limit))
    return verdict.diag if verdict is not None else None


class FullDisk:
    """A full-disk episode: since when, until when to wait, when to look again.

    Parameters
    ----------
    settings
        The ``disk`` settings.
    monitor
        The ``monitor`` settings (the free-space threshold).
    paths
        The disks to watch, by name (``workdir``, ``scratch``).
    """

    def __init__(self, settings: DiskSettings, monitor: MonitorSettings, paths: Mapping[str, Path]) -> None:
        self.settings = settings
        self.monitor = monitor
        self.paths = dict(paths)
        self.since: float | None = None
        self.why = ""
        self.episodes = 0
        self.waited_s = 0.0  # episodes that ended
        self._delay = settings.retry_s
        self._next_try = 0.0

    @property
    def full(self) -> bool:
        """Whether the disk is full now (an episode is open)."""
        return self.since is not None

    def enter(self, now: float, why: str) -> bool:
        """The disk is full (``why``); True if this opens a new episode (the caller says so once)."""
        if self.since is not None:
            return False
        self.since, self.why = now, why
        self.episodes += 1
        self._delay = self.settings.retry_s
        self._next_try = now + self._delay
        return True

    def due(self, now: float) -> bool:
        """Whether it is time to look again (and to try the failed writes again)."""
        return self.since is not None and now >= self._next_try

    def not_yet(self, now: float) -> None:
        """Still full: look again after a doubled pause."""
        self._delay = min(self._delay * 2, max(MAX_RETRY_S, self.settings.retry_s))
        self._next_try = now + self._delay

    def leave(self, now: float) -> float:
        """Space is back: close the episode; returns how long it lasted."""
        if self.since is None:
            return 0.0
        lasted = now - self.since
        self.waited_s += lasted
        self.since = None
        return lasted

    def expired(self, now: float, limit: float | None = None) -> bool:
        """Whether the wait is over: ``disk.wait_s`` since the episode began, or ``limit`` reached."""
        if self.since is None:
            return False
        return now >= self.since + self.settings.wait_s or (limit is not None and now >= limit)

    def has_space(self) -> bool:
        """Whether every watched disk has space again: above the threshold, and a probe write works."""
        if low_disks(self.paths, self.monitor) is not None:
            return False
        return all(takes_writes(path) for path in self.paths.values())


class NodeDisk(FullDisk):
    """A worker's side: it pauses while its disks are full, and stops when that lasts too long."""

    def explains(self, diag: str) -> bool:
        """Whether an item that failed with ``diag`` just now failed for lack of space."""
        return mentions_disk_full(diag) or low_disks(self.paths, self.monitor) is not None


class DiskWait(FullDisk):
    """Rank 0's side: the run's full-disk state, the space it holds back, and its summary.

    Parameters
    ----------
    settings, monitor
        The ``disk`` and ``monitor`` settings.
    layout
        The work directory (the disk rank 0 writes to).
    """

    def __init__(self, settings: DiskSettings, monitor: MonitorSettings, layout: WorkLayout) -> None:
        super().__init__(settings, monitor, {"workdir": layout.root})
        self.reserve = Reserve(layout.disk_reserve, settings.reserve_mb)
        self.requeued = 0  # ranges that failed for lack of space and went back to the queue
        self.drained = False

    def release_reserve(self) -> bool:
        """Give up the space held back, for the last records; whether there was any."""
        released = self.reserve.release()
        if released:
            log.warning("disk full: giving up the %d MB held back for the last records", self.reserve.mb)
        return released

    def summary(self, now: float) -> dict[str, Any] | None:
        """The ``disk`` entry of ``summary.json``: None when the disk was never full in this run."""
        if not self.episodes:
            return None
        waited = self.waited_s + (now - self.since if self.since is not None else 0.0)
        return {
            "state": "disk full" if self.full or self.drained else "space came back",
            "error_code": int(ErrorCode.NO_LOCAL_SPACE),
            "diag": self.why,
            "episodes": self.episodes,
            "waited_s": round(waited, 3),
            "ranges_requeued": self.requeued,
        }
