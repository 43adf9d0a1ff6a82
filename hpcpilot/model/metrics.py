"""Resource metrics as they travel from the workers to rank 0: one sample of one job or node.

The names of the standard metrics are constants here. A job's values are sums over its payload
processes on one node; the I/O counters and ``cpu_s`` are cumulative for the job on that node since its
first payload there (processes that ended included), so rank 0 may add the last value of each node.
A monitor plugin may add metrics of its own under any other name.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcpilot.model.wire import compact_pickle

#: Job metrics (per node, summed over the job's payload process trees).
RSS_KB = "rss_kb"
PSS_KB = "pss_kb"
VMEM_KB = "vmem_kb"
SWAP_KB = "swap_kb"
RCHAR = "rchar"  # bytes read, cumulative
WCHAR = "wchar"  # bytes written, cumulative
RBYTES = "rbytes"  # bytes read from storage, cumulative
WBYTES = "wbytes"  # bytes written to storage, cumulative
THREADS = "threads"
PROCESSES = "procs"
CPU_S = "cpu_s"  # CPU seconds, cumulative

#: Node metrics.
LOAD1 = "load1"
MEM_AVAILABLE_KB = "mem_avail_kb"
MEM_TOTAL_KB = "mem_total_kb"
SWAP_USED_KB = "swap_used_kb"
DISK_FREE_MB = "disk_free_mb"  # the work directory's filesystem
SCRATCH_FREE_MB = "scratch_free_mb"  # the node-local scratch, when one is set
BUSY_SLOTS = "busy_slots"


@compact_pickle
@dataclass(frozen=True, slots=True)
class MetricSample:
    """One sample of one job on one node, or of the node itself.

    Attributes
    ----------
    t
        Unix time of the sample.
    panda_id
        The job, or 0 for a sample of the node.
    values
        ``(name, value)`` pairs.
    """

    t: float
    panda_id: int
    values: tuple[tuple[str, float], ...]

    def get(self, name: str, default: float = 0.0) -> float:
        """The value of one metric, ``default`` if the sample does not have it."""
        for key, value in self.values:
            if key == name:
                return value
        return default
