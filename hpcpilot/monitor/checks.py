"""The checks a monitor makes of a payload item and of the node, as pure functions.

Each takes what was measured (and, where a condition must last, since when it holds) and returns a
`Verdict` or None. No I/O here: the sampler (`hpcpilot.monitor.psutil_monitor`) measures and keeps the
state, these decide. Codes: 1235 memory over the limit for longer than the grace period, 1150 looping
(no file modified), 1098 too little free disk, 1213 wall time over the job's ``maxWalltime``, 1204 CPU
time over its ``maxCpuCount``.
"""

from __future__ import annotations

from collections.abc import Mapping

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.monitor.base import Verdict, VerdictKind, Watched


def memory_limit_kb(settings: MonitorSettings, job: Job) -> int | None:
    """The memory limit of one payload of ``job`` in kB, or None for no limit.

    ``monitor.memory_limit_mb`` when set, else the job's ``minRamCount`` (MB).
    """
    limit_mb = settings.memory_limit_mb or job.min_ram_mb or 0
    return limit_mb * 1024 if limit_mb > 0 else None


def memory_over_since(
    used_kb: float, limit_kb: int | None, over_since: float | None, now: float
) -> float | None:
    """Since when an item has been above its limit: ``over_since`` kept, ``now`` on a new excess.

    None when it is not (or there is no limit): the grace period starts again on the next excess.
    """
    if limit_kb is None or used_kb <= limit_kb:
        return None
    return now if over_since is None else over_since


def memory_verdict(
    item: Watched,
    used_kb: float,
    over_since: float | None,
    now: float,
    settings: MonitorSettings,
    *,
    what: str = "PSS",
) -> Verdict | None:
    """Kill (1235) an item that has been above its memory limit for longer than the grace period.

    Parameters
    ----------
    item
        The payload item.
    used_kb
        The memory its process tree uses now (PSS when measured, else RSS), kB.
    over_since
        Since when it has been above the limit (`memory_over_since`), None if it is not.
    now
        ``time.monotonic()``.
    settings
        ``monitor`` settings (``memory_limit_mb``, ``memory_grace_s``).
    what
        The measure's name, for the diagnosis.
    """
    limit = memory_limit_kb(settings, item.job)
    if limit is None or over_since is None or used_kb <= limit:
        return None
    if now - over_since < settings.memory_grace_s:
        return None
    diag = (
        f"payload exceeded its memory limit: {what} {used_kb / 1024:.0f} MB > {limit / 1024:.0f} MB "
        f"for {now - over_since:.0f} s"
    )
    return Verdict(VerdictKind.KILL, ErrorCode.PAYLOAD_EXCEEDED_MAX_MEMORY, diag, item.slot)


def looping_verdict(
    item: Watched, last_progress: float, now: float, settings: MonitorSettings
) -> Verdict | None:
    """Kill (1150) an item that modified none of its files for ``monitor.looping_s``.

    Parameters
    ----------
    item
        The payload item.
    last_progress
        ``time.monotonic()`` of the latest modification seen of one of its files (its start at least).
    now
        ``time.monotonic()``.
    settings
        ``monitor`` settings (``looping_s``; 0 turns the check off).
    """
    limit = settings.looping_s
    idle = now - max(last_progress, item.started)
    if not limit or idle < limit:
        return None
    diag = f"looping payload: no file modified for {idle:.0f} s (limit {limit:g} s)"
    return Verdict(VerdictKind.KILL, ErrorCode.LOOPING_JOB, diag, item.slot)


def disk_verdict(free_mb: Mapping[str, float], settings: MonitorSettings) -> Verdict | None:
    """Stop taking work on the node (1098) when a watched filesystem has too little free space.

    Parameters
    ----------
    free_mb
        Free MB by what the filesystem is (``workdir``, ``scratch``).
    settings
        ``monitor`` settings (``min_free_disk_mb``; 0 turns the check off).
    """
    limit = settings.min_free_disk_mb
    if not limit:
        return None
    low = [f"{name} {free:.0f} MB" for name, free in sorted(free_mb.items()) if free < limit]
    if not low:
        return None
    diag = f"no local space: {', '.join(low)} free (limit {limit} MB): taking no more work"
    return Verdict(VerdictKind.STOP_NODE, ErrorCode.NO_LOCAL_SPACE, diag)


def limit_verdict(item: Watched, cpu_s: float, now: float, settings: MonitorSettings) -> Verdict | None:
    """Kill an item over the job's wall-time (1213) or CPU-time (1204) limit (``monitor.job_limits``).

    Parameters
    ----------
    item
        The payload item.
    cpu_s
        CPU seconds (user + system) its process tree used.
    now
        ``time.monotonic()``.
    settings
        ``monitor`` settings.
    """
    if not settings.job_limits:
        return None
    job = item.job
    wall = now - item.started
    if job.max_walltime_s and wall > job.max_walltime_s:
        diag = f"payload reached the job's wall-time limit: {wall:.0f} s > {job.max_walltime_s} s"
        return Verdict(VerdictKind.KILL, ErrorCode.REACHED_MAX_TIME, diag, item.slot)
    if job.max_cpu_s and cpu_s > job.max_cpu_s:
        diag = f"payload exceeded the job's CPU-time limit: {cpu_s:.0f} s > {job.max_cpu_s} s"
        return Verdict(VerdictKind.KILL, ErrorCode.SIGXCPU, diag, item.slot)
    return None
