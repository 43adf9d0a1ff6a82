"""Journal cost: ranges/s of one dispatch workload with the batched journal, an fsync per record, none.

Usage::

    .venv/bin/python bench/journal.py [--ranges 3000] [--rounds 3] [--dir DIR] [--json OUT]

The coordinator and one worker run in this process (world size 1, as ``hpcpilot run`` without MPI) on
an event-service job of ``--ranges`` one-event ranges with the in-process ``sleep`` payload at 0 s, so
that dispatch and bookkeeping, journal included, are all the work. Three journals, interleaved over
``--rounds`` rounds (the order rotates each round) so that drifts of the machine hit all alike:

* ``batched``: the real `hpcpilot.runtime.journal.Journal` as the pilot uses it: one write + fsync per
  ``parallel.journal_flush_s``, plus one per batch of ranges received (so that a kill loses none);
* ``periodic``: the same, written only every ``parallel.journal_flush_s`` (no flush per batch received);
* ``per-record``: the same, flushed (write + fsync) after every record;
* ``none``: records built but never written.

The work directory is made in ``--dir`` (default: the current directory, a real disk; ``/tmp`` may be a
tmpfs, where fsync costs nothing). Prints a markdown table of the median ranges/s and the ratios to
``none``, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.config.schema import EventServiceSettings, NodeSettings, ParallelSettings, Settings
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import RangeResult
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag

VARIANTS = ("batched", "periodic", "per-record", "none")


class PerRecordJournal(Journal):
    """Flushes (write + fsync) after every record."""

    def append(self, event: str, **fields: Any) -> None:
        super().append(event, **fields)
        self.flush()

    def collect(self, event: str, job: int, rank: int, **columns: list[Any]) -> None:
        super().collect(event, job, rank, **columns)
        self.flush()


class PeriodicJournal(Journal):
    """Writes only every ``journal_flush_s`` (the pilot before ranges received were flushed at once)."""

    period_s = ParallelSettings().journal_flush_s
    _last = 0.0

    def flush(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.period_s:
            self._last = now
            super().flush()

    def close(self) -> None:
        self._last = 0.0
        super().close()


class NullJournal(Journal):
    """Builds every record, writes none."""

    def flush(self) -> None:
        self._close_groups()
        self.records_written += len(self._buffer)
        self._buffer.clear()


class Feed(Communicator):
    """One event-service job of ``n`` one-event ranges of the 0 s ``sleep`` payload."""

    def __init__(self, settings: Settings, layout: WorkLayout, n: int) -> None:
        super().__init__(settings, layout)
        self.job = Job(panda_id=1, task_id=1, event_service=True, job_pars="0", transformation="sleep")
        self.left = [EventRange(f"1-1-1-{i}-1", i, i) for i in range(1, n + 1)]
        self.given = False

    def fetch_jobs(self, n: int) -> JobBatch:
        given, self.given = self.given, True
        return JobBatch(() if given else (self.job,), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        taken, self.left = self.left[:n], self.left[n:]
        return RangeBatch(tuple(taken), exhausted=not self.left)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Nothing: the journal is what is measured."""

    def report_job(self, report: JobReport) -> None:
        """Nothing."""


def run_once(root: Path, variant: str, n: int) -> tuple[float, int]:
    """One run; returns (ranges/s, journal records written)."""
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=4))
    layout = WorkLayout(root)
    cls = {
        "batched": Journal,
        "periodic": PeriodicJournal,
        "per-record": PerRecordJournal,
        "none": NullJournal,
    }[variant]
    journal = cls(layout.journal)
    link = LocalLink()
    coordinator = Coordinator(
        link.coordinator, settings, layout, Feed(settings, layout, n), journal, lambda line: None
    )
    worker = par.make_worker(par.World(0, 1, "bench"), link.worker, settings, layout, tuple)
    started = time.perf_counter()
    par.run_single(coordinator, worker, replace(settings), SignalFlag())
    elapsed = time.perf_counter() - started
    journal.close()
    done = coordinator.books.ranges_finished
    assert done == n, f"{variant}: {done} of {n} ranges finished"
    return n / elapsed, journal.records_written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranges", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    records: dict[str, int] = {}
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            with tempfile.TemporaryDirectory(prefix=".bench-journal-", dir=args.dir) as tmp:
                rate, written = run_once(Path(tmp), variant, args.ranges)
            rates[variant].append(rate)
            records[variant] = written
    median = {v: statistics.median(rates[v]) for v in VARIANTS}
    print(f"journal cost: {args.ranges} ranges of 0 s, {args.rounds} rounds, on {args.dir}")
    python = sys.version.split()[0]
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, Python {python}")
    print()
    print("| journal | ranges/s (median) | vs none | records written |")
    print("|---|---:|---:|---:|")
    for v in VARIANTS:
        print(f"| {v} | {median[v]:.0f} | {median[v] / median['none']:.2f} | {records[v]} |")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "median": median, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
