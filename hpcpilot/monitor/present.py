"""Text of ``hpcpilot status`` and ``hpcpilot report``: the views of `hpcpilot.monitor.statusview`.

Pure: views in, text out. ``--json`` writes the same views as JSON (`hpcpilot.monitor.statusjson`).
Utilisation comes from the node tables' ``busy_slots`` and ``slots`` columns (rank 0 writes them for
every worker, with or without monitor plugins).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from hpcpilot.model import metrics as m
from hpcpilot.monitor.runview import Liveness, RunView
from hpcpilot.monitor.statusview import (
    JobRow,
    NodeRow,
    Report,
    Status,
    WorkerStatus,
    build_report,
    build_status,
    busy_slot_seconds,
    job_figures,
    last_values,
)
from hpcpilot.monitor.timeseries import MonitorData
from hpcpilot.runtime.terminal import format_duration

__all__ = [
    "JOB_COLUMNS",
    "NODE_COLUMNS",
    "NODE_REPORT_COLUMNS",
    "busy_slot_seconds",
    "format_status",
    "job_figures",
    "last_values",
    "render_report",
    "render_status",
    "report_tables",
]

#: Node metrics shown by ``hpcpilot status`` (column, heading, scale, unit).
NODE_COLUMNS = (
    (m.LOAD1, "load", 1.0, ""),
    (m.MEM_AVAILABLE_KB, "mem free", 1 / 1024**2, " GiB"),
    (m.DISK_FREE_MB, "disk free", 1 / 1024, " GiB"),
    (m.BUSY_SLOTS, "busy", 1.0, ""),
)


def _cells(cells: list[str], widths: list[int], left: frozenset[int]) -> str:
    return "  ".join(
        c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _table(headers: list[str], rows: list[list[str]], left: frozenset[int] = frozenset({0})) -> list[str]:
    """Aligned columns: those in ``left`` to the left, the others to the right."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return [
        _cells(headers, widths, left),
        "  ".join("-" * w for w in widths),
        *(_cells(r, widths, left) for r in rows),
    ]


# --- status -----------------------------------------------------------------------------------


def format_status(
    view: RunView,
    live: Liveness,
    data: MonitorData | None,
    workdir: str,
    now: float | None = None,
    summary: Mapping[str, Any] | None = None,
) -> str:
    """The text of ``hpcpilot status`` (`build_status`, then `render_status`)."""
    now = time.time() if now is None else now
    return render_status(build_status(view, live, data, workdir, now, summary))


def _metric(w: WorkerStatus, name: str) -> float | None:
    value = getattr(w, name)
    return value if isinstance(value, float) else None


def render_status(s: Status) -> str:
    """The text of a `Status`."""
    r = s.ranges
    eta = format_duration(s.eta_s) if s.eta_s is not None else "-"
    over = "over the run" if s.rate.over == "run" else f"over the last {s.rate.window_s:.0f} s"
    lines = [
        f"run in {s.workdir}: {s.state} ({s.why})",
        f"ranges   : {r.done}/{r.total} done ({r.percent:.0f}%): {r.finished} finished, {r.fatal} fatal, "
        f"{r.failed_attempts} failed attempt(s)",
        f"rate     : {s.rate.ranges_per_s:.2f} ranges/s ({over}), ETA {eta}",
        f"journal  : {s.journal.records} records, last "
        f"{format_duration(max(s.generated_t - s.journal.last_t, 0))} ago"
        if s.journal.last_t is not None
        else "journal  : none yet",
    ]
    if s.run:
        ranks = s.run.ranks if s.run.ranks is not None else "?"
        lines.append(
            f"started  : on {s.run.host or '?'} pid {s.run.pid if s.run.pid is not None else '?'}, "
            f"{ranks} rank(s){', resumed' if s.run.resume else ''}"
        )
    if s.jobs:
        lines.append("jobs     :")
        for job in s.jobs:
            code = f" (error {job.code})" if job.code else ""
            lines.append(
                f"  {job.panda_id}: {job.state}{code}, ranges {job.finished} finished, {job.fatal} fatal "
                f"of {job.total}"
            )
    lines.append(f"workers  : {len(s.workers)} seen")
    rows = []
    for w in s.workers:
        row = [f"rank {w.rank}", w.host, str(w.ranges_finished)]
        for name, _, scale, unit in NODE_COLUMNS:
            value = _metric(w, name)
            row.append("-" if value is None else f"{value * scale:.1f}{unit}".replace(".0 ", " "))
        row.append(format_duration(s.generated_t - w.sample_t) if w.sample_t is not None else "-")
        rows.append(row)
    if rows:
        headers = ["rank", "host", "ranges", *(h for _, h, _, _ in NODE_COLUMNS), "sample age"]
        lines.extend("  " + line for line in _table(headers, rows))
    return "\n".join(lines) + "\n"


# --- report -----------------------------------------------------------------------------------


def _num(value: float | None, scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value * scale)


def _tail(text: str, most: int = 100) -> str:
    """The end of a diagnosis (where the cause is), marked when cut."""
    text = " ".join(text.split())
    return text if len(text) <= most else "..." + text[-most + 3 :]


#: The columns of the report's jobs table: heading, cell.
JOB_COLUMNS: tuple[tuple[str, Callable[[JobRow], str]], ...] = (
    ("PandaID", lambda j: str(j.panda_id)),
    ("state", lambda j: j.state),
    ("code", lambda j: str(j.code)),
    ("finished", lambda j: str(j.finished)),
    ("fatal", lambda j: str(j.fatal)),
    ("total", lambda j: str(j.total)),
    ("events", lambda j: str(j.events)),
    ("CPU s", lambda j: _num(j.cpu_s, fmt="{:.1f}")),
    ("maxRSS MiB", lambda j: _num(j.max_rss_kb, 1 / 1024)),
    ("maxPSS MiB", lambda j: _num(j.max_pss_kb, 1 / 1024)),
)


def _gpus_found(n: NodeRow) -> str:
    """How a worker's GPUs were found: ``nvidia from nvidia-smi -L``, ``none found``, ``-`` (not said)."""
    if not n.gpu_source:
        return "-"
    return f"{n.gpu_vendor} from {n.gpu_source}" if n.gpus and n.gpu_vendor else n.gpu_source


#: The columns of the report's nodes table: heading, cell (a `NodeRow` field is shown by adding one).
NODE_REPORT_COLUMNS: tuple[tuple[str, Callable[[NodeRow], str]], ...] = (
    ("rank", lambda n: f"rank {n.rank}"),
    ("host", lambda n: n.host),
    ("finished", lambda n: str(n.finished)),
    ("failures", lambda n: str(n.failures)),
    ("busy slot-s", lambda n: _num(n.busy_slot_s, fmt="{:.1f}")),
    ("cores", lambda n: _num(n.cores)),
    ("GPUs", lambda n: _num(n.gpus)),
    ("GPUs found by", _gpus_found),  # last: free text
)


def report_tables(
    view: RunView,
    data: MonitorData | None,
    summary: Mapping[str, Any] | None,
    workdir: str,
    now: float | None = None,
) -> str:
    """The text of ``hpcpilot report`` (`build_report`, then `render_report`)."""
    now = time.time() if now is None else now
    return render_report(build_report(view, data, summary, workdir, now))


def render_report(r: Report) -> str:
    """The text of a `Report`: per job, per node, failures by code."""
    lines = [f"hpcpilot report of {r.workdir}", ""]
    if r.run:
        rate = f", {r.run.ranges_per_s:.2f} ranges/s" if r.run.ranges_per_s is not None else ""
        lines.append(
            f"wall time {r.run.wall_s:.1f} s, {r.run.workers} worker rank(s), {r.run.cores} cores, "
            f"utilisation {100 * r.run.utilisation:.1f} %{rate}"
        )
    j = r.journal
    span = j.last_t - j.first_t if j.last_t is not None and j.first_t is not None else 0.0
    lines.append(
        f"ranges: {r.ranges.finished} finished, {r.ranges.fatal} fatal, {r.ranges.total} known, "
        f"{r.ranges.failed_attempts} failed attempt(s); journal spans {span:.1f} s"
        + (" (ended)" if j.ended else " (no end record)")
    )
    lines += ["", "jobs"]
    lines += _table([h for h, _ in JOB_COLUMNS], [[cell(job) for _, cell in JOB_COLUMNS] for job in r.jobs])
    lines += ["", "nodes"]
    lines += _table(
        [h for h, _ in NODE_REPORT_COLUMNS], [[cell(n) for _, cell in NODE_REPORT_COLUMNS] for n in r.nodes]
    )
    failure_rows = [[str(f.code), str(f.count), _tail(f.example)] for f in r.failures]
    lines += ["", "failures by code"]
    if failure_rows:
        lines += _table(["code", "count", "example"], failure_rows, frozenset({0, 2}))
    else:
        lines.append("none")
    return "\n".join(lines) + "\n"
