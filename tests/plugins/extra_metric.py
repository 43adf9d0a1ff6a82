"""An example monitor plugin of a user's own: open file descriptors of the payloads.

It adds one metric, ``open_fds``, per job (summed over the payloads' process trees on the node), and
lets the worker send it to rank 0 in `WorkerUpdate.samples` like the built-in ones. Chosen with
``--set monitor.plugins=psutil,tests.plugins.extra_metric:OpenFilesMonitor`` (an import path), or
registered by a package under the ``hpcpilot.monitors`` entry-point group.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence

from hpcpilot.model.metrics import MetricSample
from hpcpilot.monitor.base import Monitor, Observation, Watched

#: The metric's name.
OPEN_FDS = "open_fds"


def open_fds(pid: int) -> int:
    """Descriptors a process holds open (0 if it ended or may not be read)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class OpenFilesMonitor(Monitor):
    """Counts the open file descriptors of every running payload's group leaders, per job."""

    def observe(self, now: float, running: Sequence[Watched]) -> Observation:
        """One ``open_fds`` sample per job with payloads running on the node."""
        per_job: Counter[int] = Counter()
        for item in running:
            per_job[item.job.panda_id] += sum(open_fds(pid) for pid in item.pids)
        t = time.time()
        samples = tuple(
            MetricSample(t, panda_id, ((OPEN_FDS, float(n)),)) for panda_id, n in sorted(per_job.items())
        )
        return Observation(samples)
