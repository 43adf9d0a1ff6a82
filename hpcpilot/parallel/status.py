"""What rank 0 shows: the live status line and the end-of-run summary. Pure formatting."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from hpcpilot.model.rates import LIVE_WINDOW_S, ranges_per_s
from hpcpilot.runtime.terminal import format_duration


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of the run for the status line.

    Attributes
    ----------
    elapsed_s
        Seconds since the run started.
    ranges_done, ranges_total
        Ranges final (finished or fatal) and known.
    ranges_failed
        Ranges declared fatal.
    jobs_done, jobs_total
        Jobs final and known.
    busy_slots, total_slots
        Items running and slots available, all workers.
    failed_attempts
        Range attempts that failed (retried, or the last one of a fatal range).
    """

    elapsed_s: float
    ranges_done: int
    ranges_total: int
    ranges_failed: int
    jobs_done: int
    jobs_total: int
    busy_slots: int
    total_slots: int
    failed_attempts: int = 0


class RateMeter:
    """Ranges final per second over a sliding window of ``window_s`` seconds (`hpcpilot.model.rates`)."""

    def __init__(self, window_s: float = LIVE_WINDOW_S) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def add(self, t: float, done: int) -> float:
        """Record that ``done`` ranges were final at time ``t``; return the rate over the window."""
        points = self._points
        points.append((t, done))
        while len(points) > 2 and t - points[0][0] > self.window_s:
            points.popleft()
        t0, d0 = points[0]
        return ranges_per_s(done - d0, t - t0)


def format_status(p: Progress, rate: float) -> str:
    """The one-line status: ranges done/total, rate, ETA, busy slots, jobs, failed attempts, fatal."""
    pct = 100.0 * p.ranges_done / p.ranges_total if p.ranges_total else 0.0
    remaining = p.ranges_total - p.ranges_done
    eta = format_duration(remaining / rate) if rate > 0 and remaining > 0 else "-"
    parts = [
        f"[{format_duration(p.elapsed_s)}]",
        f"ranges {p.ranges_done}/{p.ranges_total} ({pct:.0f}%)",
        f"{rate:.1f}/s",
        f"ETA {eta}",
        f"busy {p.busy_slots}/{p.total_slots} slots",
        f"jobs {p.jobs_done}/{p.jobs_total}",
    ]
    if p.failed_attempts:
        parts.append(f"failed attempts {p.failed_attempts}")
    if p.ranges_failed:
        parts.append(f"fatal {p.ranges_failed}")
    return " | ".join(parts)


def human_size(n: float) -> str:
    """Bytes in B, KiB, MiB, GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_summary(summary: dict[str, Any], max_files: int = 8) -> str:
    """The end-of-run summary as text, from the ``summary.json`` dict."""
    lines = [
        "",
        "hpcpilot summary",
        "================",
        f"work directory : {summary['workdir']}",
        f"wall time      : {summary['wall_s']:.1f} s on {summary['workers']} worker rank(s), "
        f"{summary['cores']} cores",
        f"utilisation    : {100.0 * summary['utilisation']:.1f} % of worker core time busy",
        f"ranges         : {summary['ranges']['finished']} finished, "
        f"{summary['ranges']['fatal']} fatal, {summary['ranges']['failed_attempts']} failed attempts "
        f"retried, {summary['ranges']['not_done']} not done",
        f"jobs           : {len(summary['jobs'])}",
    ]
    if isinstance(summary.get("ranges_per_s"), int | float):  # a summary of an older hpcpilot has none
        rate = summary["ranges_per_s"]
        lines.insert(-1, f"rate           : {rate:.2f} ranges/s (ranges final over the wall time)")
    disk = summary.get("disk")
    if disk:
        lines.insert(
            -1,
            f"disk           : {disk['state']} (error {disk['error_code']}): {disk['diag']}; waited "
            f"{disk['waited_s']:.0f} s, {disk['ranges_requeued']} range(s) queued again",
        )
    for job in summary["jobs"]:
        state = job["state"] + (
            f" (error {job['error_code']}: {job['error_diag']})" if job["error_code"] else ""
        )
        lines.append(f"  job {job['PandaID']}: {state}")
        if job["kind"] == "event service":
            r = job["ranges"]
            lines.append(
                f"    ranges: {r['finished']} finished, {r['fatal']} fatal of {r['total']}; "
                f"events: {job['n_events']}"
            )
        files = job["outputs"]
        for f in files[:max_files]:
            lines.append(f"    {f['path']}  {human_size(f['fsize'])}  adler32 {f['adler32']}")
        if len(files) > max_files:
            lines.append(f"    ... and {len(files) - max_files} more output files")
        if job.get("range_outputs"):
            ro = job["range_outputs"]
            lines.append(f"    {ro['count']} per-range outputs, {human_size(ro['bytes'])} in all")
    return "\n".join(lines) + "\n"
