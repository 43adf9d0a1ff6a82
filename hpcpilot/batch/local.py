"""No batch system: the machine this process runs on is the allocation (a laptop, a login node, CI).

``local`` is the fallback of ``batch.system = auto``. It does not submit: there is no queue to put a
pilot in, so ``hpcpilot submit`` with it fails with a clear message (run the pilot directly instead).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hpcpilot.batch.base import BatchSystem
from hpcpilot.model.allocation import Allocation, BatchJobState
from hpcpilot.model.errors import BatchSystemError

__all__ = ["LocalBatchSystem"]


def _cannot(what: str) -> BatchSystemError:
    return BatchSystemError(
        f"the local batch system cannot {what}: there is no queue; run the pilot directly "
        "(hpcpilot run) or choose batch.system slurm, pbs, lsf or saga",
        context={"batch_system": "local"},
    )


class LocalBatchSystem(BatchSystem):
    """No batch system: the local machine alone.

    Discovery: one node (the short host name), the cores this process may run on
    (``os.sched_getaffinity``), no GPUs, no end time (``--walltime`` sets one). ``submit`` and
    ``cancel`` raise `BatchSystemError`: there is nothing to submit to.
    """

    name: ClassVar[str] = "local"
    template: ClassVar[str] = ""
    default_launcher: ClassVar[str] = "mpiexec"

    @classmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Always true: the fallback."""
        return True

    def discover(self) -> Allocation:
        """The local host, its usable cores, no GPUs, no end."""
        host = socket.gethostname().split(".", 1)[0] or "localhost"
        try:
            cores: int | None = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count()
        return Allocation(batch_system=self.name, job_id=None, nodes=(host,), cores_per_node=cores)

    def submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """Raises `BatchSystemError`: nothing to submit to."""
        raise _cannot("submit")

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """Nothing for no ids; otherwise raises `BatchSystemError`: there are no batch jobs."""
        if job_ids:
            raise _cannot("report job states")
        return {}

    def cancel(self, job_id: str) -> None:
        """Raises `BatchSystemError`: there are no batch jobs."""
        raise _cannot("cancel")

    def describe_submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """Nothing submits (`submit` raises); named for ``--dry-run``."""
        return "nothing: the local batch system has no queue"
