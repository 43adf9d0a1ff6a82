"""A bounded, durable outbox of updates for the workload manager.

Every update (a job heartbeat, a final job update, a batch of range updates) is written to disk before
it is sent, one JSON file per item in the outbox directory (``<workdir>/panda_outbox/``), atomically
(`hpcpilot.runtime.atomic`). An item leaves the outbox only once the server took it, so updates that
could not be sent survive a restart of the pilot and are sent, in their order, by the next one.

Bounds: at most ``max_items`` items. When it is full, the oldest heartbeats are dropped first (a newer
report of the job supersedes them anyway); then the range-update items of each job are merged into one
item (one entry per range: the newest status of a range wins), which keeps every range update but
bounds the number of files by the number of jobs. Final updates are never dropped — the outbox then
grows beyond its bound, and says so in the log. A new heartbeat or final update of a job also replaces
that job's heartbeats that have not been sent yet. The communicator takes out a job's range updates
that can no longer be sent (`drop_job`: the job's final update is taken, or the server abandoned it).

Two lanes read it: `head_job` (heartbeats and final updates, oldest first) and `head_ranges` (range
updates, oldest first), so that range updates the server keeps failing never hold back a job's final
update.

File names: ``<seq:012d>-<kind>-<PandaID>.json``; content ``{"seq", "kind", "panda_id", "created",
"payload"}``. A file that cannot be read back is renamed to ``*.bad`` and logged, never sent.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcpilot.runtime.atomic import write_json_atomic

log = logging.getLogger(__name__)


class OutboxKind(enum.Enum):
    """What an outbox item is."""

    HEARTBEAT = "heartbeat"  # a report of a job that is not over (starting, running)
    FINAL = "final"  # the final report of a job (finished, failed)
    RANGES = "ranges"  # a batch of range updates


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One update waiting to be sent.

    Attributes
    ----------
    seq
        Its place in the order of sending.
    kind
        What it is.
    panda_id
        The job it is about.
    payload
        What to send (JSON-able; its shape is the communicator's business).
    created
        Unix time it was put in the outbox.
    """

    seq: int
    kind: OutboxKind
    panda_id: int
    payload: Mapping[str, Any]
    created: float

    @property
    def file_name(self) -> str:
        """Its file's name in the outbox directory."""
        return f"{self.seq:012d}-{self.kind.value}-{self.panda_id}.json"


class Outbox:
    """The outbox directory and its items, in order; safe to use from several threads.

    Parameters
    ----------
    directory
        Where the items are kept (created if needed); items found there are loaded.
    max_items
        The bound (see the module's description).
    """

    def __init__(self, directory: Path, max_items: int) -> None:
        self.directory = directory
        self.max_items = max(1, max_items)
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._items: list[OutboxItem] = self._load()
        self._ranges_by_job: Counter[int] = Counter(
            i.panda_id for i in self._items if i.kind is OutboxKind.RANGES
        )
        # range-update items never tried since they were put (or loaded): per job; and those tried
        self._untried_by_job: Counter[int] = Counter(self._ranges_by_job)
        self._tried: set[int] = set()
        self._next_seq = self._items[-1].seq + 1 if self._items else 1
        self._over_warned = 0

    def _load(self) -> list[OutboxItem]:
        items = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                item = OutboxItem(
                    seq=int(raw["seq"]),
                    kind=OutboxKind(raw["kind"]),
                    panda_id=int(raw["panda_id"]),
                    payload=dict(raw["payload"]),
                    created=float(raw["created"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("outbox item %s is unreadable (%s): kept aside as .bad, not sent", path.name, exc)
                path.replace(path.with_suffix(".bad"))
                continue
            items.append(item)
        items.sort(key=lambda i: i.seq)
        return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def items(self) -> list[OutboxItem]:
        """The items, oldest first (a copy)."""
        with self._lock:
            return list(self._items)

    def put(self, kind: OutboxKind, panda_id: int, payload: Mapping[str, Any]) -> OutboxItem:
        """Add an item; it is on disk when this returns.

        A heartbeat or final update replaces the job's heartbeats that are still waiting. When the
        outbox is full, the oldest heartbeats go first; other items are never dropped.
        """
        with self._lock:
            item = OutboxItem(self._next_seq, kind, panda_id, dict(payload), time.time())
            self._next_seq += 1
            write_json_atomic(self.directory / item.file_name, _record(item), indent=None)
            if kind in {OutboxKind.HEARTBEAT, OutboxKind.FINAL}:
                stale = [i for i in self._items if i.kind is OutboxKind.HEARTBEAT and i.panda_id == panda_id]
                self._drop(stale)
            self._items.append(item)
            if kind is OutboxKind.RANGES:
                self._ranges_by_job[panda_id] += 1
                self._untried_by_job[panda_id] += 1
            self._bound()
            return item

    def head(self, max_ranges: int) -> tuple[OutboxItem, ...]:
        """What one call can carry: the oldest item, and the range updates right behind it.

        When the oldest item is a batch of range updates, the range-update items that follow it join
        it, up to ``max_ranges`` ranges in all (the first item always comes, whatever its size).
        """
        with self._lock:
            if not self._items:
                return ()
            first = self._items[0]
            if first.kind is not OutboxKind.RANGES:
                return (first,)
            batch = [first]
            total = _n_ranges(first)
            for item in self._items[1:]:
                if item.kind is not OutboxKind.RANGES or total + _n_ranges(item) > max_ranges:
                    break
                batch.append(item)
                total += _n_ranges(item)
            return tuple(batch)

    def head_job(self, hold: str = "") -> OutboxItem | None:
        """The oldest heartbeat or final update that may go, or None.

        ``hold`` passes over (letting the items behind it go) the final update of a job that still has
        range updates waiting (``"ranges"``), or range updates never tried (``"untried"``).
        """
        with self._lock:
            waiting = {"ranges": self._ranges_by_job, "untried": self._untried_by_job}.get(hold)
            for item in self._items:
                if item.kind is OutboxKind.RANGES:
                    continue
                if waiting is not None and item.kind is OutboxKind.FINAL and waiting[item.panda_id]:
                    continue
                return item
            return None

    def head_ranges(self, max_ranges: int, untried_only: bool = False) -> tuple[OutboxItem, ...]:
        """The oldest range-update items, up to ``max_ranges`` ranges in all (the first always comes).

        With ``untried_only``, only items never tried.
        """
        with self._lock:
            batch: list[OutboxItem] = []
            total = 0
            for item in self._items:
                if item.kind is not OutboxKind.RANGES or (untried_only and item.seq in self._tried):
                    continue
                if batch and total + _n_ranges(item) > max_ranges:
                    break
                batch.append(item)
                total += _n_ranges(item)
            return tuple(batch)

    def mark_tried(self, items: Iterable[OutboxItem]) -> None:
        """Note that range-update items were sent once (the server's answer was not a success)."""
        with self._lock:
            present = {i.seq for i in self._items}
            for item in items:
                if item.kind is OutboxKind.RANGES and item.seq in present and item.seq not in self._tried:
                    self._tried.add(item.seq)
                    _decrement(self._untried_by_job, item.panda_id)

    def untried_ranges(self) -> int:
        """How many range-update items were never tried."""
        with self._lock:
            return sum(self._untried_by_job.values())

    def count(self, kind: OutboxKind, panda_id: int | None = None) -> int:
        """How many items of ``kind`` (of one job, when ``panda_id`` is given) wait."""
        with self._lock:
            if kind is OutboxKind.RANGES:
                if panda_id is not None:
                    return self._ranges_by_job[panda_id]
                return sum(self._ranges_by_job.values())
            return sum(
                1 for i in self._items if i.kind is kind and (panda_id is None or i.panda_id == panda_id)
            )

    def drop_job(self, panda_id: int, kinds: Iterable[OutboxKind]) -> int:
        """Take out every item of ``kinds`` of one job (never to be sent); how many ranges went with them."""
        wanted = set(kinds)
        with self._lock:
            gone = [i for i in self._items if i.panda_id == panda_id and i.kind in wanted]
            self._drop(gone)
            return sum(_n_ranges(i) for i in gone if i.kind is OutboxKind.RANGES)

    def remove(self, items: Iterable[OutboxItem]) -> None:
        """Take items out (they were sent, or refused for good)."""
        with self._lock:
            self._drop(list(items))

    def _drop(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        present = {i.seq for i in self._items}
        gone = {i.seq for i in items if i.seq in present}
        for item in items:
            if item.kind is OutboxKind.RANGES and item.seq in gone:
                _decrement(self._ranges_by_job, item.panda_id)
                if item.seq in self._tried:
                    self._tried.discard(item.seq)
                else:
                    _decrement(self._untried_by_job, item.panda_id)
        self._items = [i for i in self._items if i.seq not in gone]
        for item in items:
            (self.directory / item.file_name).unlink(missing_ok=True)

    def _bound(self) -> None:
        excess = len(self._items) - self.max_items
        if excess <= 0:
            return
        heartbeats = [i for i in self._items if i.kind is OutboxKind.HEARTBEAT][:excess]
        if heartbeats:
            log.warning(
                "outbox full (%d items): dropped the %d oldest heartbeat(s) of job(s) %s",
                self.max_items,
                len(heartbeats),
                ", ".join(sorted({str(i.panda_id) for i in heartbeats})),
            )
            self._drop(heartbeats)
        if len(self._items) > self.max_items:
            self._merge_ranges()
        over = len(self._items) - self.max_items
        if over > 0 and over >= 2 * self._over_warned:
            self._over_warned = max(1, over)
            log.warning(
                "outbox holds %d items, %d over its limit of %d (range updates merged to one item per job): "
                "final and range updates are never dropped",
                len(self._items),
                over,
                self.max_items,
            )

    def _merge_ranges(self) -> None:
        """Merge each job's range-update items into its oldest one, one entry per range (lock held).

        The merged item is written (atomically, under the oldest item's name) before the others go: a
        crash in between sends some updates twice, which the server takes like the first time.
        """
        by_job: dict[int, list[OutboxItem]] = {}
        for item in self._items:
            if item.kind is OutboxKind.RANGES:
                by_job.setdefault(item.panda_id, []).append(item)
        merged_items = 0
        for items in by_job.values():
            if len(items) < 2:
                continue
            entries: dict[str, Any] = {}
            others: list[Any] = []
            for item in items:
                for entry in item.payload.get("eventRanges", ()):
                    key = entry.get("eventRangeID") if isinstance(entry, Mapping) else None
                    if isinstance(key, str):
                        entries.pop(key, None)  # the newest status of a range wins, in its place
                        entries[key] = entry
                    else:
                        others.append(entry)
            first = items[0]
            any_untried = any(i.seq not in self._tried for i in items)
            payload = {"eventRanges": [*entries.values(), *others]}
            merged = OutboxItem(first.seq, first.kind, first.panda_id, payload, first.created)
            write_json_atomic(self.directory / merged.file_name, _record(merged), indent=None)
            self._items = [merged if i.seq == first.seq else i for i in self._items]
            self._drop(items[1:])
            if any_untried and first.seq in self._tried:  # it carries updates never tried
                self._tried.discard(first.seq)
                self._untried_by_job[first.panda_id] += 1
            merged_items += len(items) - 1
        if merged_items:
            log.info("outbox full: merged %d range-update item(s) into one per job", merged_items)


def _decrement(counter: Counter[int], key: int) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _record(item: OutboxItem) -> dict[str, Any]:
    return {
        "seq": item.seq,
        "kind": item.kind.value,
        "panda_id": item.panda_id,
        "created": item.created,
        "payload": dict(item.payload),
    }


def _n_ranges(item: OutboxItem) -> int:
    ranges = item.payload.get("eventRanges", ())
    return len(ranges) if isinstance(ranges, list) else 1
