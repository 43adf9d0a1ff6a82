"""The coordinator's books: every job, every range, every worker; what to hand out next.

Pure bookkeeping, no I/O and no MPI: the coordinator loop feeds it messages and carries out what it
decides (journal records, reports, sends). Ranges are handed out first come, first served across jobs; a
failed range goes to the back of the queue until it has used ``max_attempts``, then it is ``fatal``. A
range that failed for lack of disk space (1098) keeps its attempts and goes to the front of the queue.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel.messages import Assignment, NodeInfo, RangeTask

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


@dataclass(slots=True)
class RangeEntry:
    """One range's bookkeeping."""

    event_range: EventRange
    state: RangeState = RangeState.QUEUED
    attempts: int = 0
    rank: int = -1
    result: RangeResult | None = None
    disk_full: int = 0  # failures for lack of disk space that did not count as attempts


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
    ranges: dict[str, RangeEntry] = field(default_factory=dict)
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
    held: list[RangeTask] = field(default_factory=list)  # restored ranges waiting for `Books.release`
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
        self.range_queue: deque[RangeTask] = deque()
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
            self.range_queue.extend(book.held)
            book.held.clear()
            self._settled.add(job.panda_id)
        else:
            self.plain_queue.append(job.panda_id)

    def add_ranges(self, panda_id: int, ranges: tuple[EventRange, ...]) -> int:
        """Queue new ranges of a job; ranges already known (same id) are ignored. Returns how many."""
        book = self.jobs[panda_id]
        added = 0
        for rng in ranges:
            if rng.range_id in book.ranges:
                continue
            book.ranges[rng.range_id] = RangeEntry(rng)
            self.range_queue.append(RangeTask(panda_id, rng, 1))
            added += 1
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
        if rng.range_id in book.ranges:
            return None
        entry = book.ranges[rng.range_id] = RangeEntry(rng, attempts=failed, result=outcome)
        self.ranges_known += 1
        book.failed_attempts += failed
        self.ranges_failed_attempts += failed
        if outcome is None:
            entry.state = RangeState.QUEUED
            book.queued += 1
            task = RangeTask(panda_id, rng, failed + 1)
            (book.held if book.phase is JobPhase.STAGING_IN else self.range_queue).append(task)
        elif outcome.state is RangeState.FINISHED:
            entry.state = RangeState.FINISHED
            book.finished += 1
            book.n_events += outcome.n_events
            self.ranges_finished += 1
            self.ranges_restored += 1
        else:
            entry.state = RangeState.FATAL
            book.fatal += 1
            self.ranges_fatal += 1
            self.ranges_restored += 1
        self._settled.add(panda_id)
        return entry.state

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
        kept = deque(t for t in self.range_queue if t.panda_id != panda_id)
        dropped = [t.event_range.range_id for t in self.range_queue if t.panda_id == panda_id]
        self.range_queue = kept
        for rid in dropped:
            book.ranges[rid].state = RangeState.DROPPED
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

    def assign(
        self,
        rank: int,
        max_ranges: int | None = None,
        plain_fits: Callable[[Job], bool] | None = None,
    ) -> Assignment | None:
        """Work for one worker according to its last request, or None if there is none to give.

        Plain jobs go only to cores that are idle now; ranges fill the worker's request (prefetch
        included) up to ``batch_size``.

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
        if self.draining or self.paused or worker.stopped or worker.want_cores <= 0:
            return None
        plain = self._take_plain(worker, plain_fits)
        ranges = self._take_ranges(worker, self.batch_size if max_ranges is None else max_ranges)
        if not plain and not ranges:
            return None
        new_jobs = {t.panda_id for t in ranges} | set(plain)
        new_jobs -= worker.known_jobs
        worker.known_jobs |= new_jobs
        worker.want_cores = 0
        return Assignment(
            jobs=tuple(self.jobs[p].job for p in sorted(new_jobs)),
            ranges=tuple(ranges),
            plain=tuple(plain),
        )

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

    def _take_ranges(self, worker: WorkerBook, most: int) -> list[RangeTask]:
        taken: list[RangeTask] = []
        queue = self.range_queue
        jobs = self.jobs
        budget = worker.want_cores
        most = min(most, self.batch_size)
        while queue and budget > 0 and len(taken) < most:
            task = queue.popleft()
            book = jobs[task.panda_id]
            entry = book.ranges[task.event_range.range_id]
            entry.state = RangeState.ASSIGNED
            entry.rank = worker.rank
            entry.attempts = task.attempt
            book.queued -= 1
            book.in_flight += 1
            if book.state is JobState.STARTING:
                book.mark_running()
            budget -= book.job.core_count
            taken.append(task)
        worker.in_flight += len(taken)
        return taken

    # --- results in ---------------------------------------------------------------------------

    def record_range(self, rank: int, result: RangeResult) -> RangeState | None:
        """Book a range result; a failed range is requeued or declared fatal.

        Returns what the range became (FINISHED, FAILED: requeued, FATAL, or DROPPED: failed in a job
        that takes no more work, see `drop_queued`), or None for a result
        that does not match an assigned range (a duplicate or stray). The attempt it was for stays
        in the range's entry (``attempts``) until the range is handed out again.

        A range that failed for lack of disk space (1098, `hpcpilot.parallel.diskspace`) does not spend
        the attempt: it is queued again at the front with the same attempt number. A range that fails so
        more than ``max_attempts`` times is one that fills the disk itself: from then on such failures
        count as attempts.
        """
        book = self.jobs.get(result.panda_id)
        entry = book.ranges.get(result.range_id) if book else None
        if book is None or entry is None or entry.state is not RangeState.ASSIGNED:
            return None
        self.worker(rank).in_flight -= 1
        book.in_flight -= 1
        book.cpu_s += result.cpu_s
        if book.in_flight == 0:
            self._settled.add(result.panda_id)
        attempt = entry.attempts
        if result.state is RangeState.FINISHED:
            entry.state, entry.result = RangeState.FINISHED, result
            book.finished += 1
            book.n_events += result.n_events
            self.ranges_finished += 1
            if result.wall_s > 0:
                book.ranges_timed += 1
                book.ranges_timed_s += result.wall_s
            return RangeState.FINISHED
        if self._disk_full_again(book, entry, result):
            return RangeState.FAILED
        book.failed_attempts += 1
        self.ranges_failed_attempts += 1
        if book.stopped:  # the job takes no more work: the range is not retried here
            entry.state, entry.result = RangeState.DROPPED, result
            return RangeState.DROPPED
        if attempt >= self.max_attempts:
            entry.state, entry.result = RangeState.FATAL, result
            book.fatal += 1
            self.ranges_fatal += 1
            return RangeState.FATAL
        entry.state = RangeState.QUEUED
        book.queued += 1
        self.range_queue.append(RangeTask(result.panda_id, entry.event_range, attempt + 1))
        return RangeState.FAILED

    def _disk_full_again(self, book: JobBook, entry: RangeEntry, result: RangeResult) -> bool:
        """Queue a range that failed for lack of space again, attempts kept; False if it was not that."""
        if result.error_code is not ErrorCode.NO_LOCAL_SPACE or book.stopped:
            return False
        if entry.disk_full >= self.max_attempts:
            return False
        entry.disk_full += 1
        self.ranges_disk_full += 1
        entry.state = RangeState.QUEUED
        book.queued += 1
        self.range_queue.appendleft(RangeTask(result.panda_id, entry.event_range, entry.attempts))
        return True

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

    def return_ranges(self, tasks: tuple[RangeTask, ...], rank: int) -> None:
        """Take back ranges a worker received but did not start; they are queued again."""
        worker = self.worker(rank)
        for task in tasks:
            book = self.jobs.get(task.panda_id)
            entry = book.ranges.get(task.event_range.range_id) if book else None
            if book is None or entry is None or entry.state is not RangeState.ASSIGNED:
                continue
            book.in_flight -= 1
            worker.in_flight -= 1
            if book.stopped:
                entry.state = RangeState.DROPPED
                self._settled.add(task.panda_id)
                continue
            entry.state = RangeState.QUEUED
            book.queued += 1
            self.range_queue.appendleft(RangeTask(task.panda_id, entry.event_range, task.attempt))

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

    def reclaim(self, rank: int) -> tuple[RangeTask, ...]:
        """Take back what is still booked on a worker that said bye: work sent as its bye was on the way.

        Such a worker runs nothing more, so its ranges still assigned are queued again (the attempt is
        not counted) and its plain jobs too. Returns the ranges taken back.
        """
        worker = self.worker(rank)
        tasks = tuple(
            RangeTask(book.job.panda_id, entry.event_range, entry.attempts)
            for book in self.jobs.values()
            if book.in_flight
            for entry in book.ranges.values()
            if entry.state is RangeState.ASSIGNED and entry.rank == rank
        )
        if tasks:
            self.return_ranges(tasks, rank)
        if worker.plain:
            self.return_plain(tuple(sorted(worker.plain)), rank)
        return tasks

    def worker_lost(self, rank: int, diag: str, code: ErrorCode = ErrorCode.KILL_SIGNAL) -> LostWork:
        """A worker rank died: take back everything it had in flight and never give it work again.

        Each of its ranges is booked as a failed attempt (``code``, ``diag``) through `record_range`,
        so it is queued again, or fatal once it has used ``max_attempts``: a range that kills the rank
        running it (a payload that takes the node's memory) must not take down every rank in turn.
        Its plain jobs are queued again at the front, except those of jobs that take no more work
        (`drop_queued`): they fail with ``code`` unless they have an error already. The worker is
        stopped, its counters zeroed and its node forgotten (its cores no longer count in
        `total_cores`).

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
        for book in list(self.jobs.values()):
            held = [
                e.event_range.range_id
                for e in book.ranges.values()
                if e.state is RangeState.ASSIGNED and e.rank == rank
            ]
            for range_id in held:
                result = RangeResult(
                    book.job.panda_id, range_id, RangeState.FAILED, error_code=code, error_diag=diag
                )
                state = self.record_range(rank, result)
                if state is not None:
                    results.append((result, state))
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
