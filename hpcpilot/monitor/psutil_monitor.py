"""The ``psutil`` monitor: resource use of the payloads' process trees and of the node, and the checks.

Every ``monitor.period_s`` the worker hands it the items running on the node (`Watched`). For each
item it finds the process tree (every leader in ``pids``, its descendants, and any process left in the
leader's session after its parent died) from one scan of ``/proc/*/stat``, and samples each process
with psutil: RSS, VMEM, threads, CPU (user + system, with the children it reaped), I/O counters, and,
with ``monitor.pss``, PSS and swap from ``/proc/<pid>/smaps_rollup`` (one small file per process; the
full ``smaps`` only where the kernel has no rollup).

Job samples (one per job with processes on the node): memory and threads summed over the job's
items; ``cpu_s`` and the I/O counters cumulative for the job on this node. A process that vanished
has its last values added to the job's total, unless its parent is still in the tree: the parent
reaped it and accounts for it from then on (``cutime``, ``/proc/<pid>/io``). One node sample
(PandaID 0): load, memory, swap, free disk of the work directory (and of the scratch directory), busy
slots. The decisions are `hpcpilot.monitor.checks`'.
"""

from __future__ import annotations

import os
import shutil
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

#: The cumulative counters of a job on a node.
COUNTERS = (m.CPU_S, m.RCHAR, m.WCHAR, m.RBYTES, m.WBYTES)
#: Clock ticks per second and kB per page, for ``/proc/<pid>/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_KB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 1024
#: Most looping scans of one item's files per ``monitor.looping_s`` (the scan is rate-limited).
SCANS_PER_LOOPING_PERIOD = 20


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One process, sampled.

    Attributes
    ----------
    pid, ppid
        The process and its parent.
    created
        Its start time (with ``pid``, it names the process even if the pid is reused).
    rss_kb, vmem_kb
        Resident and virtual memory, kB.
    pss_kb, swap_kb
        Proportional set size and swapped-out memory, kB (None when not measured).
    threads
        Its threads.
    cpu_s
        User + system CPU seconds, its own and those of the children it reaped.
    rchar, wchar, rbytes, wbytes
        Its I/O counters, bytes (with those of the children it reaped).
    zombie
        It has ended and waits for its parent to reap it: it holds no memory, counts no process,
        and its counters pass to the parent when it is reaped.
    """

    pid: int
    ppid: int
    created: float
    rss_kb: float
    vmem_kb: float
    pss_kb: float | None
    swap_kb: float | None
    threads: int
    cpu_s: float
    rchar: float = 0.0
    wchar: float = 0.0
    rbytes: float = 0.0
    wbytes: float = 0.0
    zombie: bool = False

    def counters(self) -> dict[str, float]:
        """The cumulative counters (`COUNTERS`)."""
        return {
            m.CPU_S: self.cpu_s,
            m.RCHAR: self.rchar,
            m.WCHAR: self.wchar,
            m.RBYTES: self.rbytes,
            m.WBYTES: self.wbytes,
        }


# --- parsers and the process table ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` a sample needs (see proc(5)).

    Attributes
    ----------
    state
        ``R``, ``S``, ``D``, ``Z`` (zombie) ...
    ppid, session
        Its parent and its session.
    cpu_ticks
        ``utime + stime + cutime + cstime``: its own CPU and that of the children it reaped, in clock
        ticks.
    threads
        ``num_threads``.
    start_ticks
        ``starttime``: with the pid, it names the process even if the pid is reused.
    vsize
        Virtual memory, bytes.
    rss_pages
        Resident set, pages.
    """

    state: str
    ppid: int
    session: int
    cpu_ticks: int
    threads: int
    start_ticks: int
    vsize: int
    rss_pages: int


def parse_stat(text: str) -> Stat:
    """The fields of ``/proc/<pid>/stat`` (its command, in parentheses, may hold spaces and parentheses).

    Raises
    ------
    ValueError
        If the text is not such a line.
    """
    f = text[text.rindex(")") + 2 :].split()
    if len(f) < 22:
        raise ValueError(f"short /proc stat line: {text[:80]!r}")
    cpu = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return Stat(f[0], int(f[1]), int(f[3]), cpu, int(f[17]), int(f[19]), int(f[20]), int(f[21]))


def parse_io(text: str) -> tuple[float, float, float, float]:
    """``(rchar, wchar, read_bytes, write_bytes)`` from the text of ``/proc/<pid>/io``."""
    values = dict.fromkeys(("rchar", "wchar", "read_bytes", "write_bytes"), 0.0)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in values:
            values[key] = float(value)
    return values["rchar"], values["wchar"], values["read_bytes"], values["write_bytes"]


def parse_smaps_rollup(text: str) -> tuple[float, float]:
    """``(pss_kb, swap_kb)`` from the text of ``/proc/<pid>/smaps_rollup``."""
    pss = swap = 0.0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            pss = float(line.split()[1])
        elif line.startswith("Swap:"):
            swap = float(line.split()[1])
    return pss, swap


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def process_table(proc: str = "/proc") -> dict[int, Stat]:
    """The `Stat` of every process, from one pass over ``/proc/*/stat``.

    Processes that end during the scan are left out. Empty where there is no ``/proc``.
    """
    table: dict[int, Stat] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return table
    for name in entries:
        if name.isdigit():
            try:
                table[int(name)] = parse_stat(_read(f"{proc}/{name}/stat"))
            except (OSError, ValueError):
                continue
    return table


class ProcessIndex:
    """Children and session members of every process in a table, to find process trees.

    Parameters
    ----------
    table
        ``{pid: (ppid, session)}`` (or `Stat` objects) of every process.
    """

    def __init__(self, table: Mapping[int, tuple[int, int] | Stat]) -> None:
        self.pids = set(table)
        self.children: dict[int, list[int]] = defaultdict(list)
        self.sessions: dict[int, list[int]] = defaultdict(list)
        for pid, entry in table.items():
            ppid, sid = (entry.ppid, entry.session) if isinstance(entry, Stat) else entry
            self.children[ppid].append(pid)
            self.sessions[sid].append(pid)

    def tree(self, leaders: Iterable[int]) -> list[int]:
        """The leaders, their descendants, and the processes of their sessions (orphans included).

        Leaders that are gone (not in the table) and their descendants are left out.
        """
        lead = [p for p in leaders if p in self.pids]
        seen: set[int] = set()
        stack = list(lead)
        for leader in lead:
            stack.extend(self.sessions.get(leader, ()))
        while stack:
            pid = stack.pop()
            if pid not in seen:
                seen.add(pid)
                stack.extend(self.children.get(pid, ()))
        return sorted(seen)


def tree_pids(leaders: Iterable[int], table: Mapping[int, tuple[int, int] | Stat]) -> list[int]:
    """The leaders, their descendants, and the processes of their sessions (see `ProcessIndex`)."""
    return ProcessIndex(table).tree(leaders)


def sample_from_proc(pid: int, stat: Stat, pss: bool, proc: str = "/proc") -> ProcSample | None:
    """Sample one process from its `Stat` and ``/proc/<pid>/io`` (and ``smaps_rollup`` for PSS).

    None if it vanished. Counters that may not be read (another user's process) are 0.
    """
    try:
        io = parse_io(_read(f"{proc}/{pid}/io"))
    except FileNotFoundError:
        if not os.path.exists(f"{proc}/{pid}"):
            return None
        io = (0.0, 0.0, 0.0, 0.0)
    except OSError:
        io = (0.0, 0.0, 0.0, 0.0)
    cpu_s = stat.cpu_ticks / CLOCK_TICKS
    if stat.state == "Z":
        return ProcSample(pid, stat.ppid, stat.start_ticks, 0.0, 0.0, None, None, 0, cpu_s, *io, zombie=True)
    pss_kb, swap_kb = _pss(pid, proc) if pss else (None, None)
    return ProcSample(
        pid,
        stat.ppid,
        stat.start_ticks,
        stat.rss_pages * PAGE_KB,
        stat.vsize / 1024,
        pss_kb,
        swap_kb,
        stat.threads,
        cpu_s,
        *io,
    )


def sample_process(pid: int, pss: bool, proc: Path = Path("/proc")) -> ProcSample | None:
    """Sample one process with psutil (where there is no ``/proc``); None if it vanished."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return _zombie(process)
            mem = process.memory_info()
            cpu = process.cpu_times()
            sample = ProcSample(
                pid=pid,
                ppid=process.ppid(),
                created=process.create_time(),
                rss_kb=mem.rss / 1024,
                vmem_kb=mem.vms / 1024,
                pss_kb=None,
                swap_kb=None,
                threads=process.num_threads(),
                cpu_s=cpu.user + cpu.system + cpu.children_user + cpu.children_system,
            )
            io = _io_counters(process)
        pss_kb, swap_kb = _pss(pid, str(proc)) if pss else (None, None)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return ProcSample(
        sample.pid,
        sample.ppid,
        sample.created,
        sample.rss_kb,
        sample.vmem_kb,
        pss_kb,
        swap_kb,
        sample.threads,
        sample.cpu_s,
        *io,
    )


def _zombie(process: psutil.Process) -> ProcSample | None:
    """An ended, unreaped process: its CPU and I/O counters only."""
    try:
        cpu = process.cpu_times()
        ppid, created = process.ppid(), process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    try:
        io = _io_counters(process)
    except psutil.NoSuchProcess:  # a zombie's /proc/<pid>/io may be gone already
        io = (0.0, 0.0, 0.0, 0.0)
    total = cpu.user + cpu.system + cpu.children_user + cpu.children_system
    return ProcSample(process.pid, ppid, created, 0.0, 0.0, None, None, 0, total, *io, zombie=True)


def _io_counters(process: psutil.Process) -> tuple[float, float, float, float]:
    try:
        io = process.io_counters()
    except (psutil.AccessDenied, AttributeError, NotImplementedError):  # not readable here
        return 0.0, 0.0, 0.0, 0.0
    rchar = float(getattr(io, "read_chars", io.read_bytes))
    wchar = float(getattr(io, "write_chars", io.write_bytes))
    return rchar, wchar, float(io.read_bytes), float(io.write_bytes)


def _pss(pid: int, proc: str) -> tuple[float | None, float | None]:
    """PSS and swap (kB) from ``smaps_rollup``; the full ``smaps`` (psutil) where there is no rollup."""
    try:
        return parse_smaps_rollup(_read(f"{proc}/{pid}/smaps_rollup"))
    except FileNotFoundError:
        pass
    except OSError:
        return None, None
    try:
        full = psutil.Process(pid).memory_full_info()
    except (psutil.Error, AttributeError):
        return None, None
    return getattr(full, "pss", 0) / 1024, getattr(full, "swap", 0) / 1024


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


def free_mb(path: Path) -> float | None:
    """Free MB for an unprivileged user on the filesystem of ``path`` (None if it cannot be read)."""
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return None


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
        self._stopped = False

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
        verdict = None if self._stopped else disk_verdict(disks, self.settings)
        self._stopped |= verdict is not None
        return MetricSample(t, 0, tuple(values)), verdict
