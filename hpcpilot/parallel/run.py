"""Running the pilot's roles over MPI (or in one process) and aborting the world on any failure.

``mpi4py`` is imported here and in `hpcpilot.parallel.transport` only. Without it, or without a
launcher, the world has one rank: the coordinator and one worker share the process.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hpcpilot.config.schema import GpuVendor, Settings
from hpcpilot.environment.node import (
    GpuInventory,
    NodeShare,
    RankView,
    counted_gpus,
    discover_gpus,
    share_node,
)
from hpcpilot.environment.placement import cpu_list
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

_VENDORS: dict[str, GpuVendor] = {"nvidia": "nvidia", "amd": "amd", "intel": "intel"}
"""A vendor discovery named, as the setting spells it."""


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
        """Rank 0's ``value`` on every rank (pickled; waited for without spinning, see `_quietly`)."""
        if self.comm is None or self.size == 1:
            return value
        data = bytearray(pickle.dumps(value, protocol=5)) if self.rank == 0 else bytearray()
        size = bytearray(struct.pack("<q", len(data)))
        _quietly(self.comm.Ibcast(size, root=0))
        if self.rank != 0:
            data = bytearray(struct.unpack("<q", size)[0])
        _quietly(self.comm.Ibcast(data, root=0))
        return value if self.rank == 0 else pickle.loads(data)

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (pickled; waited for without spinning)."""
        if self.comm is None or self.size == 1:
            return [value]
        data = bytearray(pickle.dumps(value, protocol=5))
        sizes = bytearray(8 * self.size)
        _quietly(self.comm.Iallgather(bytearray(struct.pack("<q", len(data))), sizes))
        counts = list(struct.unpack(f"<{self.size}q", sizes))
        displs = [sum(counts[:i]) for i in range(self.size)]
        gathered = bytearray(sum(counts))
        _quietly(self.comm.Iallgatherv(data, [gathered, counts, displs, _mpi().BYTE]))
        return [pickle.loads(gathered[d : d + n]) for d, n in zip(displs, counts, strict=True)]

    def wait_for_all(self) -> None:
        """Wait, without spinning, until every rank is here (the last step before MPI is finalized).

        MPI's ``Finalize`` waits for the other ranks spinning a core: workers that ended first would
        take the CPU from rank 0's last writes (the time series, the journal, the summary) where
        ranks share cores. A rank that died (fault tolerance) makes the barrier fail: that is logged
        and the rank goes on to finalize.
        """
        if self.comm is None or self.size == 1:
            return
        try:
            _quietly(self.comm.Ibarrier())
        except _mpi().Exception as exc:
            log.info("the last barrier failed (a rank is gone): %s", exc)

    def abort(self, code: int) -> None:
        """End every rank of the job now."""
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)
        os._exit(code)


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI


#: The longest pause between two tests of a start-up collective (each hop of its tree may wait this).
QUIET_SLEEP_S = 0.005


def _quietly(request: Any) -> None:
    """Wait for a non-blocking collective, sleeping between tests.

    MPI's blocking collectives spin a core while they wait. At start-up the ranks that are ready wait
    for rank 0 (reading the settings, the batch system) and for the ranks still importing: spinning,
    they take the CPU from exactly those where ranks share cores, and launch to first assignment
    grew with the number of ranks much faster than their imports do.
    """
    backoff = Backoff(spin_s=0.0, max_sleep_s=QUIET_SLEEP_S, hot_s=0.0, yield_s=0.0)
    while not request.Test():
        backoff.idle()


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


@dataclass(frozen=True)
class NodeResources:
    """What a worker rank gives its payloads: its share of the node and the GPUs as found.

    Attributes
    ----------
    share
        Its cores, CPUs and GPUs (`hpcpilot.environment.node.share_node`).
    inventory
        The GPUs this rank found, before the node was shared.
    vendor
        The vendor whose variable selects a slot's GPUs (``node.gpu_vendor``, ``auto`` resolved).
    """

    share: NodeShare
    inventory: GpuInventory
    vendor: str


def _gpu_inventory(settings: Settings, allocation_gpus: int, env: Mapping[str, str]) -> GpuInventory:
    """The rank's GPUs: ``node.gpus``, else the batch system's count, else what the node shows.

    With a count and ``node.gpu_vendor`` = auto, discovery still names the vendor (Slurm sets
    ``CUDA_VISIBLE_DEVICES`` for AMD GPUs too; ``ROCR_VISIBLE_DEVICES`` or ``rocm-smi`` tell).
    """
    node = settings.node
    count, source = (node.gpus, "node.gpus") if node.gpus >= 0 else (allocation_gpus, "the batch system")
    if count <= 0 and node.gpus < 0:
        return discover_gpus(env, node.gpu_vendor)
    vendor: str = node.gpu_vendor
    if vendor == "auto" and count > 0:
        vendor = discover_gpus(env).vendor or "nvidia"
    return counted_gpus(count, vendor, env, source)


def node_resources(
    world: World, settings: Settings, allocation_gpus: int = 0, env: Mapping[str, str] = os.environ
) -> NodeResources | None:
    """The rank's share of its node; None on rank 0 of a world of several ranks (it runs no worker).

    Collective where the world has several ranks: every rank calls it, at the same point. Worker ranks
    on one host (by `World.host`) share its cores and GPUs (see `share_node`); ``node.cores`` counts
    the cores of the node, not of a rank.
    """
    coordinator_only = world.rank == 0 and world.size > 1
    mine = None if coordinator_only else _view(world, settings, allocation_gpus, env)
    views = world.allgather(mine[0] if mine else None)
    if mine is None:
        return None
    return _share(world, settings, mine, [v for v in views if v is not None])


def _view(
    world: World, settings: Settings, allocation_gpus: int, env: Mapping[str, str]
) -> tuple[RankView, GpuInventory]:
    inventory = _gpu_inventory(settings, allocation_gpus, env)
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    return RankView(world.rank, world.host, cpus, inventory.ids), inventory


def _share(
    world: World, settings: Settings, mine: tuple[RankView, GpuInventory], views: list[RankView]
) -> NodeResources:
    inventory = mine[1]
    share = share_node(world.rank, views, settings.node.cores)
    chosen = settings.node.gpu_vendor
    return NodeResources(share, inventory, inventory.vendor or ("nvidia" if chosen == "auto" else chosen))


def log_resources(world: World, resources: NodeResources) -> None:
    """Say in the rank's log what it found and took; warn about an uneven division of the node."""
    share = resources.share
    log.info(
        "rank %d on %s: %s; this rank takes %d core(s) on CPUs %s and %s%s",
        world.rank,
        world.host,
        resources.inventory.describe(),
        share.cores,
        cpu_list(share.cpus),
        f"{resources.vendor} GPU(s) {','.join(share.gpus)}" if share.gpus else "no GPU",
        f", shared with {share.peers - 1} other worker rank(s) on the node" if share.peers > 1 else "",
    )
    for warning in share.warnings:
        log.warning("rank %d: %s", world.rank, warning)


def make_worker(
    world: World,
    transport: Any,
    settings: Settings,
    layout: WorkLayout,
    drain_logs: Callable[[], tuple[str, ...]],
    allocation_gpus: int = 0,
    resources: NodeResources | None = None,
) -> Worker:
    """A worker for this rank's node.

    ``resources`` is this rank's share (`node_resources`); without it the rank is taken to be alone on
    its node, with the GPUs of ``node.gpus``, else ``allocation_gpus``, else those the node shows.
    """
    if resources is None:
        mine = _view(world, settings, allocation_gpus, os.environ)
        resources = _share(world, settings, mine, [mine[0]])
    share = resources.share
    vendor = _VENDORS.get(resources.vendor, settings.node.gpu_vendor)
    settings = replace(settings, node=replace(settings.node, gpu_vendor=vendor))
    node = NodeInfo(
        world.rank,
        world.host,
        share.cores,
        len(share.gpus),
        resources.vendor if share.gpus else "",
        resources.inventory.source,
        share.peers,
    )
    return Worker(
        transport, settings, layout, node, os.environ, drain_logs, cpu_ids=share.cpus, gpu_ids=share.gpus
    )
