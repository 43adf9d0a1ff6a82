"""The psutil monitor on real processes: trees, job totals, node figures and the checks it applies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model import metrics as m
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.monitor.base import NodeContext, VerdictKind, Watched
from hpcpilot.monitor.processes import (
    parse_io,
    parse_smaps_rollup,
    parse_stat,
    process_table,
    sample_from_proc,
    sample_process,
    tree_pids,
)
from hpcpilot.monitor.psutil_monitor import PsutilMonitor, latest_mtime

SMAPS_ROLLUP = """\
55f695242000-7fff9beea000 ---p 00000000 00:00 0                          [rollup]
Rss:                1688 kB
Pss:                 352 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Shared_Clean:       1508 kB
Private_Dirty:       112 kB
Swap:                  8 kB
SwapPss:               4 kB
"""

STAT = (
    "4242 (my (odd) cmd) S 17 4242 4200 0 -1 4194560 150 0 0 0 120 30 5 1 20 0 3 0 987654 "
    "123456768 2500 18446744073709551615 1 1 0 0 0 0 0 16781312 17442 0 0 0 17 1 0 0 0 0 0"
)
IO = "rchar: 1706866\nwchar: 12\nsyscr: 200\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 0\n"

# a parent that starts a child, both burning a little CPU and holding ~30 MB; "ready" once both hold it
# (a child still growing while it is sampled shows a PSS above the RSS read a moment before)
TREE = """
import subprocess, sys, time
hold = "b = bytearray(30 << 20); print('up', flush=True); import time; time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
b = bytearray(30 << 20)
assert child.stdout.readline() == "up\\n"
print("ready", child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == "ready"
    yield proc, int(line[1])
    os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
    proc.wait()


def watched(pid: int, tmp_path: Path, job: Job | None = None, files: tuple[Path, ...] = ()) -> Watched:
    job = job or Job(panda_id=9, transformation="x", event_service=True)
    return Watched("r0001-s000", job, (pid,), time.monotonic(), tmp_path, files)


def monitor(tmp_path: Path, **settings: object) -> PsutilMonitor:
    return PsutilMonitor(MonitorSettings(**settings), NodeContext(1, "n1", 2, tmp_path))  # type: ignore[arg-type]


def test_parsers_read_recorded_proc_files() -> None:
    assert parse_smaps_rollup(SMAPS_ROLLUP) == (352.0, 8.0)
    stat = parse_stat(STAT)
    assert (stat.state, stat.ppid, stat.session, stat.threads) == ("S", 17, 4200, 3)
    assert stat.cpu_ticks == 120 + 30 + 5 + 1 and stat.start_ticks == 987654
    assert (stat.vsize, stat.rss_pages) == (123_456_768, 2500)
    assert parse_io(IO) == (1_706_866.0, 12.0, 4096.0, 0.0)
    table = {1: (0, 1), 10: (1, 10), 11: (10, 10), 12: (11, 10), 20: (1, 10), 30: (1, 30)}
    assert tree_pids([10], table) == [10, 11, 12, 20]  # 20: an orphan left in the session
    assert tree_pids([99], table) == []


def test_job_and_node_samples_of_a_process_tree(
    tmp_path: Path, tree: tuple[subprocess.Popen[str], int]
) -> None:
    proc, child = tree
    table = process_table()
    assert set(tree_pids([proc.pid], table)) >= {proc.pid, child}
    obs = monitor(tmp_path).observe(time.monotonic(), [watched(proc.pid, tmp_path)])
    [job, node] = obs.samples
    assert job.panda_id == 9 and node.panda_id == 0
    assert job.get(m.PROCESSES) == 2 and job.get(m.THREADS) >= 2
    assert job.get(m.RSS_KB) > 2 * 25 * 1024  # two processes holding 30 MB each
    assert 0 < job.get(m.PSS_KB) <= job.get(m.RSS_KB) and job.get(m.VMEM_KB) > job.get(m.RSS_KB)
    assert job.get(m.CPU_S) > 0 and job.get(m.RCHAR) > 0  # python read its modules
    assert node.get(m.MEM_TOTAL_KB) > node.get(m.MEM_AVAILABLE_KB) > 0
    assert node.get(m.DISK_FREE_MB) > 0 and node.get(m.BUSY_SLOTS) == 1
    assert m.SCRATCH_FREE_MB not in dict(node.values)
    assert obs.verdicts == ()


def test_counters_stay_cumulative_when_a_process_ends(
    tmp_path: Path, tree: tuple[subprocess.Popen[str], int]
) -> None:
    proc, child = tree
    mon = monitor(tmp_path, pss=False)
    item = watched(proc.pid, tmp_path)
    [before, _] = mon.observe(time.monotonic(), [item]).samples
    os.kill(child, signal.SIGKILL)
    time.sleep(0.2)
    [after, _] = mon.observe(time.monotonic(), [item]).samples
    assert after.get(m.PROCESSES) == 1 and m.PSS_KB not in dict(after.values)
    assert after.get(m.CPU_S) >= before.get(m.CPU_S)
    assert after.get(m.RCHAR) >= before.get(m.RCHAR)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    [ended, _] = mon.observe(time.monotonic(), [item]).samples  # the job's last sample on the node
    assert ended.panda_id == 9 and ended.get(m.PROCESSES) == 0
    assert ended.get(m.CPU_S) >= after.get(m.CPU_S) > 0


def test_memory_over_the_job_limit_is_killed_after_the_grace(
    tmp_path: Path, tree: tuple[subprocess.Popen[str], int]
) -> None:
    proc, _ = tree
    job = Job(panda_id=9, transformation="x", event_service=True, min_ram_mb=20)
    mon = monitor(tmp_path, memory_grace_s=0.3)
    item = watched(proc.pid, tmp_path, job)
    assert mon.observe(time.monotonic(), [item]).verdicts == ()  # over, but the grace runs
    time.sleep(0.4)
    [verdict] = mon.observe(time.monotonic(), [item]).verdicts
    assert verdict.kind is VerdictKind.KILL and verdict.code is ErrorCode.PAYLOAD_EXCEEDED_MAX_MEMORY
    assert verdict.slot == "r0001-s000" and "PSS" in verdict.diag
    assert mon.observe(time.monotonic(), [item]).verdicts == ()  # decided once


def test_looping_when_no_file_changes(tmp_path: Path, tree: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = tree
    log = tmp_path / "slot.out"
    log.write_text("start\n")
    old = time.time() - 100
    os.utime(log, (old, old))  # written long before the item started
    mon = monitor(tmp_path, looping_s=5, period_s=0.1)
    item = Watched("r0001-s000", Job(panda_id=9, transformation="x"), (proc.pid,), 1000.0, tmp_path, (log,))
    (tmp_path / "input.dat").write_text("x")  # a plain job: its directory counts too
    os.utime(tmp_path / "input.dat", (old, old))
    os.utime(tmp_path, (old, old))
    assert mon.observe(1003.0, [item]).verdicts == ()  # 3 s since the start

    def written_ago(seconds: float) -> None:  # the monitor's clock is the test's; file times are real
        when = time.time() - seconds
        os.utime(log, (when, when))

    written_ago(0)  # a write at 1004.5
    assert mon.observe(1004.5, [item]).verdicts == ()
    written_ago(3.5)
    assert mon.observe(1008.0, [item]).verdicts == ()  # 3.5 s since the write
    written_ago(5.5)
    [verdict] = mon.observe(1010.0, [item]).verdicts  # 5.5 s since the write
    assert verdict.code is ErrorCode.LOOPING_JOB and verdict.slot == "r0001-s000"


def test_looping_of_a_range_ignores_the_shared_job_directory(
    tmp_path: Path, tree: tuple[subprocess.Popen[str], int]
) -> None:
    proc, _ = tree
    job = Job(panda_id=9, transformation="x", event_service=True)
    item = Watched("r0001-s000", job, (proc.pid,), 1000.0, tmp_path, (tmp_path / "mine.out",))
    mon = monitor(tmp_path, looping_s=5, period_s=0.1)
    assert mon.observe(1003.0, [item]).verdicts == ()
    (tmp_path / "other-range-output").write_text("x")  # another range's output, in the job dir
    [verdict] = mon.observe(1006.0, [item]).verdicts
    assert verdict.code is ErrorCode.LOOPING_JOB


def test_job_limits_kill_over_the_cpu_limit(tmp_path: Path, tree: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = tree
    job = Job(panda_id=9, transformation="x", event_service=True, max_cpu_s=0)
    assert monitor(tmp_path).observe(time.monotonic(), [watched(proc.pid, tmp_path, job)]).verdicts == ()
    job = Job(panda_id=9, transformation="x", max_walltime_s=1)
    item = Watched("r0001-s000", job, (proc.pid,), time.monotonic() - 5, tmp_path)
    [verdict] = monitor(tmp_path).observe(time.monotonic(), [item]).verdicts
    assert verdict.code is ErrorCode.REACHED_MAX_TIME


def test_low_disk_stops_the_node_once(tmp_path: Path) -> None:
    mon = PsutilMonitor(MonitorSettings(min_free_disk_mb=10**9), NodeContext(1, "n1", 2, tmp_path, tmp_path))
    obs = mon.observe(time.monotonic(), [])
    [verdict] = obs.verdicts
    assert verdict.kind is VerdictKind.STOP_NODE and verdict.code is ErrorCode.NO_LOCAL_SPACE
    assert "workdir" in verdict.diag and "scratch" in verdict.diag
    [node] = obs.samples
    assert node.get(m.SCRATCH_FREE_MB) > 0
    assert mon.observe(time.monotonic(), []).verdicts == ()


def test_items_without_processes_are_not_judged(tmp_path: Path) -> None:
    item = Watched("r0001-s000", Job(panda_id=9, transformation="x", max_walltime_s=1), (), 0.0, tmp_path)
    obs = monitor(tmp_path).observe(time.monotonic(), [item])
    assert obs.verdicts == () and [s.panda_id for s in obs.samples] == [0]


def test_latest_mtime_of_files_and_a_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "sub"
    a.write_text("x")
    b.mkdir()
    os.utime(a, (1000, 1000))
    os.utime(b, (2000, 2000))
    os.utime(tmp_path, (1500, 1500))
    assert latest_mtime([a, tmp_path / "missing"]) == 1000
    assert latest_mtime([a], tmp_path) == 2000
    assert latest_mtime([tmp_path / "missing"]) is None


def test_proc_and_psutil_samples_agree(tree: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = tree
    direct = sample_from_proc(proc.pid, process_table()[proc.pid], pss=True)
    fallback = sample_process(proc.pid, pss=True)  # where there is no /proc
    assert direct is not None and fallback is not None
    assert direct.ppid == fallback.ppid == os.getpid()
    assert abs(direct.rss_kb - fallback.rss_kb) < 0.2 * fallback.rss_kb
    assert direct.vmem_kb == fallback.vmem_kb and direct.threads == fallback.threads
    assert abs(direct.cpu_s - fallback.cpu_s) < 0.1 and direct.rchar > 0
    assert direct.pss_kb is not None and direct.pss_kb > 20 * 1024
