"""Sampling processes: the process table, process trees, and one process's figures.

On Linux everything comes from ``/proc``: one pass over ``/proc/*/stat`` gives every process's parent,
session, CPU ticks, threads, VMEM and RSS (`process_table`); `ProcessIndex` finds the trees in it;
`sample_from_proc` adds ``/proc/<pid>/io`` and, for PSS and swap, ``/proc/<pid>/smaps_rollup``. Where
there is no ``/proc``, `sample_process` asks psutil. Parsers are pure and tested on recorded text.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from hpcpilot.model import metrics as m

#: The cumulative counters of a job on a node.
COUNTERS = (m.CPU_S, m.RCHAR, m.WCHAR, m.RBYTES, m.WBYTES)
#: Clock ticks per second and kB per page, for ``/proc/<pid>/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_KB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 1024


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
