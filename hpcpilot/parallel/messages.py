"""The messages between the coordinator (rank 0) and the node workers, each with an explicit tag.

All are frozen dataclasses, pickled by mpi4py. Traffic is batched: a worker reports many results and
asks for many ranges in one `WorkerUpdate`; the coordinator answers with one `Assignment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hpcpilot.model.job import Job
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import PayloadResult, RangeResult
from hpcpilot.model.wire import compact_pickle

TAG_UPDATE = 11
TAG_ASSIGNMENT = 12
TAG_STOP = 13
TAG_BYE = 14
TAG_KILL = 15
TAG_LOST = 16  # never on the wire: see WorkerLost
TAG_FAREWELL = 17


@compact_pickle
@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A worker's node, sent once in its first update.

    Attributes
    ----------
    rank
        The worker's MPI rank.
    host
        Its host name (``SLURMD_NODENAME`` where pseudo-nodes share a host).
    cores
        Cores it may use for payloads.
    gpus
        GPUs it may give payloads.
    gpu_vendor
        Their vendor (empty without GPUs).
    gpu_source
        Where they were found (``nvidia-smi -L``, ``CUDA_VISIBLE_DEVICES``, ``node.gpus`` ..).
    peers
        Worker ranks on its node, itself included (they share the node's cores and GPUs).
    """

    rank: int
    host: str
    cores: int
    gpus: int = 0
    gpu_vendor: str = ""
    gpu_source: str = ""
    peers: int = 1


@compact_pickle
@dataclass(frozen=True, slots=True)
class RangeTask:
    """One event range handed to a worker.

    Attributes
    ----------
    panda_id
        The range's job.
    event_range
        The range.
    attempt
        1 for the first attempt.
    """

    panda_id: int
    event_range: EventRange
    attempt: int


@compact_pickle
@dataclass(frozen=True, slots=True)
class WorkerUpdate:
    """Worker -> coordinator: results since the last update, and how much more work is wanted.

    Attributes
    ----------
    node
        Set in a worker's first update only.
    ranges
        Range results.
    payloads
        Plain-job results.
    want_cores
        Cores' worth of work wanted, prefetch included (0: no new request in this message).
    free_cores
        Cores idle right now with nothing queued for them (plain jobs are only given to these).
    busy_slots
        Items running right now.
    logs
        Warnings the worker logged since the last update, for rank 0 to show.
    samples
        Resource samples of the node and its jobs taken since the last update (``monitor.plugins``).
    """

    TAG: ClassVar[int] = TAG_UPDATE
    node: NodeInfo | None
    ranges: tuple[RangeResult, ...]
    payloads: tuple[PayloadResult, ...]
    want_cores: int
    free_cores: int
    busy_slots: int
    logs: tuple[str, ...] = ()
    samples: tuple[MetricSample, ...] = ()


@compact_pickle
@dataclass(frozen=True, slots=True)
class Assignment:
    """Coordinator -> worker: work to do.

    Attributes
    ----------
    jobs
        Definitions of jobs the worker has not seen yet (each is sent to a worker once).
    ranges
        Event ranges to process.
    plain
        PandaIDs of plain jobs to run.
    finished_jobs
        Jobs that will get no more ranges: the worker may end their long-lived payloads.
    """

    TAG: ClassVar[int] = TAG_ASSIGNMENT
    jobs: tuple[Job, ...]
    ranges: tuple[RangeTask, ...]
    plain: tuple[int, ...] = ()
    finished_jobs: tuple[int, ...] = ()


@compact_pickle
@dataclass(frozen=True, slots=True)
class Stop:
    """Coordinator -> worker: finish.

    Attributes
    ----------
    drain
        False: all work is done, end normally. True: start nothing new, finish what runs, return the
        rest (walltime, signal, soft kill).
    kill
        With ``drain``: do not let running items finish, kill them (``tobekilled`` for the whole run,
        the walltime's cut, a terminating signal). A Stop with ``kill`` may follow one without.
    code
        The PanDA error code of the killed items (1144 tobekilled, 1213 walltime, 120x signals).
    diag
        Why they were killed.
    spare_s
        With ``kill``: seconds within which a running range may still end; a range expected to end
        within them (`hpcpilot.parallel.walltime.may_finish`) is not killed now, but when they are
        over if it still runs. 0: kill everything now.
    expected_s
        (PandaID, seconds) pairs: how long a range of each job takes (the mean of its finished ones).
    """

    TAG: ClassVar[int] = TAG_STOP
    drain: bool
    kill: bool = False
    code: int = 1144
    diag: str = "the whole run was killed by the workload manager (tobekilled)"
    spare_s: float = 0.0
    expected_s: tuple[tuple[int, float], ...] = ()


@compact_pickle
@dataclass(frozen=True, slots=True)
class Kill:
    """Coordinator -> worker: the workload manager killed these jobs (``tobekilled``).

    The worker kills their running items and fails their queued ones, all with 1144.

    Attributes
    ----------
    panda_ids
        The jobs.
    """

    TAG: ClassVar[int] = TAG_KILL
    panda_ids: tuple[int, ...]


@compact_pickle
@dataclass(frozen=True, slots=True)
class WorkerBye:
    """Worker -> coordinator, its last message: final results and what it gives back.

    Attributes
    ----------
    update
        Results not yet reported.
    returned
        Ranges it received but did not start.
    returned_plain
        Plain jobs it received but did not start.
    busy_core_s
        Core-seconds its slots spent running payloads (for the utilisation figure).
    reason
        Why it stopped on its own, as a PanDA code (1098 no local space, 120x a signal); 0 when
        rank 0 stopped it.
    """

    TAG: ClassVar[int] = TAG_BYE
    update: WorkerUpdate
    returned: tuple[RangeTask, ...]
    returned_plain: tuple[int, ...]
    busy_core_s: float
    reason: int = 0


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """Made by rank 0's MPI transport, never sent: the worker rank it comes from has died.

    With fault tolerance on (``parallel.fault_tolerance``), the transport turns MPI's report of a
    failed process into this message; the coordinator takes back the rank's work.

    Attributes
    ----------
    why
        What MPI said.
    """

    TAG: ClassVar[int] = TAG_LOST
    why: str


@compact_pickle
@dataclass(frozen=True, slots=True)
class Farewell:
    """Coordinator -> worker, the last message it sends that worker: its `WorkerBye` arrived.

    Nothing follows it from rank 0, so a worker that has it may finalize MPI: no message of rank 0
    is left unmatched in its queue (MPICH fails ``MPI_Finalize`` on one, and its launcher then kills
    the whole job). Messages that crossed the worker's bye (a late `Stop`, an `Assignment` whose ranges
    rank 0 takes back) are dropped by the worker before it.

    Attributes
    ----------
    rank
        The worker it is for.
    """

    TAG: ClassVar[int] = TAG_FAREWELL
    rank: int


Message = WorkerUpdate | Assignment | Stop | Kill | WorkerBye | WorkerLost | Farewell
