"""Rank 0's side of monitoring: samples into job figures and ``monitor.h5``; silent workers.

The glue between the coordinator and the monitor family's pure parts (`MetricsAggregator`,
`TimeSeriesWriter`). Besides the workers' samples, rank 0 writes a row of what it knows itself for
every worker update (busy slots, ranges in flight; at most one per ``NODE_ROW_MIN_S`` and worker, the
latest state of a thinned-out update written once that time has passed), so the utilisation picture
of ``hpcpilot report`` exists even without monitor plugins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model.metrics import BUSY_SLOTS, MetricSample
from hpcpilot.monitor.aggregate import JobFigures, MetricsAggregator
from hpcpilot.monitor.timeseries import TimeSeriesWriter
from hpcpilot.parallel.books import WorkerBook

log = logging.getLogger(__name__)

#: Least seconds between two of rank 0's own rows for one worker.
NODE_ROW_MIN_S = 0.5

#: Most seconds between two looks for silent workers.
SILENT_CHECK_S = 5.0

#: Column names of rank 0's own rows.
IN_FLIGHT = "in_flight"
SLOTS = "slots"


class RunMonitor:
    """Rank 0's monitoring state.

    Parameters
    ----------
    settings
        The ``monitor`` settings.
    workdir
        The work directory (``monitor.file`` is relative to it).
    """

    def __init__(self, settings: MonitorSettings, workdir: Path) -> None:
        self.settings = settings
        self.aggregator = MetricsAggregator()
        self.series = TimeSeriesWriter(workdir / settings.file)
        self._last_row: dict[int, float] = {}
        self._heard: dict[int, float] = {}
        self._silent: set[int] = set()
        self._held: dict[int, tuple[str, dict[str, float]]] = {}
        self._next_write = time.monotonic() + settings.write_interval_s
        self._next_check = 0.0

    def fold(self, worker: WorkerBook, samples: tuple[MetricSample, ...]) -> None:
        """A worker's update arrived: note that it was heard from, fold its samples, queue them.

        Called before the update's results are booked, so that a job finished by them is reported with
        the samples taken while its last payloads ran.
        """
        now_mono = time.monotonic()
        self._heard[worker.rank] = now_mono
        if worker.rank in self._silent:
            self._silent.discard(worker.rank)
            log.warning("rank %d is heard from again", worker.rank)
        if not samples:
            return
        host = worker.node.host if worker.node is not None else ""
        self.aggregator.add(worker.rank, samples)
        for sample in samples:
            values = {"t": sample.t, **dict(sample.values)}
            if sample.panda_id == 0:
                self.series.add_node_row(worker.rank, host, values)
            else:
                self.series.add_job_row(sample.panda_id, worker.rank, values)

    def on_update(self, worker: WorkerBook, slots: int, force: bool = False) -> None:
        """A worker's update is booked: queue rank 0's row of it (busy slots, ranges in flight).

        Parameters
        ----------
        worker
            The worker's books, already updated.
        slots
            How many items the worker can run at once.
        force
            Write the row even if the last one is recent (the worker's last message).
        """
        now_mono = time.monotonic()
        host = worker.node.host if worker.node is not None else ""
        row = {
            "t": time.time(),
            BUSY_SLOTS: float(worker.busy_slots),
            IN_FLIGHT: float(worker.in_flight),
            SLOTS: float(slots),
        }
        if force or now_mono - self._last_row.get(worker.rank, -NODE_ROW_MIN_S) >= NODE_ROW_MIN_S:
            self._write_row(worker.rank, host, row, now_mono)
        else:  # too soon: the latest state waits (a change must not be lost, only thinned)
            self._held[worker.rank] = (host, row)

    def _write_row(self, rank: int, host: str, row: dict[str, float], now_mono: float) -> None:
        self._last_row[rank] = now_mono
        self._held.pop(rank, None)
        self.series.add_node_row(rank, host, row)

    def _release_held(self, now_mono: float, all_of_them: bool = False) -> None:
        """Write the held rows of workers whose last row is old enough (all of them at the end)."""
        for rank, (host, row) in list(self._held.items()):
            if all_of_them or now_mono - self._last_row.get(rank, 0.0) >= NODE_ROW_MIN_S:
                self._write_row(rank, host, row, now_mono)

    def figures(self, panda_id: int, wall_s: float) -> JobFigures:
        """A job's resource figures so far."""
        return self.aggregator.figures(panda_id, wall_s)

    def tick(self, workers: Iterable[WorkerBook]) -> None:
        """Periodic work: append to the file when due; look for silent workers now and then."""
        now = time.monotonic()
        if self._held:
            self._release_held(now)
        if now >= self._next_write:
            self.series.flush()
            self._next_write = now + self.settings.write_interval_s
        limit = self.settings.silent_worker_s
        if limit <= 0 or now < self._next_check:
            return
        self._next_check = now + min(limit / 10, SILENT_CHECK_S)
        for worker in workers:
            rank = worker.rank
            heard = self._heard.setdefault(rank, now)
            if worker.stopped or rank in self._silent or now - heard < limit:
                continue
            self._silent.add(rank)
            host = worker.node.host if worker.node is not None else "unknown host"
            log.warning(
                "rank %d (%s) has not been heard from for %.0f s (%d range(s) in flight there)",
                rank,
                host,
                now - heard,
                worker.in_flight,
            )

    def close(self) -> None:
        """The run ends: write what is left."""
        self._release_held(time.monotonic(), all_of_them=True)
        self.series.flush()
