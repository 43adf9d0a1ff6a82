"""The coordinator's books: every job, every range, every worker; what to hand out next.

Pure bookkeeping, no I/O and no MPI: the coordinator loop feeds it messages and carries out what it
decides (journal records, reports, sends). Ranges are handed out first come, first served across jobs; a
failed range goes to the back of the queue until it has used ``max_attempts``, then it is ``fatal``. A
range that failed for lack of disk space (1098) keeps its attempts and goes to the front of the queue.

A job's ranges live in a columnar `RangeTable` (a range is an index); the queue holds intervals of
indices, ``(PandaID, start, stop)``, and a worker is handed intervals (`RangeWork`) and answers with
columns (`RangeResults`): nothing on the way is an object per range.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.messages import Assignment, NodeInfo, RangeResults, RangeWork
from hpcpilot.parallel.rangetable import ASSIGNED, DROPPED, FATAL, FINISHED, QUEUED, SMALL_BATCH, RangeTable

#: A queue entry: ranges ``start`` to ``stop - 1`` of job ``PandaID``, all queued.
Span = tuple[int, int, int]

log = logging.getLogger(__name__)


class JobPhase(enum.Enum):
    """Where a job stands in the coordinator."""

    STAGING_IN = "staging_in"  # inputs being staged in: nothing handed out yet
    QUEUED = "queued"  # plain job waiting for a node
    RUNNING = "running"  # work handed out or to hand out
    MERGING = "merging"  # event-service job whose ranges are done, outputs being merged
    STAGING_OUT = "staging_out"  # final state decided, outputs and log being staged out
    DONE = "done"  # final state reported


#: The phases a job may move to from each phase (`JobBook`); DONE is the end.
_NEXT_PHASES: dict[JobPhase, frozenset[JobPhase]] = {
    JobPhase.STAGING_IN: frozenset({JobPhase.RUNNING, JobPhase.QUEUED, JobPhase.STAGING_OUT, JobPhase.DONE}),
    JobPhase.QUEUED: frozenset({JobPhase.RUNNING, JobPhase.STAGING_OUT, JobPhase.DONE}),
    JobPhase.RUNNING: frozenset({JobPhase.QUEUED, JobPhase.MERGING, JobPhase.STAGING_OUT, JobPhase.DONE}),
    JobPhase.MERGING: frozenset({JobPhase.STAGING_OUT, JobPhase.DONE}),
    JobPhase.STAGING_OUT: frozenset({JobPhase.DONE}),
    JobPhase.DONE: frozenset(),
}


class JobTransitionError(RuntimeError):
    """A job was asked to move where it cannot go (a bug of the coordinator: it aborts the run)."""


@dataclass
class JobBook:
    """One job's bookkeeping.

    Its phase, state and failure (``phase``, ``state``, ``error_code``, ``error_diag``,
    ``exit_code``, ``resumable``) are read-only: they change only through the transition methods
    below, which hold the rules.

    **Which failure a job reports: the first.** `fail` records a failure; the first one recorded
    is the job's code and diagnosis, and every later one is kept in ``errors`` (and logged) but
    changes nothing: not the code, not the diagnosis, not ``resumable``. This is the PanDA pilot's
    own rule ("only the first error is reported to the server", PanDAWMS/pilot3
    ``pilot/common/errorcodes.py``, ``add_error_code``), and it holds for every cause alike: a kill
    by the workload manager (1144) after a failed range feed keeps the feed's code; a drain (a
    signal, the walltime, a full disk) after a kill keeps 1144, and the job is then not resumable.
    ``resumable`` belongs to the failure that won: a job is resumable only when its own first
    failure was one the run may take up again (a drain, a merge that a full disk or a kill ended).

    **Phases** move forward only (`JobPhase`): STAGING_IN -> QUEUED or RUNNING -> (MERGING) ->
    (STAGING_OUT) -> DONE, and a plain job may go back from RUNNING to QUEUED (a worker gave it
    back). Any other move raises `JobTransitionError`, as does a failure recorded after DONE: the
    final report is out, so it is a bug.

    **State** goes STARTING -> RUNNING (`mark_running`) while work runs; the final state is decided
    by `conclude`: FAILED when a failure was recorded, else FINISHED. It may be decided again (a
    failed stage-out turns FINISHED into FAILED), never from FAILED back to FINISHED.
    """

    job: Job
    ranges: RangeTable = field(default_factory=RangeTable)
    source_exhausted: bool = False
    stopped: bool = False
    queued: int = 0
    in_flight: int = 0
    finished: int = 0
    fatal: int = 0
    failed_attempts: int = 0
    n_events: int = 0
    cpu_s: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    outputs: list[OutputFile] = field(default_factory=list)
    merged: OutputFile | None = None
    log: OutputFile | None = None
    held: list[Span] = field(default_factory=list)  # restored ranges waiting for `Books.release`
    #: Ranges its source will give in all, when the communicator knows (None: unknown).
    ranges_expected: int | None = None
    ranges_timed: int = 0  # finished ranges with a measured duration ...
    ranges_timed_s: float = 0.0  # ... and the sum of those durations
    _phase: JobPhase = field(default=JobPhase.STAGING_IN, init=False)
    _state: JobState = field(default=JobState.STARTING, init=False)
    _errors: list[tuple[ErrorCode, str]] = field(default_factory=list, init=False)
    _note: str = field(default="", init=False)
    _exit_code: int | None = field(default=None, init=False)
    _resumable: bool = field(default=False, init=False)

    # --- read-only views ----------------------------------------------------------------------

    @property
    def phase(self) -> JobPhase:
        """Where the job stands in the coordinator."""
        return self._phase

    @property
    def state(self) -> JobState:
        """The job's state as reported to the workload manager."""
        return self._state

    @property
    def error_code(self) -> ErrorCode | None:
        """The code of the job's first failure (None: none recorded)."""
        return self._errors[0][0] if self._errors else None

    @property
    def error_diag(self) -> str:
        """The diagnosis of the job's first failure, or the note of a job that finished with one."""
        return self._errors[0][1] if self._errors else self._note

    @property
    def errors(self) -> tuple[tuple[ErrorCode, str], ...]:
        """Every failure recorded, in order; the first is the job's."""
        return tuple(self._errors)

    @property
    def exit_code(self) -> int | None:
        """A plain job's payload exit code (None: no payload result)."""
        return self._exit_code

    @property
    def resumable(self) -> bool:
        """Ended by the run rather than by its own work (a drain, a full disk, a killed merge).

        What it did is intact, and ``--resume`` takes it up where no one else hands its work out
        again. Set by the failure that won (`fail`).
        """
        return self._resumable

    @property
    def ranges_done(self) -> bool:
        """Whether an event-service job's ranges are all final and no more will come."""
        return self.source_exhausted and self.queued == 0 and self.in_flight == 0

    @property
    def unfetched(self) -> int:
        """Ranges the job is known to have that were not received yet (0 when unknown)."""
        if self.source_exhausted or self.ranges_expected is None:
            return 0
        return max(self.ranges_expected - len(self.ranges), 0)

    @property
    def range_s(self) -> float | None:
        """The mean duration of its finished ranges (None before one finished)."""
        return self.ranges_timed_s / self.ranges_timed if self.ranges_timed else None

    # --- transitions --------------------------------------------------------------------------

    def _move(self, to: JobPhase) -> None:
        if to is not self._phase and to not in _NEXT_PHASES[self._phase]:
            raise JobTransitionError(
                f"job {self.job.panda_id}: cannot go from {self._phase.value} to {to.value}"
            )
        self._phase = to

    def release(self) -> None:
        """Its inputs are in place: an event-service job runs, a plain job queues for a node."""
        if self._phase is not JobPhase.STAGING_IN:
            raise JobTransitionError(f"job {self.job.panda_id}: released while {self._phase.value}")
        self._move(JobPhase.RUNNING if self.job.event_service else JobPhase.QUEUED)

    def start_plain(self) -> None:
        """A plain job was handed to a node: it runs."""
        self._move(JobPhase.RUNNING)
        self.mark_running()

    def requeue(self) -> None:
        """A plain job a node gave back unstarted: it queues again."""
        self._move(JobPhase.QUEUED)

    def mark_running(self) -> None:
        """Work of the job runs (STARTING -> RUNNING; nothing changes when it runs already)."""
        if self._state is JobState.STARTING:
            self._state = JobState.RUNNING
        elif self._state is not JobState.RUNNING:
            raise JobTransitionError(f"job {self.job.panda_id}: runs again after {self._state.value}")

    def start_merge(self) -> None:
        """An event-service job's ranges are done: its outputs are being merged."""
        self._move(JobPhase.MERGING)

    def mark_staging_out(self) -> None:
        """Its final state is decided and its files are being staged out."""
        self._move(JobPhase.STAGING_OUT)

    def mark_done(self) -> None:
        """Its final state is reported."""
        self._move(JobPhase.DONE)

    def fail(self, code: ErrorCode, diag: str, *, resumable: bool = False) -> bool:
        """Record a failure; the first one recorded is the job's (see the class).

        Parameters
        ----------
        code
            The PanDA error code.
        diag
            The diagnosis.
        resumable
            Whether the run may take the job up again if this failure is the job's.

        Returns
        -------
        bool
            Whether it became the job's failure (False: one was recorded before, which stays).
        """
        if self._phase is JobPhase.DONE:
            raise JobTransitionError(f"job {self.job.panda_id}: failure {int(code)} after its final report")
        self._errors.append((code, diag))
        if len(self._errors) > 1:
            first = self._errors[0][0]
            log.info(
                "job %d: %d %s (%s) comes after its failure %d %s, which stays the job's",
                self.job.panda_id,
                int(code),
                code.name,
                diag[-200:],
                int(first),
                first.name,
            )
            return False
        self._resumable = resumable
        return True

    def conclude(self, note: str = "") -> JobState:
        """Decide the final state: FAILED when a failure was recorded, else FINISHED.

        ``note`` is the diagnosis of a job that finishes anyway ("1 of 40 ranges failed").
        Returns the state.
        """
        if self._errors:
            self._state = JobState.FAILED
        elif self._state is JobState.FAILED:  # unreachable: failures are never taken back
            raise JobTransitionError(f"job {self.job.panda_id}: failed without a failure recorded")
        else:
            self._state = JobState.FINISHED
            self._note = note or self._note
        return self._state

    def payload_ended(self, result: PayloadResult) -> None:
        """A plain job's payload ended: its exit code and outputs, a failure if it failed; concluded."""
        self.cpu_s += result.cpu_s
        self.outputs.extend(result.outputs)
        self._exit_code = result.exit_code
        if not result.ok:
            self.fail(result.error_code or ErrorCode.PAYLOAD_EXECUTION_FAILURE, result.error_diag)
        self.conclude()


@dataclass
class WorkerBook:
    """One worker's bookkeeping."""

    rank: int
    node: NodeInfo | None = None
    known_jobs: set[int] = field(default_factory=set)
    want_cores: int = 0
    free_cores: int = 0
    busy_slots: int = 0
    in_flight: int = 0
    stopped: bool = False
    busy_core_s: float = 0.0
    plain: set[int] = field(default_factory=set)  # plain jobs in flight there
    cuts: set[int] = field(default_factory=set)  # jobs whose `RangeCut` it was sent
    lost: bool = False  # the rank died (see `Books.worker_lost`)


@dataclass(frozen=True)
class LostWork:
    """What a lost worker had in flight, now back in the queue (or final).

    Attributes
    ----------
    rank
        The worker.
    ranges
        Each range it had, as the failed attempt booked for it and what the range became (FAILED:
        queued again, FATAL: out of attempts, DROPPED: its job takes no more work).
    plain
        The plain jobs it ran, queued again.
    failed_plain
        The plain jobs it ran that take no more work (softkill, tobekilled): failed, to be finished.
    """

    rank: int
    ranges: tuple[tuple[RangeResult, RangeState], ...]
    plain: tuple[int, ...]
    failed_plain: tuple[int, ...] = ()


@dataclass(frozen=True)
class Recorded:
    """What a batch of range results did to the books (`Books.record_results`).

    Attributes
    ----------
    panda_id
        The job.
    finished
        Positions in the batch of the ranges that finished.
    indices
        Their indices in the job's table.
    failed
        Each failed range as a result, and what it became (FAILED: queued again, FATAL, DROPPED).
    stray
        Ids of results that matched no range assigned to the worker (duplicates, strays).
    """

    panda_id: int
    finished: tuple[int, ...]
    indices: tuple[int, ...]
    failed: tuple[tuple[RangeResult, RangeState], ...]
    stray: tuple[str, ...] = ()


def _valid_one_by_one(table: RangeTable, index: tuple[int, ...], rank: int) -> list[bool]:
    """Which results of a small batch match a range assigned to ``rank`` (the first of a repeat)."""
    valid: list[bool] = []
    seen: set[int] = set()
    state, ranks, n = table.state, table.rank, table.n
    for i in index:
        ok = 0 <= i < n and i not in seen and state[i] == ASSIGNED and ranks[i] == rank
        seen.add(i)
        valid.append(bool(ok))
    return valid


def _valid_columns(table: RangeTable, index: tuple[int, ...], rank: int) -> np.ndarray:
    """`_valid_one_by_one` as columns, for a larger batch."""
    at = np.asarray(index, dtype=np.int64)
    inside = (at >= 0) & (at < table.n)
    valid = inside.copy()
    valid[inside] = (table.state[at[inside]] == ASSIGNED) & (table.rank[at[inside]] == rank)
    _, first = np.unique(at, return_index=True)  # a range twice in one batch: only its first result counts
    once = np.zeros(len(at), dtype=bool)
    once[first] = True
    return valid & once


def _stray(table: RangeTable, index: tuple[int, ...], valid: list[bool] | np.ndarray) -> tuple[str, ...]:
    """Names of the results that matched no range assigned to the worker."""
    if all(valid):
        return ()
    return tuple(
        table.range_id(i) if 0 <= i < table.n else f"#{i}"
        for i, ok in zip(index, valid, strict=True)
        if not ok
    )


class Books:
    """All of the coordinator's state.

    Parameters
    ----------
    max_attempts
        Attempts per range before it is declared fatal.
    batch_size
        Most ranges in one assignment.
    """

    def __init__(self, max_attempts: int, batch_size: int) -> None:
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.jobs: dict[int, JobBook] = {}
        self.open: dict[int, JobBook] = {}  # jobs not done yet
        self.feeding: dict[int, JobBook] = {}  # event-service jobs that may still get ranges
        self._settled: set[int] = set()  # event-service jobs whose ranges may all be final now
        self.ranges_known = 0
        self.workers: dict[int, WorkerBook] = {}
        self.range_queue: deque[Span] = deque()
        self.ranges_queued = 0  # ranges in ``range_queue``
        self.plain_queue: deque[int] = deque()
        self.draining = False
        self.paused = False  # nothing is handed out (a full disk), see `assign`
        self.ranges_finished = 0
        self.ranges_fatal = 0
        self.ranges_failed_attempts = 0
        self.ranges_disk_full = 0
        self.ranges_restored = 0  # final in an earlier run (`restore_range`): not this run's rate

    # --- jobs and ranges in -------------------------------------------------------------------

    def add_job(self, job: Job, *, staging: bool = False) -> JobBook:
        """Start keeping the books of a new job.

        A job whose inputs are being staged in (``staging``) waits in `JobPhase.STAGING_IN`: none of its
        work is handed out (and no ranges are asked for) until `release`.
        """
        book = JobBook(job=job, started=time.time(), source_exhausted=not job.event_service)
        self.jobs[job.panda_id] = book
        self.open[job.panda_id] = book
        if not staging:
            self.release(book)
        return book

    def release(self, book: JobBook) -> None:
        """A job's inputs are in place: its work may be handed out."""
        job = book.job
        book.release()
        if job.event_service:
            if not book.source_exhausted:
                self.feeding[job.panda_id] = book
            for span in book.held:
                self._queue(span)
            book.held.clear()
            self._settled.add(job.panda_id)
        else:
            self.plain_queue.append(job.panda_id)

    def _queue(self, span: Span, front: bool = False) -> None:
        """Queue ranges (at the back, or at the front)."""
        if span[2] <= span[1]:
            return
        if front:
            self.range_queue.appendleft(span)
        else:
            self.range_queue.append(span)
        self.ranges_queued += span[2] - span[1]

    def add_ranges(self, panda_id: int, ranges: tuple[EventRange, ...]) -> int:
        """Queue new ranges fed to a job; ranges already known (same id) are ignored. Returns how many."""
        book = self.jobs[panda_id]
        return self._added(book, book.ranges.add_fed(ranges))

    def add_cut(self, panda_id: int, cut: RangeCut, start: int, stop: int) -> int:
        """Queue ranges ``start`` to ``stop - 1`` of a job's cut, but those known; returns how many."""
        book = self.jobs[panda_id]
        return self._added(book, book.ranges.add_cut(cut, start, stop))

    def _added(self, book: JobBook, span: tuple[int, int]) -> int:
        added = span[1] - span[0]
        if added:
            self._queue((book.job.panda_id, *span))
            book.queued += added
            self.ranges_known += added
        return added

    def restore_range(
        self, panda_id: int, rng: EventRange, failed: int = 0, outcome: RangeResult | None = None
    ) -> RangeState | None:
        """Book a range of a resumed job as the journal of the killed run left it.

        Parameters
        ----------
        panda_id
            Its job (added with `add_job`).
        rng
            The range.
        failed
            Attempts that failed in earlier runs: the next one is ``failed + 1``.
        outcome
            A finished result (the range is FINISHED, its output used for the merge), a failed one (the
            range is FATAL), or None (the range is queued).

        Returns
        -------
        RangeState or None
            What the range became; None for a range already known (nothing changes).
        """
        book = self.jobs[panda_id]
        table = book.ranges
        start, stop = table.add_fed((rng,))
        if stop == start:
            return None
        i = start
        table.attempts[i] = min(failed, 65535)
        self.ranges_known += 1
        book.failed_attempts += failed
        self.ranges_failed_attempts += failed
        self._settled.add(panda_id)
        if outcome is None:
            book.queued += 1
            span = (panda_id, i, i + 1)
            if book.phase is JobPhase.STAGING_IN:
                book.held.append(span)
            else:
                self._queue(span)
            return RangeState.QUEUED
        self.ranges_restored += 1
        if outcome.state is RangeState.FINISHED:
            table.state[i] = FINISHED
            out = outcome.output
            table.set_output(
                i, out.path if out else None, out.fsize if out else 0, out.adler32 if out else ""
            )
            table.nevents[i] = outcome.n_events
            book.finished += 1
            book.n_events += outcome.n_events
            self.ranges_finished += 1
            return RangeState.FINISHED
        table.state[i] = FATAL
        book.fatal += 1
        self.ranges_fatal += 1
        return RangeState.FATAL

    def exhaust(self, book: JobBook) -> None:
        """The job's range source has no more ranges."""
        book.source_exhausted = True
        self.feeding.pop(book.job.panda_id, None)
        self._settled.add(book.job.panda_id)

    def drop_queued(self, book: JobBook) -> list[str]:
        """Stop handing out a job's work: remove its queued ranges (and itself, if a queued plain job).

        Returns the ids of the ranges removed; the job settles once its work in flight is back.
        """
        panda_id = book.job.panda_id
        table = book.ranges
        kept: deque[Span] = deque()
        dropped: list[str] = []
        for span in self.range_queue:
            if span[0] != panda_id:
                kept.append(span)
                continue
            table.state[span[1] : span[2]] = DROPPED
            dropped += table.range_ids(range(span[1], span[2]))
            self.ranges_queued -= span[2] - span[1]
        self.range_queue = kept
        book.queued = 0
        book.stopped = True
        if panda_id in self.plain_queue:
            self.plain_queue.remove(panda_id)
        self.exhaust(book)
        return dropped

    def take_settled(self) -> list[JobBook]:
        """Event-service jobs still running whose ranges are all final and no more will come."""
        ready = []
        for panda_id in self._settled:
            book = self.jobs[panda_id]
            if book.phase is JobPhase.RUNNING and book.ranges_done:
                ready.append(book)
        self._settled.clear()
        return ready

    def mark_staging_out(self, book: JobBook) -> None:
        """The job's final state is decided and its files are being staged out: it stays open."""
        book.mark_staging_out()
        self.feeding.pop(book.job.panda_id, None)

    def mark_done(self, book: JobBook) -> None:
        """The job's final state is reported."""
        book.mark_done()
        self.open.pop(book.job.panda_id, None)
        self.feeding.pop(book.job.panda_id, None)

    # --- workers ------------------------------------------------------------------------------

    def worker(self, rank: int) -> WorkerBook:
        """The books of one worker (created on first use)."""
        book = self.workers.get(rank)
        if book is None:
            book = self.workers[rank] = WorkerBook(rank)
        return book

    @property
    def total_cores(self) -> int:
        """Cores of all workers that have said hello."""
        return sum(w.node.cores for w in self.workers.values() if w.node is not None)

    def next_queued_job(self) -> JobBook | None:
        """The job of the range at the head of the queue (None: no range queued)."""
        return self.jobs[self.range_queue[0][0]] if self.range_queue else None

    def assign(
        self,
        rank: int,
        max_ranges: int | None = None,
        plain_fits: Callable[[Job], bool] | None = None,
    ) -> Assignment | None:
        """Work for one worker according to its request, or None if there is none to give.

        Plain jobs go only to cores that are idle now; ranges fill the worker's request (prefetch
        included) up to ``batch_size``. What is given is taken off the request: the rest of it stands
        (the worker does not ask again), and `wants` says whether any is left.

        Parameters
        ----------
        rank
            The worker.
        max_ranges
            At most this many ranges (what still fits before the end; None: no limit).
        plain_fits
            Whether a plain job may start now (None: every job may).
        """
        worker = self.worker(rank)
        if not self.wants(worker):
            return None
        plain = self._take_plain(worker, plain_fits)
        ranges = self._take_ranges(worker, self.batch_size if max_ranges is None else max_ranges)
        if not plain and not ranges:
            return None
        new_jobs = {w.panda_id for w in ranges} | set(plain)
        new_jobs -= worker.known_jobs
        worker.known_jobs |= new_jobs
        return Assignment(
            jobs=tuple(self.jobs[p].job for p in sorted(new_jobs)),
            ranges=tuple(ranges),
            plain=tuple(plain),
        )

    def wants(self, worker: WorkerBook) -> bool:
        """Whether work may go to ``worker`` now (it asked for some that it was not given yet)."""
        return not (self.draining or self.paused or worker.stopped or worker.want_cores <= 0)

    def _take_plain(self, worker: WorkerBook, fits: Callable[[Job], bool] | None) -> list[int]:
        taken: list[int] = []
        skipped: list[int] = []
        while self.plain_queue and worker.free_cores > 0:
            panda_id = self.plain_queue.popleft()
            book = self.jobs[panda_id]
            cores = book.job.core_count
            whole_node = worker.node is not None and worker.free_cores >= worker.node.cores
            if (cores > worker.free_cores and not whole_node) or (fits is not None and not fits(book.job)):
                skipped.append(panda_id)
                continue
            # a job larger than the node gets a whole idle node rather than never running
            worker.free_cores = max(worker.free_cores - cores, 0)
            worker.want_cores -= cores
            book.start_plain()
            book.in_flight = 1
            worker.in_flight += 1
            worker.plain.add(panda_id)
            taken.append(panda_id)
        self.plain_queue.extendleft(reversed(skipped))
        return taken

    def _take_ranges(self, worker: WorkerBook, most: int) -> list[RangeWork]:
        taken: list[RangeWork] = []
        queue = self.range_queue
        n_taken = 0
        most = min(most, self.batch_size)
        while queue and worker.want_cores > 0 and n_taken < most:
            panda_id, start, stop = queue.popleft()
            book = self.jobs[panda_id]
            cores = max(book.job.core_count, 1)
            n = min(stop - start, most - n_taken, -(-worker.want_cores // cores))
            if n < stop - start:
                queue.appendleft((panda_id, start + n, stop))
            self.ranges_queued -= n
            taken.append(self._hand_out(book, worker, start, start + n))
            n_taken += n
            worker.want_cores -= n * cores
        worker.in_flight += n_taken
        return taken

    def _hand_out(self, book: JobBook, worker: WorkerBook, start: int, stop: int) -> RangeWork:
        """Mark ranges ``start`` to ``stop - 1`` of a job as running on ``worker``; the work to send."""
        table = book.ranges
        attempt: int | tuple[int, ...]
        if stop - start == 1:  # numpy's cost per call is most of one range's
            table.state[start] = ASSIGNED
            table.rank[start] = worker.rank
            attempt = int(table.attempts[start]) + 1
            table.attempts[start] = attempt
        else:
            table.state[start:stop] = ASSIGNED
            table.rank[start:stop] = worker.rank
            attempts = table.attempts[start:stop]
            attempts += 1
            first = int(attempts[0])
            attempt = first if bool((attempts == first).all()) else tuple(attempts.tolist())
        book.queued -= stop - start
        book.in_flight += stop - start
        if book.state is JobState.STARTING:
            book.mark_running()
        panda_id = book.job.panda_id
        defs: RangeCut | dict[str, object] | None
        if table.cut is None:
            defs = table.columns(range(start, stop))
        elif panda_id in worker.cuts:
            defs = None
        else:
            worker.cuts.add(panda_id)
            defs = table.cut
        return RangeWork(panda_id, start, stop, attempt, defs)

    # --- results in ---------------------------------------------------------------------------

    def record_results(self, rank: int, results: RangeResults) -> Recorded:
        """Book a worker's results for ranges of one job; failed ranges are requeued or declared fatal.

        Finished ranges are booked at once (as columns, or one by one for a batch of at most
        `SMALL_BATCH`, where numpy's cost per call is more than the work); each failed one goes
        through the rules of `_record_failure`. A result that does not match a range assigned to
        ``rank`` (a duplicate or stray) is ignored and named in ``stray``.
        """
        panda_id = results.panda_id
        book = self.jobs.get(panda_id)
        if book is None:
            return Recorded(panda_id, (), (), (), tuple(f"#{i}" for i in results.index))
        table = book.ranges
        valid: list[bool] | np.ndarray
        if len(results.index) <= SMALL_BATCH:
            valid = _valid_one_by_one(table, results.index, rank)
            finished = [p for p, ok in enumerate(valid) if ok and results.finished[p]]
            self._book_finished_one_by_one(book, rank, results, finished)
            failing = [p for p, ok in enumerate(valid) if ok and not results.finished[p]]
        else:
            valid = _valid_columns(table, results.index, rank)
            is_finished = np.frombuffer(results.finished, dtype=np.uint8).astype(bool) & valid
            finished = self._book_finished(book, rank, results, is_finished).tolist()
            failing = np.flatnonzero(valid & ~is_finished).tolist()
        stray = _stray(table, results.index, valid)
        failed = [
            self._record_failure(book, rank, self._failure(table, results, pos), results.index[pos])
            for pos in failing
        ]
        if book.in_flight == 0:
            self._settled.add(panda_id)
        return Recorded(
            panda_id, tuple(finished), tuple(results.index[p] for p in finished), tuple(failed), stray
        )

    def _book_finished(
        self, book: JobBook, rank: int, results: RangeResults, finished: np.ndarray
    ) -> np.ndarray:
        """Book the finished ranges of a batch, as columns; returns their positions in it."""
        positions = np.flatnonzero(finished)
        n = len(positions)
        if not n:
            return positions
        table = book.ranges
        where = np.asarray(results.index, dtype=np.int64)[positions]
        table.state[where] = FINISHED
        nevents = np.asarray(results.nevents, dtype=np.int64)[positions]
        table.nevents[where] = nevents
        fsize = np.asarray(results.fsize, dtype=np.int64)[positions]
        table.fsize[where] = fsize
        pos_list, where_list, size_list = positions.tolist(), where.tolist(), fsize.tolist()
        self._keep_outputs(table, results, pos_list, where_list, size_list)
        wall = np.asarray(results.wall_s, dtype=np.float64)[positions]
        timed = wall > 0
        book.ranges_timed += int(np.count_nonzero(timed))
        book.ranges_timed_s += float(wall[timed].sum())
        cpu_s = float(np.asarray(results.cpu_s, dtype=np.float64)[positions].sum())
        self._count_finished(book, rank, n, int(nevents.sum()), cpu_s)
        return positions

    def _book_finished_one_by_one(
        self, book: JobBook, rank: int, results: RangeResults, positions: list[int]
    ) -> None:
        """`_book_finished` for a small batch: the same books, without numpy's cost per call."""
        if not positions:
            return
        table = book.ranges
        where = [results.index[p] for p in positions]
        sizes = [results.fsize[p] for p in positions]
        nevents = 0
        for pos, i, size in zip(positions, where, sizes, strict=True):
            table.state[i] = FINISHED
            table.nevents[i] = results.nevents[pos]
            table.fsize[i] = size
            nevents += results.nevents[pos]
            wall = results.wall_s[pos]
            if wall > 0:
                book.ranges_timed += 1
                book.ranges_timed_s += wall
        self._keep_outputs(table, results, positions, where, sizes)
        cpu_s = float(sum(results.cpu_s[p] for p in positions))
        self._count_finished(book, rank, len(positions), nevents, cpu_s)

    @staticmethod
    def _keep_outputs(
        table: RangeTable, results: RangeResults, positions: list[int], where: list[int], sizes: list[int]
    ) -> None:
        """Keep the checksums and the paths (where not at the job's prefix) of finished outputs."""
        adler = results.adler32
        for p, i, size in zip(positions, where, sizes, strict=True):
            if size >= 0:  # a range without output has no checksum to keep
                table.set_adler32(i, adler[p])
        if table.out_prefix is None and results.out_prefix:
            table.out_prefix = results.out_prefix
        elif results.out_prefix and results.out_prefix != table.out_prefix:  # a worker elsewhere
            for i, size in zip(where, sizes, strict=True):
                if size >= 0:
                    table.paths[i] = results.out_prefix + table.range_id(i)
        if results.odd_paths:
            odd = dict(results.odd_paths)
            for pos, at in zip(positions, where, strict=True):
                path = odd.get(pos)
                if path is not None:
                    table.paths[at] = path

    def _count_finished(self, book: JobBook, rank: int, n: int, nevents: int, cpu_s: float) -> None:
        book.cpu_s += cpu_s
        book.in_flight -= n
        book.finished += n
        book.n_events += nevents
        self.worker(rank).in_flight -= n
        self.ranges_finished += n

    @staticmethod
    def _failure(table: RangeTable, results: RangeResults, pos: int) -> RangeResult:
        """The failed range at ``pos`` of a batch, as a result."""
        code, diag = next(((c, d) for p, c, d in results.errors if p == pos), (0, ""))
        return RangeResult(
            results.panda_id,
            table.range_id(results.index[pos]),
            RangeState.FAILED,
            n_events=results.nevents[pos],
            error_code=_known_code(code),
            error_diag=diag,
            wall_s=results.wall_s[pos],
            cpu_s=results.cpu_s[pos],
        )

    def record_range(self, rank: int, result: RangeResult) -> RangeState | None:
        """Book one range result (by range id: the slow path of tests and lost workers).

        Returns what the range became (FINISHED, FAILED: requeued, FATAL, DROPPED), or None for a
        result that does not match a range assigned to ``rank``.
        """
        book = self.jobs.get(result.panda_id)
        index = book.ranges.index_of(result.range_id) if book else None
        if book is None or index is None:
            return None
        table = book.ranges
        if table.state[index] != ASSIGNED or table.rank[index] != rank:
            return None
        if result.state is RangeState.FINISHED:
            out = result.output
            batch = RangeResults(
                result.panda_id,
                (index,),
                b"\x01",
                (result.n_events,),
                (out.fsize if out else -1,),
                (out.adler32 if out else "",),
                (result.wall_s,),
                (result.cpu_s,),
                odd_paths=((0, out.path),) if out else (),
            )
            self.record_results(rank, batch)
            return RangeState.FINISHED
        _, state = self._record_failure(book, rank, result, index)
        if book.in_flight == 0:
            self._settled.add(result.panda_id)
        return state

    def _record_failure(
        self, book: JobBook, rank: int, result: RangeResult, index: int | None = None
    ) -> tuple[RangeResult, RangeState]:
        """Book a failed attempt: queued again, or fatal once it used ``max_attempts``.

        A range that failed for lack of disk space (1098, `hpcpilot.parallel.diskspace`) does not spend
        the attempt: it is queued again at the front with the same attempt number. A range that fails so
        more than ``max_attempts`` times is one that fills the disk itself: from then on such failures
        count as attempts. In a job that takes no more work the range is DROPPED.
        """
        table = book.ranges
        i = table.index_of(result.range_id) if index is None else index
        assert i is not None
        self.worker(rank).in_flight -= 1
        book.in_flight -= 1
        book.cpu_s += result.cpu_s
        if self._disk_full_again(book, i, result):
            return result, RangeState.FAILED
        book.failed_attempts += 1
        self.ranges_failed_attempts += 1
        if book.stopped:  # the job takes no more work: the range is not retried here
            table.state[i] = DROPPED
            return result, RangeState.DROPPED
        if int(table.attempts[i]) >= self.max_attempts:
            table.state[i] = FATAL
            book.fatal += 1
            self.ranges_fatal += 1
            return result, RangeState.FATAL
        table.state[i] = QUEUED
        book.queued += 1
        self._queue((book.job.panda_id, i, i + 1))
        return result, RangeState.FAILED

    def _disk_full_again(self, book: JobBook, i: int, result: RangeResult) -> bool:
        """Queue a range that failed for lack of space again, attempts kept; False if it was not that."""
        if result.error_code is not ErrorCode.NO_LOCAL_SPACE or book.stopped:
            return False
        table = book.ranges
        if int(table.disk_full[i]) >= self.max_attempts:
            return False
        table.disk_full[i] += 1
        self.ranges_disk_full += 1
        table.state[i] = QUEUED
        table.attempts[i] -= 1  # handed out again with the same attempt number
        book.queued += 1
        self._queue((book.job.panda_id, i, i + 1), front=True)
        return True

    def attempt_of(self, panda_id: int, range_id: str) -> int:
        """The attempt a range is at (0 for an unknown range)."""
        book = self.jobs.get(panda_id)
        index = book.ranges.index_of(range_id) if book else None
        return int(book.ranges.attempts[index]) if book is not None and index is not None else 0

    def record_payload(self, rank: int, result: PayloadResult) -> JobBook | None:
        """Book a plain job's result; returns its books, or None for a stray result."""
        book = self.jobs.get(result.panda_id)
        if book is None or book.in_flight != 1 or book.job.event_service:
            return None
        self.worker(rank).in_flight -= 1
        self.worker(rank).plain.discard(result.panda_id)
        book.in_flight = 0
        book.payload_ended(result)
        return book

    def return_ranges(self, work: tuple[RangeWork, ...], rank: int) -> list[tuple[int, list[str]]]:
        """Take back ranges a worker received but did not start; they are queued again at the front.

        Their attempt is not counted. Returns the ids taken back, per job.
        """
        worker = self.worker(rank)
        back: list[tuple[int, list[str]]] = []
        for item in reversed(work):  # each goes to the front: keep their order
            book = self.jobs.get(item.panda_id)
            if book is None:
                continue
            table = book.ranges
            held = [
                i
                for i in range(max(item.start, 0), min(item.stop, table.n))
                if table.state[i] == ASSIGNED and table.rank[i] == rank
            ]
            if not held:
                continue
            back.append((item.panda_id, table.range_ids(held)))
            book.in_flight -= len(held)
            worker.in_flight -= len(held)
            if book.stopped:
                table.state[held] = DROPPED
                self._settled.add(item.panda_id)
                continue
            table.state[held] = QUEUED
            table.attempts[held] -= 1
            book.queued += len(held)
            for start, stop in reversed(_runs(held)):
                self._queue((item.panda_id, start, stop), front=True)
        back.reverse()
        return back

    def return_plain(self, panda_ids: tuple[int, ...], rank: int) -> None:
        """Take back plain jobs a worker received but did not start."""
        for panda_id in panda_ids:
            book = self.jobs.get(panda_id)
            if book is None or book.in_flight != 1:
                continue
            book.in_flight = 0
            book.requeue()
            self.worker(rank).in_flight -= 1
            self.worker(rank).plain.discard(panda_id)
            self.plain_queue.appendleft(panda_id)

    def _held_by(self, rank: int) -> list[tuple[JobBook, list[int]]]:
        """The ranges still booked on ``rank``, per job."""
        held = []
        for book in list(self.jobs.values()):
            if book.in_flight and book.job.event_service:
                indices = book.ranges.indices(RangeState.ASSIGNED, rank)
                if indices:
                    held.append((book, indices))
        return held

    def reclaim(self, rank: int) -> list[tuple[int, list[str]]]:
        """Take back what is still booked on a worker that said bye: work sent as its bye was on the way.

        Such a worker runs nothing more, so its ranges still assigned are queued again (the attempt is
        not counted) and its plain jobs too. Returns the ids of the ranges taken back, per job.
        """
        worker = self.worker(rank)
        work = tuple(
            RangeWork(book.job.panda_id, start, stop)
            for book, indices in self._held_by(rank)
            for start, stop in _runs(indices)
        )
        back = self.return_ranges(work, rank) if work else []
        if worker.plain:
            self.return_plain(tuple(sorted(worker.plain)), rank)
        return back

    def worker_lost(self, rank: int, diag: str, code: ErrorCode = ErrorCode.KILL_SIGNAL) -> LostWork:
        """A worker rank died: take back everything it had in flight and never give it work again.

        Each of its ranges is booked as a failed attempt (``code``, ``diag``), so it is queued again,
        or fatal once it has used ``max_attempts``: a range that kills the rank running it (a payload
        that takes the node's memory) must not take down every rank in turn. Its plain jobs are queued
        again at the front, except those of jobs that take no more work (`drop_queued`): they fail with
        ``code`` unless they have an error already. The worker is stopped, its counters zeroed and its
        node forgotten (its cores no longer count in `total_cores`).

        Parameters
        ----------
        rank
            The lost worker.
        diag
            Why, for the failed attempts (name the rank and host).
        code
            The error code of the failed attempts.

        Returns
        -------
        LostWork
            What it had in flight and what became of it.
        """
        worker = self.worker(rank)
        results: list[tuple[RangeResult, RangeState]] = []
        for book, indices in self._held_by(rank):
            for i in indices:
                rid = book.ranges.range_id(i)
                result = RangeResult(
                    book.job.panda_id, rid, RangeState.FAILED, error_code=code, error_diag=diag
                )
                results.append(self._record_failure(book, rank, result, i))
            if book.in_flight == 0:
                self._settled.add(book.job.panda_id)
        plain = tuple(p for p in sorted(worker.plain) if not self.jobs[p].stopped)
        failed = tuple(p for p in sorted(worker.plain) if self.jobs[p].stopped)
        self.return_plain(plain[::-1], rank)  # each goes to the front: keep their order
        for panda_id in failed:
            book = self.jobs[panda_id]
            book.in_flight = 0
            book.fail(code, diag)
            book.conclude()
        worker.stopped = worker.lost = True
        worker.node = None
        worker.in_flight = worker.busy_slots = worker.free_cores = worker.want_cores = 0
        worker.plain.clear()
        worker.known_jobs.clear()
        worker.cuts.clear()
        return LostWork(rank, tuple(results), plain, failed)

    # --- views --------------------------------------------------------------------------------

    def open_jobs(self) -> list[JobBook]:
        """Jobs not yet done."""
        return list(self.open.values())

    @property
    def ranges_total(self) -> int:
        """Ranges of all jobs: those received, and those known to come (`JobBook.unfetched`)."""
        return self.ranges_known + sum(b.unfetched for b in self.jobs.values())

    @property
    def busy_slots(self) -> int:
        """Items running on all workers, as last reported."""
        return sum(w.busy_slots for w in self.workers.values())


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices as runs ``(start, stop)`` of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _known_code(code: int) -> ErrorCode | None:
    """A PanDA code as `ErrorCode` (None for 0; unknown codes as a general payload failure)."""
    if not code:
        return None
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.PAYLOAD_EXECUTION_FAILURE
