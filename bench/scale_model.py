"""Scale model of rank 0: the real coordinator driven by N simulated workers of S slots each.

Usage::

    .venv/bin/python bench/scale_model.py --quick                 # 64 workers x 128 slots, 20k ranges (CI)
    .venv/bin/python bench/scale_model.py                         # N = 64, 512, 2048 x 128 slots, 1M ranges
    .venv/bin/python bench/scale_model.py --workers 512 --ranges 200000 [--payload-s 0.65] [--json OUT]

What runs is the REAL `hpcpilot.parallel.coordinator.Coordinator` with the real ``local``
communicator cutting the ranges of one event-service job (``nEventsPerInputFile`` = ranges, one event
per range), the real journal, monitor and settings (defaults but for ``local.events_per_range=1``), in
this process. Its transport is in-process (like the unit tests' hub) but pickles every message both
ways with the protocol mpi4py uses, so rank 0 pays for ``pickle.dumps`` of its assignments and
``pickle.loads`` of the workers' updates as it does over MPI. MPI's own costs (``improbe``, the
copies) are not modelled.

The simulated workers send the real message types (`WorkerUpdate` with a `NodeInfo` first,
columnar `RangeResults` per job, `WorkerBye` after `Stop`) and follow the real worker's rules for when to ask
for work and when to report (`hpcpilot.parallel.worker.Worker._maybe_send`: a queue of
``prefetch_per_slot`` ranges per slot, reports at once when idle, at ``parallel.batch_size`` results,
or after ``parallel.report_interval_s``). Each range finishes at once (``--payload-s 0``: rank 0 is
the only limit) or after ``--payload-s`` seconds of wall time.

Measured:

* rank-0 CPU: ``time.thread_time`` summed over the coordinator's steps (its own thread; the workers
  run between steps and are not counted), per range;
* the highest sustained rate one core gives: ranges / rank-0 CPU seconds (with ``--payload-s 0``);
  the wall rate of the whole model (workers included) is printed too;
* rank-0 memory: the RSS of this process once the job is done (the books still hold every range)
  less the RSS before the coordinator's first step; the simulated workers hold nothing then;
* messages per range in each direction, and journal bytes per range.

`main` runs each model in a fresh process forked from this one (so no run inherits another's memory
or imports), and before each, the same model with ``--baseline-ranges`` (1,000) ranges: rank 0's
memory at the end of a run less that of its baseline is issue 16's memory figure.

Issue 16's targets, printed as PASS/FAIL for the runs of the target's size (0 s payloads, 1M ranges):
rank-0 CPU <= 10 µs per range at 512 workers x 128 slots, and rank-0 memory <= 100 MB above the
same run with 1k ranges.

Every run checks its books: each range assigned exactly once and finished (``--check-ids``: by range
id; otherwise by counts, which is exact here since no range fails), rank 0's counts agreeing.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import multiprocessing
import os
import pickle
import platform
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from hpcpilot.comm.local import LocalCommunicator
from hpcpilot.config.loader import load_config
from hpcpilot.config.schema import Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import (
    Assignment,
    Farewell,
    Message,
    NodeInfo,
    RangeResults,
    RangeWork,
    Stop,
    WorkerBye,
    WorkerUpdate,
)
from hpcpilot.parallel.transport import Backoff, MessageCounts
from hpcpilot.runtime.journal import Journal

PANDA_ID = 7001
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL  # what mpi4py's pickle uses by default
FULL_WORKERS = (64, 512, 2048)
BASELINE_RANGES = 1_000  # issue 16: memory is judged against "the same run with 1k ranges"
# issue 16's targets, for runs of the target's size
TARGET_US = 10.0  # rank-0 CPU per range at TARGET_WORKERS x TARGET_SLOTS
TARGET_WORKERS, TARGET_SLOTS = 512, 128
TARGET_MB = 100.0  # rank-0 memory above the same run with BASELINE_RANGES ranges
TARGET_RANGES = 1_000_000  # the job size both targets are stated for


def sleep_job(n: int, payload_s: float) -> dict[str, Any]:
    """An event-service job of ``n`` one-event ranges of the ``sleep`` payload (as bench/dispatch.py)."""
    return {
        "PandaID": PANDA_ID,
        "taskID": 1,
        "jobsetID": 1,
        "attemptNr": 1,
        "transformation": "sleep",
        "jobPars": repr(payload_s),
        "eventService": "True",
        "coreCount": 1,
        "nEventsPerInputFile": n,
        "outFiles": "out.dat,log.tgz",
        "logFile": "log.tgz",
    }


class Hub:
    """Rank 0's in-process transport to the simulated workers; every message is pickled both ways.

    Only what rank 0 does (``send``: ``pickle.dumps``; ``poll``: ``pickle.loads``) runs in the
    coordinator's step; the workers' halves run outside it.
    """

    def __init__(self, ranks: tuple[int, ...]) -> None:
        self.worker_ranks = ranks
        self.inbox: deque[tuple[int, bytes]] = deque()
        self.outboxes: dict[int, deque[bytes]] = {r: deque() for r in ranks}
        self.mail: set[int] = set()  # workers with messages waiting
        self.counts = MessageCounts()  # what the coordinator reads for its summary

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        """Up to ``limit`` worker messages, unpickled."""
        out: list[tuple[int, Message]] = []
        inbox, loads = self.inbox, pickle.loads
        while inbox and len(out) < limit:
            rank, data = inbox.popleft()
            message = loads(data)
            self.counts.received(message)
            out.append((rank, message))
        return out

    def send(self, rank: int, message: Message) -> None:
        """Pickle a message for one worker."""
        self.outboxes[rank].append(pickle.dumps(message, PICKLE_PROTOCOL))
        self.mail.add(rank)
        self.counts.sent(message)

    def flush(self) -> None:
        """Nothing to wait for."""


class SimWorker:
    """A worker rank of ``slots`` slots whose ranges take ``payload_s`` (0: they end at once).

    It follows the real worker's rules for requests and reports (`hpcpilot.parallel.worker`).
    """

    def __init__(self, hub: Hub, rank: int, slots: int, payload_s: float, settings: Settings) -> None:
        self.hub, self.rank, self.slots, self.payload_s = hub, rank, slots, payload_s
        self.prefetch = settings.eventservice.prefetch_per_slot
        self.batch = settings.parallel.batch_size
        self.report_s = settings.parallel.report_interval_s
        self.node = NodeInfo(rank, f"sim{rank:05d}", slots)
        self.queue: deque[tuple[int, int]] = deque()  # (PandaID, index) of each range
        self.running: deque[tuple[float, tuple[int, int]]] = deque()  # (due, range): in order
        self.results: list[tuple[int, int]] = []  # finished ranges not reported yet
        self.cuts: dict[int, RangeCut] = {}
        self.oldest_result = 0.0
        self.request_outstanding = False
        self.asked = 0
        self.hello_sent = False
        self.stop: Stop | None = None
        self.bye_sent = False
        self.done = False
        self.busy_core_s = 0.0
        self.assigned = 0
        self.finished = 0
        self.ids: list[str] | None = None  # every range id received, when the ids are checked

    def step(self, now: float) -> float | None:
        """Take messages, end due ranges, start queued ones, send what is due; when to be stepped next."""
        box = self.hub.outboxes[self.rank]
        while box:
            self._on_message(pickle.loads(box.popleft()))
        if self.bye_sent:
            return None
        self._run(now)
        if self.stop is not None and not self.running:
            self._bye()
            return None
        self._maybe_send(now)
        due = [self.running[0][0]] if self.running else []
        if self.results:
            due.append(self.oldest_result + self.report_s)
        return min(due) if due else None

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Farewell):
            self.done = True
        elif self.bye_sent:
            return
        elif isinstance(message, Assignment):
            got = 0
            for work in message.ranges:
                self.queue.extend((work.panda_id, i) for i in range(work.start, work.stop))
                got += len(work)
                if isinstance(work.defs, RangeCut):
                    self.cuts[work.panda_id] = work.defs
                if self.ids is not None:
                    self.ids += self._ids(work)
            self.assigned += got
            self.asked -= got  # as the real worker: the rest of its request stands at rank 0
            self.request_outstanding = self.asked > 0
        elif isinstance(message, Stop):
            self.stop = message

    def _run(self, now: float) -> None:
        """End the ranges that are due and start queued ones on the free slots (over and over at 0 s)."""
        running, queue, payload_s = self.running, self.queue, self.payload_s
        while True:
            while running and running[0][0] <= now:
                self._finish(running.popleft()[1], now)
            if self.stop is not None or not queue or len(running) >= self.slots:
                return
            while queue and len(running) < self.slots:
                running.append((now + payload_s, queue.popleft()))
            if payload_s > 0:
                return

    def _ids(self, work: RangeWork) -> list[str]:
        if isinstance(work.defs, dict):
            return list(work.defs["ids"])
        return self.cuts[work.panda_id].range_ids(work.start, work.stop)

    def _finish(self, item: tuple[int, int], now: float) -> None:
        if not self.results:
            self.oldest_result = now
        self.results.append(item)
        self.busy_core_s += self.payload_s
        self.finished += 1

    def _batches(self) -> tuple[RangeResults, ...]:
        """The finished ranges as the real worker sends them: columns per job (one event each)."""
        per_job: dict[int, list[int]] = {}
        for panda_id, index in self.results:
            per_job.setdefault(panda_id, []).append(index)
        batches = []
        for panda_id, indices in per_job.items():
            n = len(indices)
            batches.append(
                RangeResults(
                    panda_id,
                    tuple(indices),
                    b"\x01" * n,
                    (1,) * n,
                    (-1,) * n,
                    ("",) * n,
                    (self.payload_s,) * n,
                    (0.0,) * n,
                )
            )
        return tuple(batches)

    def _update(self, want: int, free: int, busy: int) -> WorkerUpdate:
        update = WorkerUpdate(
            node=None if self.hello_sent else self.node,
            ranges=self._batches(),
            payloads=(),
            want_cores=want,
            free_cores=max(free, 0),
            busy_slots=busy,
        )
        self.hello_sent = True
        self.results = []
        return update

    def _send(self, message: Message) -> None:
        self.hub.inbox.append((self.rank, pickle.dumps(message, PICKLE_PROTOCOL)))

    def _maybe_send(self, now: float) -> None:
        """`hpcpilot.parallel.worker.Worker._maybe_send`, on counts."""
        total, running, queued = self.slots, len(self.running), len(self.queue)
        capacity = total * (1 + self.prefetch)
        wants = (
            self.stop is None
            and not self.request_outstanding
            and queued * 2 <= total * self.prefetch
            and capacity - running - queued > 0
        )
        n = len(self.results)
        due = n and (
            (running == 0 and not queued)
            or now - self.oldest_result >= self.report_s
            or (n >= self.batch and not self.request_outstanding)
        )
        if not (wants or due or not self.hello_sent):
            return
        want = capacity - running - queued if wants else 0
        self._send(self._update(want, total - running - queued, running))
        if want > 0:
            self.request_outstanding = True
            self.asked = want

    def _bye(self) -> None:
        returned = tuple(RangeWork(p, i, i + 1) for p, i in self.queue)
        self.queue.clear()
        self._send(WorkerBye(self._update(0, 0, 0), returned, (), self.busy_core_s, 0))
        self.bye_sent = True


@dataclass(frozen=True)
class ModelResult:
    """One run of the model.

    Attributes
    ----------
    workers, slots, ranges, payload_s
        What ran.
    finished
        Ranges rank 0 counts as finished.
    books_ok
        Every range assigned exactly once and finished; rank 0's counts agree (`check_books`).
    books_problems
        What disagreed, if anything.
    rank0_cpu_s
        CPU seconds of the coordinator's steps (its own thread).
    us_per_range
        ``rank0_cpu_s`` per finished range, in microseconds.
    rank0_rate
        Ranges per rank-0 CPU second: the rate one core sustains when the workers cost nothing.
    wall_s, wall_rate
        The whole model's time, workers included, and ranges per wall second.
    utilisation
        Payload seconds over slots x wall time (``payload_s`` > 0 only).
    rss_delta_mb, bytes_per_range
        Rank 0's memory at the job's end above that before its first step.
    rss_end_mb
        This process's RSS at the job's end (the coordinator's books still held).
    peak_rss_mb
        The process's peak RSS (the workers' in-flight ranges and messages included).
    messages_in, messages_out
        Messages rank 0 received and sent.
    journal_bytes
        Size of the journal.
    steps
        Coordinator steps.
    """

    workers: int
    slots: int
    ranges: int
    payload_s: float
    finished: int
    books_ok: bool
    books_problems: tuple[str, ...]
    rank0_cpu_s: float
    us_per_range: float
    rank0_rate: float
    wall_s: float
    wall_rate: float
    utilisation: float
    rss_delta_mb: float
    bytes_per_range: float
    rss_end_mb: float
    peak_rss_mb: float
    messages_in: int
    messages_out: int
    journal_bytes: int
    steps: int


def model_settings(overrides: dict[str, str] | None = None) -> Settings:
    """The defaults, one event per range, no status line; ``overrides`` (``section.key``) on top."""
    sets = {"local.events_per_range": "1", "eventservice.mode": "sleep", **(overrides or {})}
    return load_config(env={}, overrides=sets).settings


def check_books(
    workers: Sequence[SimWorker], ranges: int, finished: int, summary: dict[str, Any]
) -> tuple[str, ...]:
    """What disagrees: ranges assigned more or less than once, not finished, counts that differ."""
    problems = []
    assigned = sum(w.assigned for w in workers)
    done = sum(w.finished for w in workers)
    if assigned != ranges:
        problems.append(f"{assigned} assignments for {ranges} ranges")
    if done != ranges:
        problems.append(f"the workers finished {done} of {ranges}")
    if finished != ranges:
        problems.append(f"rank 0 counts {finished} of {ranges} finished")
    if all(w.ids is not None for w in workers):
        counts = Counter(i for w in workers for i in w.ids or ())
        twice = [i for i, c in counts.items() if c != 1]
        if len(counts) != ranges or twice:
            problems.append(f"{len(counts)} distinct ids of {ranges}; assigned more than once: {twice[:5]}")
    messages = summary.get("messages", {})
    if not messages or messages.get("in") is None:
        problems.append("no message counts in the summary")
    return tuple(problems)


def run_model(
    workers: int,
    slots: int,
    ranges: int,
    payload_s: float = 0.0,
    overrides: dict[str, str] | None = None,
    check_ids: bool = False,
    workdir: Path | None = None,
    timeout_s: float = 3600.0,
) -> ModelResult:
    """Run the real coordinator against ``workers`` simulated workers of ``slots`` slots until done."""
    with tempfile.TemporaryDirectory(prefix="scale-model-", dir=workdir) as tmp:
        root = Path(tmp)
        (root / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): sleep_job(ranges, payload_s)}))
        settings = model_settings(overrides)
        layout = WorkLayout(root)
        hub = Hub(tuple(range(1, workers + 1)))
        journal = Journal(layout.journal)
        coordinator = Coordinator(hub, settings, layout, LocalCommunicator(settings, layout), journal, _quiet)
        sims = {r: SimWorker(hub, r, slots, payload_s, settings) for r in hub.worker_ranks}
        if check_ids:
            for sim in sims.values():
                sim.ids = []
        result = _drive(coordinator, hub, sims, ranges, payload_s, timeout_s, check_ids)
        journal.close()
        journal_bytes = layout.journal.stat().st_size
    return ModelResult(**(result | {"journal_bytes": journal_bytes}))


def _quiet(line: str) -> None:
    """The status line goes nowhere."""


def _drive(
    coordinator: Coordinator,
    hub: Hub,
    sims: dict[int, SimWorker],
    ranges: int,
    payload_s: float,
    timeout_s: float,
    check_ids: bool,
) -> dict[str, Any]:
    """The loop: a coordinator step, then every worker that has mail or something due."""
    process = psutil.Process()
    gc.collect()
    rss0 = process.memory_info().rss
    backoff = Backoff(0.0, 0.001, hot_s=0.0, yield_s=0.0)
    due: list[tuple[float, int]] = [(0.0, rank) for rank in sims]  # (when, rank): first, each says hello
    thread_time, monotonic = time.thread_time, time.monotonic
    cpu, steps = 0.0, 0
    started = monotonic()
    deadline = started + timeout_s
    while not coordinator.done:
        t0 = thread_time()
        progress = coordinator.step()
        cpu += thread_time() - t0
        steps += 1
        now = monotonic()
        if now > deadline:
            raise TimeoutError(f"the model did not end within {timeout_s:.0f} s")
        active = hub.mail
        hub.mail = set()
        while due and due[0][0] <= now:
            active.add(heapq.heappop(due)[1])
        for rank in active:
            sim = sims[rank]
            if sim.done:
                continue
            when = sim.step(now)
            if when is not None:
                heapq.heappush(due, (when, rank))
            progress = True
        if progress or hub.inbox:
            backoff.progress()
        else:
            backoff.idle(due[0][0] - now if due else None)
    wall = monotonic() - started
    rss1 = process.memory_info().rss
    summary = coordinator.summary()
    finished = int(summary["ranges"]["finished"])
    problems = check_books(list(sims.values()), ranges, finished, summary)
    n_slots = sum(s.slots for s in sims.values())
    return {
        "workers": len(sims),
        "slots": next(iter(sims.values())).slots if sims else 0,
        "ranges": ranges,
        "payload_s": payload_s,
        "finished": finished,
        "books_ok": not problems,
        "books_problems": problems,
        "rank0_cpu_s": cpu,
        "us_per_range": cpu / finished * 1e6 if finished else 0.0,
        "rank0_rate": finished / cpu if cpu else 0.0,
        "wall_s": wall,
        "wall_rate": finished / wall if wall else 0.0,
        "utilisation": finished * payload_s / (n_slots * wall) if payload_s and wall else 0.0,
        "rss_delta_mb": (rss1 - rss0) / 2**20,
        "rss_end_mb": rss1 / 2**20,
        "bytes_per_range": (rss1 - rss0) / ranges if ranges else 0.0,
        "peak_rss_mb": _peak_rss_mb(),
        "messages_in": hub.counts.n_received,
        "messages_out": hub.counts.n_sent,
        "steps": steps,
    }


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the report ----------------------------------------------------------------------------------


def table(results: Sequence[ModelResult]) -> list[str]:
    """A markdown table of the runs."""
    lines = [
        "| workers x slots | ranges | payload | rank-0 CPU | µs/range | ranges/s on one core | wall rate "
        "| msgs in/out per 1k ranges | rank-0 RSS delta | bytes/range | journal B/range | books |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        per_k = 1000 / r.ranges if r.ranges else 0.0
        lines.append(
            f"| {r.workers} x {r.slots} | {r.ranges:,} | {r.payload_s:g} s | {r.rank0_cpu_s:.2f} s "
            f"| {r.us_per_range:.1f} | {r.rank0_rate:,.0f} | {r.wall_rate:,.0f}/s "
            f"| {r.messages_in * per_k:.1f} / {r.messages_out * per_k:.1f} | {r.rss_delta_mb:.0f} MB "
            f"| {r.bytes_per_range:.0f} | {r.journal_bytes / max(r.ranges, 1):.0f} "
            f"| {'ok' if r.books_ok else 'WRONG: ' + '; '.join(r.books_problems)} |"
        )
    return lines


@dataclass(frozen=True)
class MemoryComparison:
    """A run's rank-0 memory against the same run with `BASELINE_RANGES` ranges.

    Attributes
    ----------
    run, baseline
        The two runs: same workers, slots and payload, each in a fresh process (`run_isolated`).
    """

    run: ModelResult
    baseline: ModelResult

    @property
    def above_mb(self) -> float:
        """Rank 0's RSS at the run's end above that at the baseline's end, MB."""
        return self.run.rss_end_mb - self.baseline.rss_end_mb

    @property
    def delta_above_mb(self) -> float:
        """The same from each run's growth since its first step (`ModelResult.rss_delta_mb`), MB."""
        return self.run.rss_delta_mb - self.baseline.rss_delta_mb


@dataclass(frozen=True)
class Verdict:
    """One target's outcome for one run.

    Attributes
    ----------
    name
        The target, with the run it was judged on.
    ok
        Whether it was met; None when the run is not of the target's size (shown, not judged).
    detail
        The figure and the target.
    """

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        """The verdict as a markdown list item."""
        if self.ok is None:
            mark = f"not judged (the target is for 0 s payloads and {TARGET_RANGES:,} ranges)"
        else:
            mark = "PASS" if self.ok else "FAIL"
        return f"- {mark}: {self.name}: {self.detail}"


def pair_baselines(
    results: Sequence[ModelResult], baselines: Sequence[ModelResult]
) -> list[MemoryComparison]:
    """Each run with the baseline of the same workers, slots and payload (runs without one left out)."""
    by_shape = {(b.workers, b.slots, b.payload_s): b for b in baselines}
    pairs = []
    for r in results:
        base = by_shape.get((r.workers, r.slots, r.payload_s))
        if base is not None:
            pairs.append(MemoryComparison(r, base))
    return pairs


def of_target_size(r: ModelResult) -> bool:
    """Whether a run is of the size issue 16 states its targets for (0 s payloads, 1M ranges or more)."""
    return r.payload_s == 0 and r.ranges >= TARGET_RANGES


def cpu_verdicts(results: Sequence[ModelResult]) -> list[Verdict]:
    """Rank-0 CPU per range at 512 x 128 (judged at the target's size; other 512 x 128 runs shown)."""
    out = []
    for r in results:
        if r.workers != TARGET_WORKERS or r.slots != TARGET_SLOTS:
            continue
        name = f"rank-0 CPU per range at {r.workers} x {r.slots}, {r.ranges:,} ranges, {r.payload_s:g} s"
        detail = (
            f"{r.us_per_range:.1f} µs, {r.rank0_rate:,.0f} ranges/s on one core "
            f"(target <= {TARGET_US:g} µs, i.e. >= {1e6 / TARGET_US:,.0f} ranges/s)"
        )
        out.append(Verdict(name, r.us_per_range <= TARGET_US if of_target_size(r) else None, detail))
    return out


def memory_verdicts(pairs: Sequence[MemoryComparison]) -> list[Verdict]:
    """Rank-0 memory above the same run with 1k ranges (judged at the target's size)."""
    out = []
    for c in pairs:
        r = c.run
        name = (
            f"rank-0 memory at {r.workers} x {r.slots}, {r.ranges:,} ranges, above the same run "
            f"with {c.baseline.ranges:,}"
        )
        detail = (
            f"{c.above_mb:+.0f} MB ({r.rss_end_mb:.0f} against {c.baseline.rss_end_mb:.0f} MB at the end; "
            f"{c.delta_above_mb:+.0f} MB from each run's growth) (target <= {TARGET_MB:g} MB)"
        )
        ok = c.above_mb <= TARGET_MB if of_target_size(r) and c.baseline.ranges <= BASELINE_RANGES else None
        out.append(Verdict(name, ok, detail))
    return out


def verdicts(results: Sequence[ModelResult], baselines: Sequence[ModelResult] = ()) -> list[Verdict]:
    """Issue 16's targets for these runs: rank-0 CPU at 512 x 128, and memory above the 1k-range runs."""
    return cpu_verdicts(results) + memory_verdicts(pair_baselines(results, baselines))


def memory_table(pairs: Sequence[MemoryComparison]) -> list[str]:
    """A markdown table of rank 0's memory, each run against its baseline."""
    lines = [
        "| workers x slots | ranges | rank-0 RSS at the end | baseline ranges | its RSS at the end "
        "| above the baseline | target |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in pairs:
        lines.append(
            f"| {c.run.workers} x {c.run.slots} | {c.run.ranges:,} | {c.run.rss_end_mb:.0f} MB "
            f"| {c.baseline.ranges:,} | {c.baseline.rss_end_mb:.0f} MB | {c.above_mb:+.0f} MB "
            f"| <= {TARGET_MB:g} MB at {TARGET_RANGES:,} ranges |"
        )
    return lines


def run_isolated(*args: Any, **kwargs: Any) -> ModelResult:
    """`run_model` in a fresh process forked from this one: no run inherits another's memory or imports."""
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_model, *args, **kwargs).result()


def progress(r: ModelResult) -> None:
    """One line per run on stderr."""
    print(
        f"  {r.workers} x {r.slots}, {r.ranges:,} ranges: rank 0 {r.rank0_cpu_s:.2f} s CPU "
        f"({r.us_per_range:.1f} µs/range), wall {r.wall_s:.1f} s, RSS {r.rss_end_mb:.0f} MB at the end "
        f"(+{r.rss_delta_mb:.0f} MB), books {'ok' if r.books_ok else 'WRONG'}",
        file=sys.stderr,
        flush=True,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers", type=int, nargs="+", help=f"worker counts (default {' '.join(map(str, FULL_WORKERS))})"
    )
    parser.add_argument("--slots", type=int, default=128, help="slots per worker (default 128)")
    parser.add_argument("--ranges", type=int, default=1_000_000, help="ranges of the job (default 1M)")
    parser.add_argument("--payload-s", type=float, default=0.0, help="seconds per range (default 0: at once)")
    parser.add_argument("--quick", action="store_true", help="64 workers, 20k ranges (seconds; CI)")
    parser.add_argument("--check-ids", action="store_true", help="check exactly-once by range id too")
    parser.add_argument(
        "--baseline-ranges",
        type=int,
        default=BASELINE_RANGES,
        metavar="N",
        help=f"before each run, the same with N ranges, for the memory target (default {BASELINE_RANGES:,}; "
        "0: none)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting for rank 0 (repeatable; to try tunings)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes SECTION.KEY=VALUE")
    if args.quick:
        args.workers = args.workers or [64]
        args.ranges = 20_000
        args.check_ids = True
    args.workers = args.workers or list(FULL_WORKERS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the model at each worker count (each after its baseline); print tables and verdicts.

    Exits 1 if the books of any run are wrong; the targets are printed, never enforced.
    """
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    load_before = os.getloadavg()[0]
    results: list[ModelResult] = []
    baselines: list[ModelResult] = []
    for n in args.workers:
        if 0 < args.baseline_ranges < args.ranges:
            base = run_isolated(
                n, args.slots, args.baseline_ranges, args.payload_s, overrides, args.check_ids
            )
            progress(base)
            baselines.append(base)
        r = run_isolated(n, args.slots, args.ranges, args.payload_s, overrides, args.check_ids)
        progress(r)
        results.append(r)
    load = {"before": load_before, "after": os.getloadavg()[0]}
    pairs = pair_baselines(results, baselines)
    found = verdicts(results, baselines)
    print(f"## Scale model: rank 0 with {args.slots}-slot simulated workers\n")
    print("\n".join(table(baselines + results)))
    if pairs:
        print("\n### Rank-0 memory against the same run with fewer ranges\n")
        print("\n".join(memory_table(pairs)))
    print("\n### Targets (issue 16)\n")
    print(
        "\n".join(v.line() for v in found)
        or f"(no run at {TARGET_WORKERS} x {TARGET_SLOTS} and no baseline run: no target verdict)"
    )
    print(
        f"\n(machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"1-minute load average {load['before']:.1f} before, {load['after']:.1f} after; "
        "each run in a fresh process)"
    )
    if args.json:
        data: dict[str, Any] = {"load_average": load, "args": vars(args) | {"json": str(args.json)}}
        data["results"] = [asdict(r) for r in results]
        data["baselines"] = [asdict(r) for r in baselines]
        data["memory"] = [
            {"workers": c.run.workers, "ranges": c.run.ranges, "baseline_ranges": c.baseline.ranges}
            | {"above_mb": c.above_mb, "delta_above_mb": c.delta_above_mb}
            for c in pairs
        ]
        data["targets"] = [asdict(v) for v in found]
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    return 0 if all(r.books_ok for r in baselines + results) else 1


if __name__ == "__main__":
    sys.exit(main())
