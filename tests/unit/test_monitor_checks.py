"""The monitor's checks: pure decisions on measured figures."""

from __future__ import annotations

from pathlib import Path

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.monitor.base import VerdictKind, Watched
from hpcpilot.monitor.checks import (
    disk_verdict,
    limit_verdict,
    looping_verdict,
    memory_limit_kb,
    memory_over_since,
    memory_verdict,
)

JOB = Job(panda_id=7, transformation="x", min_ram_mb=100, max_walltime_s=50, max_cpu_s=20)


def item(job: Job = JOB, started: float = 1000.0) -> Watched:
    return Watched("r0001-s000", job, (123,), started, Path("/w/7"))


def test_memory_limit_comes_from_the_setting_else_min_ram_count() -> None:
    assert memory_limit_kb(MonitorSettings(), JOB) == 100 * 1024
    assert memory_limit_kb(MonitorSettings(memory_limit_mb=300), JOB) == 300 * 1024
    assert memory_limit_kb(MonitorSettings(), Job(panda_id=1, transformation="x")) is None


def test_memory_over_since_starts_keeps_and_resets() -> None:
    limit = 100 * 1024
    assert memory_over_since(50_000, limit, None, 10.0) is None
    assert memory_over_since(200_000, limit, None, 10.0) == 10.0
    assert memory_over_since(200_000, limit, 10.0, 20.0) == 10.0
    assert memory_over_since(50_000, limit, 10.0, 20.0) is None
    assert memory_over_since(200_000, None, None, 20.0) is None


def test_memory_kill_only_after_the_grace_period() -> None:
    settings = MonitorSettings(memory_grace_s=30)
    assert memory_verdict(item(), 200_000, 1000.0, 1020.0, settings) is None
    verdict = memory_verdict(item(), 200_000, 1000.0, 1031.0, settings, what="RSS")
    assert verdict is not None and verdict.kind is VerdictKind.KILL
    assert verdict.code is ErrorCode.PAYLOAD_EXCEEDED_MAX_MEMORY and int(verdict.code) == 1235
    assert verdict.slot == "r0001-s000" and "RSS 195 MB > 100 MB" in verdict.diag
    assert memory_verdict(item(), 50_000, 1000.0, 1100.0, settings) is None


def test_looping_counts_from_the_last_modification_or_the_start() -> None:
    settings = MonitorSettings(looping_s=60)
    assert looping_verdict(item(), 0.0, 1059.0, settings) is None  # started at 1000
    verdict = looping_verdict(item(), 0.0, 1061.0, settings)
    assert verdict is not None and int(verdict.code) == 1150
    assert looping_verdict(item(), 1050.0, 1100.0, settings) is None
    assert looping_verdict(item(), 0.0, 9999.0, MonitorSettings(looping_s=0)) is None


def test_low_disk_stops_the_node() -> None:
    settings = MonitorSettings(min_free_disk_mb=500)
    assert disk_verdict({"workdir": 800.0, "scratch": 600.0}, settings) is None
    verdict = disk_verdict({"workdir": 800.0, "scratch": 100.0}, settings)
    assert verdict is not None and verdict.kind is VerdictKind.STOP_NODE
    assert int(verdict.code) == 1098 and "scratch 100 MB" in verdict.diag
    assert disk_verdict({"workdir": 1.0}, MonitorSettings(min_free_disk_mb=0)) is None


def test_job_wall_and_cpu_limits() -> None:
    settings = MonitorSettings()
    assert limit_verdict(item(), 10.0, 1040.0, settings) is None
    wall = limit_verdict(item(), 10.0, 1051.0, settings)
    assert wall is not None and int(wall.code) == 1213
    cpu = limit_verdict(item(), 21.0, 1040.0, settings)
    assert cpu is not None and cpu.code == 1204
    assert limit_verdict(item(), 21.0, 1051.0, MonitorSettings(job_limits=False)) is None
    assert limit_verdict(item(Job(panda_id=1, transformation="x")), 1e9, 1e9, settings) is None
