"""The messages between the coordinator (rank 0) and the node workers, each with an explicit tag.

All are frozen dataclasses, pickled by mpi4py (protocol 5). Traffic is batched and columnar: a worker
reports many results and asks for many ranges in one `WorkerUpdate`, its results as columns per job
(`RangeResults`); the coordinator answers with one `Assignment` whose ranges are intervals of each
job's ranges (`RangeWork`), never an object per range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hpcpilot.model.job import Job
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, range_columns
from hpcpilot.model.results import PayloadResult
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
class RangeWork:
    """Event ranges of one job handed to a worker (or given back by it): an interval of indices.

    A range is its index in the job's table on rank 0 (`hpcpilot.parallel.rangetable`); one message
    carries an interval of them, not an object per range.

    Attributes
    ----------
    panda_id
        The job.
    start, stop
        The ranges ``start`` to ``stop - 1``.
    attempt
        Their attempt (1 for the first): one number for all, or one per range.
    defs
        What the ranges are: a `RangeCut` (the job is cut; sent once to each worker), their
        `hpcpilot.model.ranges.range_columns` (fed ranges), or None (cut ranges of a cut the worker
        has, or ranges a worker gives back).
    """

    panda_id: int
    start: int
    stop: int
    attempt: int | tuple[int, ...] = 1
    defs: RangeCut | dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def attempt_of(self, offset: int) -> int:
        """The attempt of the range at ``offset`` in the interval."""
        return self.attempt if isinstance(self.attempt, int) else self.attempt[offset]

    @classmethod
    def of_ranges(
        cls, panda_id: int, ranges: Sequence[EventRange], start: int = 0, attempt: int = 1
    ) -> RangeWork:
        """Fed ranges with indices from ``start`` (tests, and the simulated workers of the benches)."""
        return cls(panda_id, start, start + len(ranges), attempt, range_columns(ranges))


@compact_pickle
@dataclass(frozen=True, slots=True)
class RangeResults:
    """Worker -> coordinator: what became of ranges of one job, as columns.

    Attributes
    ----------
    panda_id
        The job.
    index
        The ranges (indices in the job's table).
    finished
        One byte per range: 1 finished, 0 failed.
    nevents
        Events each processed.
    fsize
        Size of each output (-1: the range wrote none).
    adler32
        Adler32 of each output ("" without one).
    wall_s, cpu_s
        Seconds each attempt took, and the CPU seconds its payload used (0 when unknown).
    out_prefix
        Outputs are at ``out_prefix + range id`` ...
    odd_paths
        ... except these: (position, path).
    errors
        (position, PanDA code, diagnosis) of each failed range.
    """

    panda_id: int
    index: tuple[int, ...]
    finished: bytes
    nevents: tuple[int, ...]
    fsize: tuple[int, ...]
    adler32: tuple[str, ...]
    wall_s: tuple[float, ...]
    cpu_s: tuple[float, ...]
    out_prefix: str = ""
    odd_paths: tuple[tuple[int, str], ...] = ()
    errors: tuple[tuple[int, int, str], ...] = ()

    def __len__(self) -> int:
        return len(self.index)


@compact_pickle
@dataclass(frozen=True, slots=True)
class WorkerUpdate:
    """Worker -> coordinator: results since the last update, and how much more work is wanted.

    Attributes
    ----------
    node
        Set in a worker's first update only.
    ranges
        Range results, one batch per job.
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
    ranges: tuple[RangeResults, ...]
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
        Event ranges to process, as intervals of each job's ranges.
    plain
        PandaIDs of plain jobs to run.
    finished_jobs
        Jobs that will get no more ranges: the worker may end their long-lived payloads.
    """

    TAG: ClassVar[int] = TAG_ASSIGNMENT
    jobs: tuple[Job, ...]
    ranges: tuple[RangeWork, ...]
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
        Ranges it received but did not start (without their definitions).
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
    returned: tuple[RangeWork, ...]
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
