"""An example monitor plugin of a user's own: open file descriptors of the payloads.

It adds one metric, ``open_fds``, per job (summed over the payloads' process trees on the node), and
lets the worker send it to rank 0 in `WorkerUpdate.samples` like the built-in ones. Chosen with
``--set monitor.plugins=psutil,tests.plugins.extra_metric:OpenFilesMonitor`` (an import path), or
registered by a package under the ``hpcpilot.monitors`` entry-point group.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psutil

from hpcpilot.model.metrics import MetricSample
from hpcpilot.monitor.base import Monitor, Observation, Watched

#: The metric's name.
OPEN_FDS = "open_fds"


def open_fds(pid: int) -> int | None:
    """Descriptors a live process holds open; None if it ended or may not be read.

    A payload that has just exited is still in ``running`` until the worker reaps it, as a zombie
    that holds no descriptors: it is left out rather than counted as 0. Its state is asked after the
    count, so a process found alive then was alive while counted.
    """
    try:
        process = psutil.Process(pid)
        count = process.num_fds()
        alive = process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return None
    return count if alive else None


class OpenFilesMonitor(Monitor):
    """Counts the open file descriptors of every running payload's group leaders, per job."""

    def observe(self, now: float, running: Sequence[Watched]) -> Observation:
        """One ``open_fds`` sample per job with live payloads on the node (none for a job without)."""
        per_job: dict[int, int] = {}
        for item in running:
            counts = [n for n in map(open_fds, item.pids) if n is not None]
            if counts:
                panda_id = item.job.panda_id
                per_job[panda_id] = per_job.get(panda_id, 0) + sum(counts)
        t = time.time()
        samples = tuple(
            MetricSample(t, panda_id, ((OPEN_FDS, float(n)),)) for panda_id, n in sorted(per_job.items())
        )
        return Observation(samples)
