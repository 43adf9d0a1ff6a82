"""Running the pilot's roles over MPI (or in one process) and aborting the world on any failure.

``mpi4py`` is imported here and in `hpcpilot.parallel.transport` only. Without it, or without a
launcher, the world has one rank: the coordinator and one worker share the process.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import ExitCode
from hpcpilot.model.layout import WorkLayout
from hpcpilot.parallel.messages import NodeInfo
from hpcpilot.parallel.transport import Backoff
from hpcpilot.parallel.worker import Worker
from hpcpilot.runtime.process import kill_all
from hpcpilot.runtime.signals import SignalFlag

if TYPE_CHECKING:  # the coordinator and what it imports stay out of the workers' import path
    from hpcpilot.parallel.coordinator import Coordinator

log = logging.getLogger(__name__)

#: Seconds between printing the reason of an abort and aborting, so the launcher forwards the line.
ABORT_GRACE_S = 0.5


@dataclass(frozen=True)
class World:
    """The MPI world as this rank sees it.

    Attributes
    ----------
    rank, size
        This rank and the number of ranks.
    host
        This node's name (``SLURMD_NODENAME`` where several pseudo-nodes share a host).
    comm
        ``MPI.COMM_WORLD``, or None without mpi4py.
    """

    rank: int
    size: int
    host: str
    comm: Any = None

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        return value if self.comm is None or self.size == 1 else self.comm.bcast(value, root=0)

    def abort(self, code: int) -> None:
        """End every rank of the job now."""
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)
        os._exit(code)


def detect_world() -> World:
    """Initialise MPI if mpi4py is installed and return the world; a world of one rank without it."""
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    if os.environ.get("HPCPILOT_NO_MPI"):
        return World(0, 1, host)
    try:
        from mpi4py import MPI
    except ImportError:
        return World(0, 1, host)
    except RuntimeError as exc:  # mpi4py is there, its MPI library is not (a container without it)
        if launched_ranks(os.environ) > 1:
            raise RuntimeError(f"started as one of several MPI ranks, but MPI cannot load: {exc}") from exc
        print(f"hpcpilot: MPI cannot load ({exc}): running as a single rank", file=sys.stderr)
        return World(0, 1, host)
    comm = MPI.COMM_WORLD
    return World(comm.Get_rank(), comm.Get_size(), host, comm)


#: Variables in which launchers give the number of ranks they started.
_RANK_COUNTS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_ranks(env: Mapping[str, str]) -> int:
    """How many ranks a launcher says it started (1 when no launcher variable says so)."""
    counts = [int(env[name]) for name in _RANK_COUNTS if env.get(name, "").isdigit()]
    if env.get("SLURM_STEP_ID") and env.get("SLURM_STEP_NUM_TASKS", "").isdigit():
        counts.append(int(env["SLURM_STEP_NUM_TASKS"]))
    return max(counts, default=1)


#: Values of Open MPI's ``mpi_ft_enable`` that mean true (``mpiexec --with-ft ulfm`` sets it to 1).
_TRUE = frozenset({"1", "true", "yes", "on", "enabled", "t", "y"})


def ulfm_api() -> bool:
    """Whether the MPI under mpi4py has the ULFM calls and error classes (Open MPI 5 has)."""
    from mpi4py import MPI

    classes = {MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED}
    calls = all(hasattr(MPI.Comm, name) for name in ("Ack_failed", "Get_failed"))
    # where the library lacks them, mpi4py maps the classes to MPI_ERR_UNKNOWN (the MPICH wheel)
    return calls and len(classes) == 3 and MPI.ERR_UNKNOWN not in classes


def fault_tolerant(world: World, setting: str, env: Mapping[str, str]) -> bool:
    """Whether rank 0 survives the death of worker ranks (``parallel.fault_tolerance``).

    ``auto``: when the MPI has ULFM and the launcher enabled it (Open MPI's ``mpiexec --with-ft
    ulfm`` sets ``OMPI_MCA_mpi_ft_enable=1``); ``on``: whenever the MPI has the ULFM calls; ``off``:
    never (a dead rank ends the MPI job, as MPI does by default).
    """
    if setting == "off" or world.comm is None or world.size == 1:
        return False
    if not ulfm_api():
        if setting == "on":
            log.warning("parallel.fault_tolerance=on, but this MPI has no ULFM: a dead rank ends the job")
        return False
    if setting == "on" or env.get("OMPI_MCA_mpi_ft_enable", "").strip().lower() in _TRUE:
        log.info("fault tolerance on: the work of a worker rank that dies goes to the others (ULFM)")
        return True
    log.debug("fault tolerance off: MPI was not started with it (Open MPI: mpiexec --with-ft ulfm)")
    return False


def node_cores(settings: Settings) -> int:
    """Cores this rank may give payloads: the setting, or the CPUs this process may run on."""
    return settings.node.cores or len(os.sched_getaffinity(0))


def guarded(world: World, body: Callable[[], int]) -> int:
    """Run ``body``; an unexpected exception is logged with rank and host and aborts the whole job."""
    try:
        return body()
    except Exception as exc:
        message = f"hpcpilot: unexpected {type(exc).__name__} on rank {world.rank} ({world.host}): {exc}"
        log.critical("%s\n%s", message, traceback.format_exc())
        print(message, file=sys.stderr, flush=True)
        killed = kill_all()
        if killed:
            log.critical("killed %d payload process group(s) before aborting", killed)
        time.sleep(ABORT_GRACE_S)  # let the launcher forward that line before MPI_Abort
        world.abort(ExitCode.ERROR)
        return ExitCode.ERROR


def _backoff(settings: Settings) -> Backoff:
    p = settings.parallel
    return Backoff(p.spin_s, p.max_sleep_s, p.idle_hot_s, p.yield_s)


def run_coordinator(coordinator: Coordinator, settings: Settings, signals: SignalFlag) -> None:
    """Rank 0's loop, for a world of more than one rank."""
    backoff = _backoff(settings)
    while not coordinator.done:
        signum = signals.take()
        if signum is not None:
            coordinator.request_drain(signum)
        if coordinator.step():
            backoff.progress()
        else:
            backoff.idle(expecting=coordinator.expecting)


def run_worker(worker: Worker, settings: Settings, signals: SignalFlag) -> None:
    """A worker rank's loop."""
    backoff = _backoff(settings)
    while not worker.done:
        signum = signals.take()
        if signum is not None:
            worker.request_drain(signum)
        if worker.step():
            backoff.progress()
        else:
            backoff.idle(worker.wake_in_s(), expecting=worker.request_outstanding)


def run_single(coordinator: Coordinator, worker: Worker, settings: Settings, signals: SignalFlag) -> None:
    """World size 1: the coordinator and one worker take turns in this process."""
    backoff = _backoff(settings)
    while not coordinator.done:
        signum = signals.take()
        if signum is not None:
            coordinator.request_drain(signum)
        progress = coordinator.step()
        if not worker.done:
            progress |= worker.step()
        if progress:
            backoff.progress()
        else:
            backoff.idle(worker.wake_in_s())


def make_worker(
    world: World,
    transport: Any,
    settings: Settings,
    layout: WorkLayout,
    drain_logs: Callable[[], tuple[str, ...]],
    allocation_gpus: int = 0,
) -> Worker:
    """A worker for this rank's node; ``allocation_gpus`` is used when ``node.gpus`` is -1."""
    node = NodeInfo(world.rank, world.host, node_cores(settings))
    gpus = settings.node.gpus if settings.node.gpus >= 0 else allocation_gpus
    return Worker(transport, settings, layout, node, os.environ, drain_logs, gpus)
