"""The ``psutil`` monitor: resource use of the payloads' process trees and of the node, and the checks.

Every ``monitor.period_s`` the worker hands it the items running on the node (`Watched`). For each
item it finds the process tree (every leader in ``pids``, its descendants, and any process left in the
leader's session after its parent died) from one scan of the process table, and samples each process
(`hpcpilot.monitor.processes`: ``/proc`` on Linux, psutil elsewhere): RSS, VMEM, threads, CPU (user +
system, with the children it reaped), I/O counters, and, with ``monitor.pss``, PSS and swap.

Job samples (one per job with processes on the node): memory and threads summed over the job's
items; ``cpu_s`` and the I/O counters cumulative for the job on this node. A process that vanished
has its last values added to the job's total, unless its parent is still in the tree: the parent
reaped it and accounts for it from then on (``cutime``, ``/proc/<pid>/io``). One node sample
(PandaID 0, with psutil): load, memory, swap, free disk of the work directory (and of the scratch
directory), busy slots. The decisions are `hpcpilot.monitor.checks`'.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model import metrics as m
from hpcpilot.model.metrics import MetricSample
from hpcpilot.monitor.base import Monitor, NodeContext, Observation, Verdict, Watched
from hpcpilot.monitor.checks import (
    disk_verdict,
    limit_verdict,
    looping_verdict,
    memory_limit_kb,
    memory_over_since,
    memory_verdict,
)
from hpcpilot.monitor.processes import (
    COUNTERS,
    ProcessIndex,
    ProcSample,
    Stat,
    process_table,
    sample_from_proc,
    sample_process,
)
from hpcpilot.runtime.diskspace import free_mb

#: Most looping scans of one item's files per ``monitor.looping_s`` (the scan is rate-limited).
SCANS_PER_LOOPING_PERIOD = 20


def latest_mtime(paths: Iterable[Path], directory: Path | None = None) -> float | None:
    """The latest modification time (``time.time()`` scale) of files; None if none exists.

    ``paths`` and, when given, ``directory`` itself and the entries directly in it (not below).
    """
    times: list[float] = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    if directory is not None:
        try:
            times.append(directory.stat().st_mtime)
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        times.append(entry.stat(follow_symlinks=False).st_mtime)
                    except OSError:
                        continue
        except OSError:
            pass
    return max(times, default=None)


# --- the monitor ----------------------------------------------------------------------------


@dataclass
class _ItemState:
    """What the monitor keeps about one running item (reset when the slot starts another)."""

    started: float
    over_since: float | None = None
    last_progress: float = 0.0
    next_scan: float = 0.0
    judged: bool = False


@dataclass
class _ItemUsage:
    rss_kb: float = 0.0
    pss_kb: float = 0.0
    vmem_kb: float = 0.0
    swap_kb: float = 0.0
    threads: float = 0.0
    procs: float = 0.0
    cpu_s: float = 0.0
    measured_pss: bool = False

    def add(self, s: ProcSample) -> None:
        self.cpu_s += s.cpu_s
        if s.zombie:
            return
        self.rss_kb += s.rss_kb
        self.vmem_kb += s.vmem_kb
        self.threads += s.threads
        self.procs += 1
        if s.pss_kb is not None:
            self.pss_kb += s.pss_kb
            self.swap_kb += s.swap_kb or 0.0
            self.measured_pss = True


class PsutilMonitor(Monitor):
    """Samples the payloads' process trees and the node with psutil, and applies the checks."""

    def __init__(self, settings: MonitorSettings, node: NodeContext) -> None:
        super().__init__(settings, node)
        self._items: dict[str, _ItemState] = {}
        self._last: dict[tuple[int, float], tuple[int, ProcSample]] = {}
        self._retired: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0.0))
        self._disk_low = False  # the last look found too little disk: no new verdict until it had room

    def observe(self, now: float, running: Sequence[Watched]) -> Observation:
        """Sample every running item's processes and the node; return samples and verdicts."""
        t = time.time()
        watched = [item for item in running if item.pids]
        table = process_table() if watched else {}
        index = ProcessIndex(table)
        seen: dict[tuple[int, float], tuple[int, ProcSample]] = {}
        jobs: dict[int, _ItemUsage] = {}
        verdicts: list[Verdict] = []
        for item in watched:
            usage = _ItemUsage()
            for pid, sample in self._tree(item.pids, table, index):
                if sample is not None:
                    seen[(pid, sample.created)] = (item.job.panda_id, sample)
                    usage.add(sample)
            job = jobs.setdefault(item.job.panda_id, _ItemUsage())
            for name in ("rss_kb", "pss_kb", "vmem_kb", "swap_kb", "threads", "procs"):
                setattr(job, name, getattr(job, name) + getattr(usage, name))
            job.measured_pss |= usage.measured_pss
            verdict = self._check(item, usage, now, t)
            if verdict is not None:
                verdicts.append(verdict)
        ended = self._retire(seen)
        samples = [
            self._job_sample(t, panda_id, jobs.get(panda_id), seen) for panda_id in sorted(set(jobs) | ended)
        ]
        node_sample, disk = self._node(t, len(running))
        samples.append(node_sample)
        if disk is not None:
            verdicts.append(disk)
        return Observation(tuple(samples), tuple(verdicts))

    def forget(self, slot: str) -> None:
        """The item of ``slot`` ended."""
        self._items.pop(slot, None)

    def _tree(
        self, leaders: tuple[int, ...], table: Mapping[int, Stat], index: ProcessIndex
    ) -> list[tuple[int, ProcSample | None]]:
        """Samples of an item's process tree: from ``/proc``, or with psutil where there is none."""
        pss = self.settings.pss
        if table:
            return [(pid, sample_from_proc(pid, table[pid], pss)) for pid in index.tree(leaders)]
        pids: set[int] = set()
        for leader in leaders:
            try:
                pids.add(leader)
                pids.update(c.pid for c in psutil.Process(leader).children(recursive=True))
            except psutil.Error:
                continue
        return [(pid, sample_process(pid, pss)) for pid in sorted(pids)]

    # --- the checks of one item -------------------------------------------------------------

    def _check(self, item: Watched, usage: _ItemUsage, now: float, t: float) -> Verdict | None:
        state = self._items.get(item.slot)
        if state is None or state.started != item.started:
            state = self._items[item.slot] = _ItemState(item.started, last_progress=item.started)
        if state.judged:
            return None
        settings = self.settings
        used, what = (usage.pss_kb, "PSS") if usage.measured_pss else (usage.rss_kb, "RSS")
        state.over_since = memory_over_since(used, memory_limit_kb(settings, item.job), state.over_since, now)
        verdict = memory_verdict(item, used, state.over_since, now, settings, what=what)
        if verdict is None and settings.looping_s and now >= state.next_scan:
            state.next_scan = now + max(settings.period_s, settings.looping_s / SCANS_PER_LOOPING_PERIOD)
            directory = None if item.job.event_service else item.job_dir
            mtime = latest_mtime(item.files, directory)
            if mtime is not None:
                state.last_progress = max(state.last_progress, now - max(t - mtime, 0.0))
            verdict = looping_verdict(item, state.last_progress, now, settings)
        if verdict is None:
            verdict = limit_verdict(item, usage.cpu_s, now, settings)
        state.judged = verdict is not None
        return verdict

    # --- job totals -------------------------------------------------------------------------

    def _retire(self, seen: dict[tuple[int, float], tuple[int, ProcSample]]) -> set[int]:
        """Add the last values of vanished processes to their jobs' totals; return those jobs.

        A process whose parent is still in a tree was reaped by that parent, which counts it now.
        """
        alive = {key[0] for key in seen}
        ended: set[int] = set()
        for key, (panda_id, last) in self._last.items():
            if key in seen:
                continue
            ended.add(panda_id)
            if last.ppid in alive:
                continue
            totals = self._retired[panda_id]
            for name, value in last.counters().items():
                totals[name] += value
        self._last = seen
        return ended

    def _job_sample(
        self,
        t: float,
        panda_id: int,
        usage: _ItemUsage | None,
        seen: Mapping[tuple[int, float], tuple[int, ProcSample]],
    ) -> MetricSample:
        totals = dict(self._retired.get(panda_id) or dict.fromkeys(COUNTERS, 0.0))
        for owner, sample in seen.values():
            if owner == panda_id:
                for name, value in sample.counters().items():
                    totals[name] += value
        usage = usage or _ItemUsage()
        values = [
            (m.RSS_KB, usage.rss_kb),
            (m.VMEM_KB, usage.vmem_kb),
            (m.THREADS, usage.threads),
            (m.PROCESSES, usage.procs),
        ]
        if self.settings.pss:
            values += [(m.PSS_KB, usage.pss_kb), (m.SWAP_KB, usage.swap_kb)]
        values += [(name, totals[name]) for name in COUNTERS]
        return MetricSample(t, panda_id, tuple(values))

    # --- the node ---------------------------------------------------------------------------

    def _node(self, t: float, busy: int) -> tuple[MetricSample, Verdict | None]:
        memory = psutil.virtual_memory()
        values: list[tuple[str, float]] = [
            (m.LOAD1, os.getloadavg()[0]),
            (m.MEM_AVAILABLE_KB, memory.available / 1024),
            (m.MEM_TOTAL_KB, memory.total / 1024),
            (m.SWAP_USED_KB, psutil.swap_memory().used / 1024),
        ]
        disks: dict[str, float] = {}
        work = free_mb(self.node.workdir)
        if work is not None:
            disks["workdir"] = work
            values.append((m.DISK_FREE_MB, work))
        if self.node.scratch is not None:
            scratch = free_mb(self.node.scratch)
            if scratch is not None:
                disks["scratch"] = scratch
                values.append((m.SCRATCH_FREE_MB, scratch))
        values.append((m.BUSY_SLOTS, float(busy)))
        verdict = disk_verdict(disks, self.settings)
        fresh = verdict if verdict is not None and not self._disk_low else None
        self._disk_low = verdict is not None
        return MetricSample(t, 0, tuple(values)), fresh
