"""The typed views of ``hpcpilot status`` and ``hpcpilot report``: what their text and JSON both show.

Pure: a `RunView` (the journal), `Liveness`, ``monitor.h5``'s tables and ``summary.json`` in, frozen
dataclasses out. `hpcpilot.monitor.present` writes them as text, `hpcpilot.monitor.statusjson` as
JSON (``--json``), so the two cannot disagree. Nothing read from the work directory is trusted: a
figure of the wrong type or not finite counts as missing.

A field added to a row here (`NodeRow`, say) appears in the JSON by itself; the text shows it once
its column is added to the row's column table in `hpcpilot.monitor.present`, and the JSON Schema
(``docs/schemas/``) must name it (the tests check the output against the schema).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcpilot.model import metrics as m
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.rates import RATE_WINDOW_S
from hpcpilot.monitor.aggregate import MetricsAggregator
from hpcpilot.monitor.runview import LIVENESS_STATES, FailureView, Liveness, RunView
from hpcpilot.monitor.timeseries import MonitorData, Table
from hpcpilot.runtime.records import RunRecord

#: The ``schema`` of ``hpcpilot status --json`` (``docs/schemas/status.schema.json``).
STATUS_SCHEMA = "hpcpilot.status/1"

#: The ``schema`` of ``hpcpilot report --json`` (``docs/schemas/report.schema.json``).
REPORT_SCHEMA = "hpcpilot.report/1"


def number(value: Any) -> float | None:
    """A finite number read from a file, else None (booleans, strings, NaN and infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    """An integer read from a file, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- shared parts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeCounts:
    """Ranges of the journal.

    Attributes
    ----------
    total
        Ranges known (received so far: the workload manager hands them out a few at a time).
    finished
        Ranges finished.
    fatal
        Ranges failed for good.
    failed_attempts
        Failed attempts (retried or not).
    """

    total: int
    finished: int
    fatal: int
    failed_attempts: int

    @property
    def done(self) -> int:
        """Ranges final: finished or fatal."""
        return self.finished + self.fatal

    @property
    def percent(self) -> float:
        """Ranges final, in per cent of those known (0 when none is known)."""
        return 100.0 * self.done / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """The journal itself.

    Attributes
    ----------
    records
        Records read.
    first_t, last_t
        Unix times of its first and last records (None without records).
    ended
        Whether an ``end`` record closes it.
    """

    records: int
    first_t: float | None
    last_t: float | None
    ended: bool


def _counts(view: RunView) -> RangeCounts:
    return RangeCounts(view.ranges_total, view.ranges_finished, view.ranges_fatal, view.failed_attempts)


def _journal(view: RunView) -> JournalInfo:
    if not view.records:
        return JournalInfo(0, None, None, view.ended)
    return JournalInfo(view.records, view.first_t, view.last_t, view.ended)


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """How fast ranges become final (the rule of `hpcpilot.model.rates`).

    Attributes
    ----------
    ranges_per_s
        Ranges final (finished or fatal) per second.
    over
        ``run``: over the whole (latest) run, from its start to its end (an ended run);
        ``window``: over the journal's last ``window_s`` seconds (a run going on).
    window_s
        The window's length (None when ``over`` is ``run``).
    source
        ``summary`` (``summary.json``'s ``ranges_per_s``, the figure the summary printed) or
        ``journal``.
    """

    ranges_per_s: float
    over: str = field(metadata={"enum": ("run", "window")})
    window_s: float | None
    source: str = field(metadata={"enum": ("summary", "journal")})


@dataclass(frozen=True, slots=True)
class RunStart:
    """The latest ``run`` record: where and how the run started.

    Attributes
    ----------
    host, pid
        Rank 0's host and process id.
    ranks
        MPI ranks (None when not recorded).
    resume
        Whether it was started with ``--resume``.
    t
        When it started.
    """

    host: str
    pid: int | None
    ranks: int | None
    resume: bool
    t: float | None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job: its state and ranges.

    Attributes
    ----------
    panda_id, state, code
        The PandaID, its latest state and error code (0: none).
    total, finished, fatal
        Ranges known, finished and failed for good.
    """

    panda_id: int
    state: str
    code: int
    total: int
    finished: int
    fatal: int


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker rank: its host, its ranges, the latest node sample of ``monitor.h5``.

    Attributes
    ----------
    rank, host
        The MPI rank and its host ("" when unknown).
    ranges_finished
        Ranges it finished.
    load1, mem_avail_kb, disk_free_mb, busy_slots
        The latest sample of each (None: none sampled; the first three need monitor plugins).
    sample_t
        Unix time of the latest sample (None: none).
    """

    rank: int
    host: str
    ranges_finished: int
    load1: float | None
    mem_avail_kb: float | None
    disk_free_mb: float | None
    busy_slots: float | None
    sample_t: float | None


@dataclass(frozen=True, slots=True)
class Status:
    """What ``hpcpilot status`` shows.

    Attributes
    ----------
    workdir
        The work directory.
    generated_t
        When the view was made (Unix time): ages are counted to it.
    state
        Whether the run is alive (`Liveness`): ``ended`` (an ``end`` record), ``running`` (its process
        is alive on this host), ``dead`` (its process is gone, no ``end``: killed), ``active`` (on
        another host; the journal or monitor file is recent), ``stale`` (on another host; nothing
        written for long), ``unknown`` (no journal).
    why
        Why it looks so, in a few words.
    ranges
        The journal's range counts.
    rate
        Ranges final per second.
    eta_s
        Seconds until the known ranges are final at that rate (None: unknown, or the run ended).
    journal
        The journal's records and times.
    run
        The latest ``run`` record (None: none).
    jobs, workers
        By PandaID, and by rank.
    """

    workdir: str
    generated_t: float
    state: str = field(metadata={"enum": LIVENESS_STATES})
    why: str
    ranges: RangeCounts
    rate: Rate
    eta_s: float | None
    journal: JournalInfo
    run: RunStart | None
    jobs: tuple[JobStatus, ...]
    workers: tuple[WorkerStatus, ...]


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


def status_rate(
    view: RunView, live: Liveness, summary: Mapping[str, Any] | None, summary_t: float | None = None
) -> Rate:
    """The run's rate: the summary's own figure when the run ended and wrote one, else the journal's.

    A summary written (``summary_t``) before the latest run started is an earlier run's: not used.
    """
    earlier = summary_t is not None and view.run is not None and summary_t < view.run_t
    if live.state == "ended" and not earlier:
        from_summary = number((summary or {}).get("ranges_per_s"))
        if from_summary is not None and from_summary >= 0:
            return Rate(from_summary, "run", None, "summary")
    if view.ended:
        return Rate(view.rate(), "run", None, "journal")
    return Rate(view.rate(), "window", RATE_WINDOW_S, "journal")


def _run_start(run: RunRecord | None) -> RunStart | None:
    if run is None:
        return None
    return RunStart(host=run.host, pid=run.pid or None, ranks=run.ranks or None, resume=run.resume, t=run.t)


def build_status(
    view: RunView,
    live: Liveness,
    data: MonitorData | None,
    workdir: str,
    now: float,
    summary: Mapping[str, Any] | None = None,
    summary_t: float | None = None,
) -> Status:
    """The view of ``hpcpilot status`` from the journal's view, liveness, ``monitor.h5`` and summary.

    ``summary_t`` is when ``summary.json`` was written (None: not known).
    """
    counts = _counts(view)
    rate = status_rate(view, live, summary, summary_t)
    left = counts.total - counts.done
    eta = left / rate.ranges_per_s if left > 0 and rate.ranges_per_s > 0 and not view.ended else None
    jobs = tuple(
        JobStatus(j.panda_id, j.state, j.code, j.total, j.finished, j.fatal)
        for j in sorted(view.jobs.values(), key=lambda j: j.panda_id)
    )
    latest = {r: last_values(t) for r, t in data.nodes.items()} if data is not None else {}
    workers = []
    for rank in sorted(set(view.workers) | set(latest)):
        w = view.workers.get(rank)
        values = latest.get(rank, {})
        workers.append(
            WorkerStatus(
                rank=rank,
                host=w.host if w else "",
                ranges_finished=w.finished if w else 0,
                load1=values.get(m.LOAD1),
                mem_avail_kb=values.get(m.MEM_AVAILABLE_KB),
                disk_free_mb=values.get(m.DISK_FREE_MB),
                busy_slots=values.get(m.BUSY_SLOTS),
                sample_t=values.get("t"),
            )
        )
    return Status(
        workdir=workdir,
        generated_t=now,
        state=live.state,
        why=live.why,
        ranges=counts,
        rate=rate,
        eta_s=eta,
        journal=_journal(view),
        run=_run_start(view.run),
        jobs=jobs,
        workers=tuple(workers),
    )


# --- report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunTotals:
    """The run's totals from ``summary.json`` (written when the run ended).

    Attributes
    ----------
    wall_s
        The run's wall-clock seconds.
    workers, cores
        Worker ranks, and their cores.
    utilisation
        Busy fraction of the workers' core time (0 to 1).
    ranges_per_s
        Ranges final per second of the wall time (None: a summary of an older hpcpilot).
    """

    wall_s: float
    workers: int
    cores: int
    utilisation: float
    ranges_per_s: float | None


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job of the report.

    Attributes
    ----------
    panda_id, state, code
        The PandaID, its latest state and error code.
    finished, fatal, total
        Ranges finished, failed for good, and known.
    events
        Events of its finished ranges.
    cpu_s
        CPU seconds: the payloads' own (``summary.json``), else the monitors' samples (None: none).
    max_rss_kb, max_pss_kb
        Its largest RSS and PSS on one node, from the monitors' samples (None: none).
    """

    panda_id: int
    state: str
    code: int
    finished: int
    fatal: int
    total: int
    events: int
    cpu_s: float | None
    max_rss_kb: float | None
    max_pss_kb: float | None


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One worker rank of the report.

    Attributes
    ----------
    rank, host
        The MPI rank and its host ("" when unknown).
    finished
        Ranges it finished.
    failures
        Failed attempts of ranges it ran.
    busy_slot_s
        Its busy slot-seconds (``busy_slots`` of ``monitor.h5`` held from one row to the next; None
        without a table).
    cores
        Cores of its share of the node (None: the journal has no ``worker`` record of it).
    gpus
        GPUs of its share of the node (None: the journal does not say, an older run).
    gpu_vendor
        Their vendor: ``nvidia``, ``amd``, ``intel``, or "" without GPUs.
    gpu_source
        Where its GPUs were found: ``nvidia-smi -L``, ``CUDA_VISIBLE_DEVICES``, ``node.gpus``, ``none
        found``, ... ("" when the journal does not say).
    peers
        Worker ranks on its node, itself included, that shared the node (None: not recorded).
    """

    rank: int
    host: str
    finished: int
    failures: int
    busy_slot_s: float | None
    cores: int | None = None
    gpus: int | None = None
    gpu_vendor: str = ""
    gpu_source: str = ""
    peers: int | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """What ``hpcpilot report`` shows.

    Attributes
    ----------
    workdir
        The work directory.
    generated_t
        When the view was made (Unix time).
    run
        The run's totals (None before ``summary.json`` is written).
    ranges
        The journal's range counts.
    journal
        The journal's records and times.
    jobs, nodes
        By PandaID, and by rank.
    failures
        Failed attempts by error code, the most frequent first, each with the latest diagnosis.
    """

    workdir: str
    generated_t: float
    run: RunTotals | None
    ranges: RangeCounts
    journal: JournalInfo
    jobs: tuple[JobRow, ...]
    nodes: tuple[NodeRow, ...]
    failures: tuple[FailureView, ...]


def run_totals(summary: Mapping[str, Any] | None) -> RunTotals | None:
    """The totals of ``summary.json`` (None without one); a figure of the wrong type counts as 0."""
    if not summary:
        return None
    return RunTotals(
        wall_s=number(summary.get("wall_s")) or 0.0,
        workers=integer(summary.get("workers")) or 0,
        cores=integer(summary.get("cores")) or 0,
        utilisation=number(summary.get("utilisation")) or 0.0,
        ranges_per_s=number(summary.get("ranges_per_s")),
    )


def _summary_cpu(summary: Mapping[str, Any] | None) -> dict[int, float]:
    """Each job's CPU seconds from ``summary.json`` (the payloads' own figure)."""
    jobs = (summary or {}).get("jobs")
    out: dict[int, float] = {}
    for job in jobs if isinstance(jobs, list) else ():
        if isinstance(job, dict):
            panda_id, cpu = integer(job.get("PandaID")), number(job.get("cpu_s"))
            if panda_id is not None and cpu is not None:
                out[panda_id] = cpu
    return out


def build_report(
    view: RunView,
    data: MonitorData | None,
    summary: Mapping[str, Any] | None,
    workdir: str,
    now: float,
) -> Report:
    """The view of ``hpcpilot report`` from the journal's view, ``monitor.h5`` and ``summary.json``."""
    figures = job_figures(data)
    cpu_books = _summary_cpu(summary)
    jobs = []
    for job in sorted(view.jobs.values(), key=lambda j: j.panda_id):
        fig = figures.get(job.panda_id, {})
        cpu = cpu_books.get(job.panda_id, fig.get("cpu_s"))  # the payloads' own figure first
        jobs.append(
            JobRow(
                job.panda_id,
                job.state,
                job.code,
                job.finished,
                job.fatal,
                job.total,
                job.n_events,
                number(cpu),
                number(fig.get("maxRSS")),
                number(fig.get("maxPSS")),
            )
        )
    tables = data.nodes if data is not None else {}
    nodes = []
    for rank in sorted(set(view.workers) | set(tables)):
        w = view.workers.get(rank)
        table = tables.get(rank)
        host = (w.host if w and w.host else "") or (str(table.attrs.get("host", "")) if table else "")
        nodes.append(
            NodeRow(
                rank=rank,
                host=host,
                finished=w.finished if w else 0,
                failures=w.failures if w else 0,
                busy_slot_s=busy_slot_seconds(table) if table is not None else None,
                cores=w.cores if w and w.cores else None,
                gpus=w.gpus if w and w.gpu_source else None,
                gpu_vendor=w.gpu_vendor if w else "",
                gpu_source=w.gpu_source if w else "",
                peers=w.peers if w and w.gpu_source else None,
            )
        )
    return Report(
        workdir=workdir,
        generated_t=now,
        run=run_totals(summary),
        ranges=_counts(view),
        journal=_journal(view),
        jobs=tuple(jobs),
        nodes=tuple(nodes),
        failures=tuple(view.failure_table()),
    )
