"""Rank 0's folding of the workers' samples into each job's PanDA figures. Pure, no I/O.

A job's samples come from every node (rank) it runs on. The figures follow PanDA's names (the
``worker_attributes`` / ``update_job`` fields of PROTOCOLS.md):

* ``maxRSS``, ``maxVMEM``, ``maxSWAP``, ``maxPSS`` (kB): the largest sample of any one node. A node's
  sample is the sum over the job's payloads on that node, so this is the most memory the job needed on
  one node at once.
* ``avgRSS``, ``avgVMEM``, ``avgSWAP``, ``avgPSS`` (kB): each node's mean over its samples, then the mean
  over the nodes: the memory a node typically needed.
* ``totRCHAR``, ``totWCHAR``, ``totRBYTES``, ``totWBYTES`` (bytes): the sum over nodes of each node's
  last (largest) cumulative counter.
* ``rateRCHAR``, ... (bytes/s): the total divided by the job's wall-clock seconds.

Metrics of no standard name (a user's monitor plugin) go into PanDA's ``jobMetrics`` string as
``name=value`` (the largest value of any sample), names cleaned to letters, digits, ``_ . -``.
``cpuConsumptionTime`` and ``nEvents`` come from the payloads' results, not from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hpcpilot.model import metrics as m
from hpcpilot.model.bounds import JOB_METRICS_MAX, fit_words
from hpcpilot.model.metrics import MetricSample

#: Memory metrics (kB) -> the PanDA suffix of their ``max*`` / ``avg*`` figures.
MEMORY = {m.RSS_KB: "RSS", m.VMEM_KB: "VMEM", m.SWAP_KB: "SWAP", m.PSS_KB: "PSS"}

#: Cumulative I/O counters -> the PanDA suffix of their ``tot*`` / ``rate*`` figures.
COUNTERS = {m.RCHAR: "RCHAR", m.WCHAR: "WCHAR", m.RBYTES: "RBYTES", m.WBYTES: "WBYTES"}

#: Every standard metric name: anything else a sample carries is a user metric.
STANDARD = frozenset(
    {
        *MEMORY,
        *COUNTERS,
        m.THREADS,
        m.PROCESSES,
        m.CPU_S,
        m.LOAD1,
        m.MEM_AVAILABLE_KB,
        m.MEM_TOTAL_KB,
        m.SWAP_USED_KB,
        m.DISK_FREE_MB,
        m.SCRATCH_FREE_MB,
        m.BUSY_SLOTS,
    }
)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True, slots=True)
class JobFigures:
    """A job's resource figures, ready for its report.

    Attributes
    ----------
    metrics
        PanDA's figures (``maxRSS``, ``totRBYTES``, ``rateRBYTES``, ...) that have samples.
    job_metrics
        User metrics as ``name=value`` words for PanDA's ``jobMetrics`` (empty when there are none).
    cpu_s
        CPU seconds of the job's payloads as sampled (sum over nodes of the last cumulative value).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    job_metrics: str = ""
    cpu_s: float = 0.0


@dataclass(slots=True)
class _Series:
    """Running max, sum and count of one metric on one node."""

    top: float = -math.inf
    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.top = max(self.top, value)
        self.total += value
        self.count += 1


@dataclass(slots=True)
class _NodeOfJob:
    """What one node's samples of one job add up to."""

    memory: dict[str, _Series] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _JobAcc:
    nodes: dict[int, _NodeOfJob] = field(default_factory=dict)
    user: dict[str, float] = field(default_factory=dict)


class MetricsAggregator:
    """Folds the samples of every job, node by node; `figures` gives a job's figures at any time."""

    def __init__(self) -> None:
        self._jobs: dict[int, _JobAcc] = {}

    def add(self, rank: int, samples: Iterable[MetricSample]) -> None:
        """Fold one worker's samples (node samples, ``panda_id`` 0, are not job figures: skipped)."""
        for sample in samples:
            if sample.panda_id == 0:
                continue
            acc = self._jobs.setdefault(sample.panda_id, _JobAcc())
            node = acc.nodes.setdefault(rank, _NodeOfJob())
            for name, value in sample.values:
                if not math.isfinite(value):
                    continue
                if name in MEMORY:
                    node.memory.setdefault(name, _Series()).add(value)
                elif name in COUNTERS or name == m.CPU_S:
                    node.counters[name] = max(node.counters.get(name, 0.0), value)
                elif name not in STANDARD:
                    acc.user[name] = max(acc.user.get(name, -math.inf), value)

    def forget(self, panda_id: int) -> None:
        """Drop a job's figures (after its final report)."""
        self._jobs.pop(panda_id, None)

    def figures(self, panda_id: int, wall_s: float) -> JobFigures:
        """The job's figures so far; ``wall_s`` is its wall-clock time for the rates."""
        acc = self._jobs.get(panda_id)
        if acc is None:
            return JobFigures()
        out: dict[str, float] = {}
        nodes = list(acc.nodes.values())
        for name, suffix in MEMORY.items():
            series = [n.memory[name] for n in nodes if name in n.memory]
            if series:
                out["max" + suffix] = round(max(s.top for s in series))
                out["avg" + suffix] = round(sum(s.total / s.count for s in series) / len(series))
        for name, suffix in COUNTERS.items():
            lasts = [n.counters[name] for n in nodes if name in n.counters]
            if lasts:
                total = sum(lasts)
                out["tot" + suffix] = round(total)
                if wall_s > 0:
                    out["rate" + suffix] = round(total / wall_s)
        cpu = sum(n.counters.get(m.CPU_S, 0.0) for n in nodes)
        return JobFigures(out, job_metrics_string(acc.user), cpu)


def job_metrics_string(values: dict[str, float], limit: int = JOB_METRICS_MAX) -> str:
    """``name=value`` words, names cleaned, in name order, cut at whole words to ``limit`` bytes."""
    return fit_words(
        (f"{_UNSAFE.sub('_', name)}={format_value(values[name])}" for name in sorted(values)), limit
    )


def format_value(value: float) -> str:
    """An integer without decimals, anything else with up to 6 significant digits."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"
