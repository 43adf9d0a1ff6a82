"""The monitor family: what every worker watches on its node while payloads run.

The worker calls each `Monitor` every ``monitor.period_s`` with the payloads running on its node
(`Watched`). A monitor answers with an `Observation`: samples (`hpcpilot.model.metrics.MetricSample`:
they travel to rank 0, which folds them into the jobs' reports and appends them to ``monitor.h5``) and
verdicts (`Verdict`: kill this payload with this PanDA code; stop taking work on this node). Plugins
register under the ``hpcpilot.monitors`` entry-point group; the worker loads those named in
``monitor.plugins``. A monitor never imports another family: it sees process ids, files and the job.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcpilot.config.schema import MonitorSettings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.metrics import MetricSample


@dataclass(frozen=True, slots=True)
class NodeContext:
    """The node a monitor runs on.

    Attributes
    ----------
    rank
        The worker's MPI rank.
    host
        Its node name.
    cores
        Cores the worker uses for payloads.
    workdir
        The work directory (on the shared filesystem).
    scratch
        The node-local scratch directory, if ``data.scratch`` is set.
    """

    rank: int
    host: str
    cores: int
    workdir: Path
    scratch: Path | None = None


@dataclass(frozen=True, slots=True)
class Watched:
    """A payload item running on the node.

    Attributes
    ----------
    slot
        The slot's name (``r0003-s001``): what a `Verdict` names.
    job
        The job it belongs to (its ``minRamCount``, ``maxWalltime``, ``maxCpuCount``).
    pids
        Leaders of its process groups (each started in a session of its own: pgid == pid).
    started
        ``time.monotonic()`` when the item started.
    job_dir
        The job's directory.
    files
        The item's own files (its stdout/stderr logs, its output), whose modification shows progress.
    """

    slot: str
    job: Job
    pids: tuple[int, ...]
    started: float
    job_dir: Path
    files: tuple[Path, ...] = ()


class VerdictKind(enum.Enum):
    """What a monitor asks of the worker."""

    KILL = "kill"  # kill the slot's running item: it fails with the verdict's code
    STOP_NODE = "stop_node"  # take no more work on this node (its queue goes back to rank 0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A monitor's decision.

    Attributes
    ----------
    kind
        What to do.
    code
        The PanDA error code (1235 memory, 1150 looping, 1213 wall time, 1204 CPU time, 1098 disk).
    diag
        Why, for the log and the report (``pilotErrorDiag``).
    slot
        The slot whose item is to be killed (`VerdictKind.KILL`).
    """

    kind: VerdictKind
    code: ErrorCode
    diag: str
    slot: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one call of a monitor found.

    Attributes
    ----------
    samples
        Metric samples of jobs and of the node.
    verdicts
        Decisions for the worker to carry out.
    """

    samples: tuple[MetricSample, ...] = ()
    verdicts: tuple[Verdict, ...] = ()


class Monitor(ABC):
    """Base class of monitor plugins; one instance per worker, called from its event loop.

    Parameters
    ----------
    settings
        The ``monitor`` settings.
    node
        The node it watches.
    """

    def __init__(self, settings: MonitorSettings, node: NodeContext) -> None:
        self.settings = settings
        self.node = node

    @abstractmethod
    def observe(self, now: float, running: Sequence[Watched]) -> Observation:
        """Sample and check; ``now`` is ``time.monotonic()``. Must return in milliseconds."""

    def forget(self, slot: str) -> None:  # noqa: B027 - optional hook
        """The item of ``slot`` ended: drop what was kept about it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """The worker is done."""
