"""Text of ``hpcpilot status`` and ``hpcpilot report``: formatting of a `RunView` and ``monitor.h5``.

Pure: views and tables in, text out. Utilisation comes from the node tables' ``busy_slots`` and
``slots`` columns (rank 0 writes them for every worker, with or without monitor plugins).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcpilot.model import metrics as m
from hpcpilot.model.metrics import MetricSample
from hpcpilot.monitor.aggregate import MetricsAggregator
from hpcpilot.monitor.runview import Liveness, RunView
from hpcpilot.monitor.timeseries import MonitorData, Table
from hpcpilot.runtime.terminal import format_duration

#: Node metrics shown by ``hpcpilot status`` (column, heading, scale, unit).
NODE_COLUMNS = (
    (m.LOAD1, "load", 1.0, ""),
    (m.MEM_AVAILABLE_KB, "mem free", 1 / 1024**2, " GiB"),
    (m.DISK_FREE_MB, "disk free", 1 / 1024, " GiB"),
    (m.BUSY_SLOTS, "busy", 1.0, ""),
)


def last_values(table: Table) -> dict[str, float]:
    """The latest non-NaN value of every column of a table."""
    out: dict[str, float] = {}
    for name, column in table.columns.items():
        finite = np.flatnonzero(~np.isnan(column))
        if finite.size:
            out[name] = float(column[finite[-1]])
    return out


def busy_slot_seconds(table: Table) -> float:
    """Slot-seconds busy on a node: ``busy_slots`` held from each row to the next."""
    t, busy = table.columns.get("t"), table.columns.get(m.BUSY_SLOTS)
    if t is None or busy is None:
        return 0.0
    keep = ~np.isnan(busy) & ~np.isnan(t)
    t, busy = t[keep], busy[keep]
    if t.size < 2:
        return 0.0
    order = np.argsort(t, kind="stable")
    t, busy = t[order], busy[order]
    return float(np.sum(busy[:-1] * np.diff(t)))


def job_figures(data: MonitorData | None) -> dict[int, dict[str, float]]:
    """PanDA's figures of every job of ``monitor.h5`` (with ``cpu_s``), folded as rank 0 does."""
    if data is None:
        return {}
    out: dict[int, dict[str, float]] = {}
    for panda_id, table in data.jobs.items():
        aggregator = MetricsAggregator()
        cols = table.columns
        names = [n for n in cols if n not in ("t", "rank")]
        ts = cols.get("t", np.array([]))
        for i in range(len(table)):
            values = tuple((n, float(cols[n][i])) for n in names if not math.isnan(cols[n][i]))
            rank = int(cols["rank"][i]) if "rank" in cols and not math.isnan(cols["rank"][i]) else 0
            aggregator.add(rank, [MetricSample(float(ts[i]), panda_id, values)])
        wall = float(np.nanmax(ts) - np.nanmin(ts)) if len(ts) else 0.0
        figures = aggregator.figures(panda_id, wall)
        out[panda_id] = {**figures.metrics, "cpu_s": figures.cpu_s}
    return out


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
    view: RunView, live: Liveness, data: MonitorData | None, workdir: str, now: float | None = None
) -> str:
    """The text of ``hpcpilot status``."""
    now = time.time() if now is None else now
    total, done, fatal = view.ranges_total, view.ranges_finished, view.ranges_fatal
    pct = 100.0 * (done + fatal) / total if total else 0.0
    eta = view.eta_s()
    lines = [
        f"run in {workdir}: {live.state} ({live.why})",
        f"ranges   : {done + fatal}/{total} done ({pct:.0f}%): {done} finished, {fatal} fatal, "
        f"{view.failed_attempts} failed attempt(s)",
        f"rate     : {view.rate():.2f} ranges/s, ETA {format_duration(eta) if eta is not None else '-'}",
        f"journal  : {view.records} records, last {format_duration(max(now - view.last_t, 0))} ago"
        if view.records
        else "journal  : none yet",
    ]
    if view.run:
        run = view.run
        lines.append(
            f"started  : on {run.get('host', '?')} pid {run.get('pid', '?')}, {run.get('ranks', '?')} "
            f"rank(s){', resumed' if run.get('resume') else ''}"
        )
    if view.jobs:
        lines.append("jobs     :")
        for job in sorted(view.jobs.values(), key=lambda j: j.panda_id):
            code = f" (error {job.code})" if job.code else ""
            lines.append(
                f"  {job.panda_id}: {job.state}{code}, ranges {job.finished} finished, {job.fatal} fatal "
                f"of {job.total}"
            )
    lines.append(f"workers  : {len(view.workers)} seen")
    latest = {r: last_values(t) for r, t in data.nodes.items()} if data is not None else {}
    rows = []
    for rank in sorted(set(view.workers) | set(latest)):
        w = view.workers.get(rank)
        values = latest.get(rank, {})
        row = [f"rank {rank}", w.host if w else "", str(w.finished if w else 0)]
        for name, _, scale, unit in NODE_COLUMNS:
            value = values.get(name)
            row.append("-" if value is None else f"{value * scale:.1f}{unit}".replace(".0 ", " "))
        age = now - values["t"] if "t" in values else None
        row.append(format_duration(age) if age is not None else "-")
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


def report_tables(
    view: RunView, data: MonitorData | None, summary: Mapping[str, Any] | None, workdir: str
) -> str:
    """The text of ``hpcpilot report``: per job, per node, failures by code."""
    lines = [f"hpcpilot report of {workdir}", ""]
    if summary:
        lines.append(
            f"wall time {summary.get('wall_s', 0):.1f} s, {summary.get('workers', 0)} worker rank(s), "
            f"{summary.get('cores', 0)} cores, utilisation {100 * summary.get('utilisation', 0):.1f} %"
        )
    span = view.last_t - view.first_t if view.records else 0.0
    lines.append(
        f"ranges: {view.ranges_finished} finished, {view.ranges_fatal} fatal, {view.ranges_total} known, "
        f"{view.failed_attempts} failed attempt(s); journal spans {span:.1f} s"
        + (" (ended)" if view.ended else " (no end record)")
    )
    figures = job_figures(data)
    cpu_books = {
        int(j["PandaID"]): float(j["cpu_s"])
        for j in (summary or {}).get("jobs", ())
        if isinstance(j, dict) and "cpu_s" in j
    }
    job_rows = []
    for job in sorted(view.jobs.values(), key=lambda j: j.panda_id):
        fig = dict(figures.get(job.panda_id, {}))
        if job.panda_id in cpu_books:  # the payloads' own figure, as reported to the workload manager
            fig["cpu_s"] = cpu_books[job.panda_id]
        job_rows.append(
            [
                str(job.panda_id),
                job.state,
                str(job.code),
                str(job.finished),
                str(job.fatal),
                str(job.total),
                str(job.n_events),
                _num(fig.get("cpu_s"), fmt="{:.1f}"),
                _num(fig.get("maxRSS"), 1 / 1024),
                _num(fig.get("maxPSS"), 1 / 1024),
            ]
        )
    lines += ["", "jobs"]
    headers = ["PandaID", "state", "code", "finished", "fatal", "total", "events", "CPU s"]
    lines += _table([*headers, "maxRSS MiB", "maxPSS MiB"], job_rows)
    nodes = data.nodes if data is not None else {}
    node_rows = []
    for rank in sorted(set(view.workers) | set(nodes)):
        w = view.workers.get(rank)
        table = nodes.get(rank)
        host = (w.host if w and w.host else "") or (str(table.attrs.get("host", "")) if table else "")
        busy = busy_slot_seconds(table) if table is not None else None
        node_rows.append(
            [
                f"rank {rank}",
                host,
                str(w.finished if w else 0),
                str(w.failures if w else 0),
                _num(busy, fmt="{:.1f}"),
            ]
        )
    lines += ["", "nodes"]
    lines += _table(["rank", "host", "finished", "failures", "busy slot-s"], node_rows)
    failure_rows = [[str(f.code), str(f.count), _tail(f.example)] for f in view.failure_table()]
    lines += ["", "failures by code"]
    if failure_rows:
        lines += _table(["code", "count", "example"], failure_rows, frozenset({0, 2}))
    else:
        lines.append("none")
    return "\n".join(lines) + "\n"
