"""The coordinator (rank 0): gets work from the workload manager, hands it out, keeps the books.

An event loop driven by `Coordinator.step`: receive worker updates, book their results, answer
their requests, keep the range queue topped up from the communicator, finish jobs (merge, report), flush
the journal, show the status line, and stop the workers when all is done or a drain was asked for.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hpcpilot.comm.base import BadJob, Command, CommandKind, Communicator, JobReport, RangeBatch
from hpcpilot.config.schema import Settings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.errors import (
    CommunicatorError,
    DiskFullError,
    ErrorCode,
    HpcPilotError,
    StagingError,
)
from hpcpilot.model.job import Job, job_record
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.monitor.aggregate import JobFigures
from hpcpilot.parallel.books import Books, JobBook, JobPhase, Recorded, WorkerBook
from hpcpilot.parallel.diskspace import DiskWait
from hpcpilot.parallel.finishing import FinishingHooks, JobFinishing
from hpcpilot.parallel.messages import (
    Assignment,
    Farewell,
    Kill,
    Message,
    RangeResults,
    Stop,
    WorkerBye,
    WorkerLost,
    WorkerUpdate,
)
from hpcpilot.parallel.monitoring import RunMonitor
from hpcpilot.parallel.outcome import job_report
from hpcpilot.parallel.rangewait import RangeWait, WaitOver
from hpcpilot.parallel.reports import RangeReports
from hpcpilot.parallel.resume import FinishedRange, OpenJob, ResumeState
from hpcpilot.parallel.staging import JobStaging, Staged
from hpcpilot.parallel.status import Progress, RateMeter, format_status
from hpcpilot.parallel.summary import run_summary
from hpcpilot.parallel.transport import CoordinatorTransport
from hpcpilot.parallel.walltime import EndPlan
from hpcpilot.payload.exitcodes import signal_code
from hpcpilot.runtime.diskspace import is_disk_full
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.records import (
    AssignedRecord,
    DroppedRecord,
    ExhaustedRecord,
    FailedRecord,
    FatalRecord,
    FinishedRecord,
    JobRecord,
    LostRecord,
    RangesRecord,
    ReturnedRecord,
    WorkerRecord,
)

log = logging.getLogger(__name__)

#: Seconds before a range source that had nothing is asked again.
FETCH_RETRY_S = 0.05

#: Range outcomes waiting for their report that make the journal flush and the report go before
#: ``parallel.journal_flush_s`` is up: what waits is bounded in memory too (about 200 bytes each).
FLUSH_AT_PENDING = 16384


class Coordinator:
    """Rank 0's event loop.

    Parameters
    ----------
    transport
        Its end of the links to the workers.
    settings
        The effective settings.
    layout
        The work directory.
    communicator
        The workload manager.
    journal
        Where every range's state change is recorded.
    show_status
        Called with each status line.
    end_time
        When the allocation ends (seconds since the epoch), None without a limit.
    """

    def __init__(
        self,
        transport: CoordinatorTransport,
        settings: Settings,
        layout: WorkLayout,
        communicator: Communicator,
        journal: Journal,
        show_status: Callable[[str], None],
        end_time: float | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.layout = layout
        self.comm = communicator
        self.journal = journal
        self.show_status = show_status
        self.books = Books(settings.eventservice.max_attempts, settings.parallel.batch_size)
        for rank in transport.worker_ranks:
            self.books.worker(rank)
        self.jobs_exhausted = False
        self.fatal_error: HpcPilotError | None = None
        self.drain_code: ErrorCode | None = None
        self.stop_sent = False
        self.done = False
        self.started = time.monotonic()
        self.ended = 0.0
        self._hungry: set[int] = set()
        self._abandoned: set[int] = set()  # jobs the workload manager abandoned: nothing more is reported
        self.reports = RangeReports(
            communicator,
            lambda panda_id: self.books.jobs[panda_id].job,
            journal.write,
            self._sync_journal,
            self._on_full,
            self._abandoned,
        )
        self._next_flush = 0.0
        self._kept_back = 0  # outcomes the last flush could not report
        self._next_status = 0.0
        self._next_fetch = 0.0
        self._next_heartbeat = time.monotonic() + communicator.heartbeat_s
        self._slots = 0
        self._host = socket.gethostname()
        self._rate = RateMeter()
        self._bad_jobs: list[dict[str, Any]] = []
        self._queue_target = self._target()
        self.range_wait = RangeWait(settings.eventservice.range_wait_s)
        self.plan = EndPlan(
            None if end_time is None else self.started + end_time - time.time(),
            settings.batch.exit_margin_s,
            settings.payload.kill_grace_s,
        )
        self.kill_sent = False
        self.ranges_cut = 0
        self.staging = JobStaging(settings.data, layout)
        hooks = FinishingHooks(
            self.reports.flush, self._report_final, self._sync_journal, self._on_full, self._disk_full
        )
        resumes = communicator.resumes_ended_jobs
        self.finishing = JobFinishing(
            settings, layout, self.books, self.staging, hooks, resumes_ended_jobs=resumes
        )
        self.monitor = RunMonitor(settings.monitor, layout.root)
        self._skip_jobs: set[int] = set()
        self._bye_reasons: dict[int, int] = {}  # ranks that stopped on their own: why (a PanDA code)
        self.disk = DiskWait(settings.disk, settings.monitor, layout)
        self._finals: deque[tuple[JobReport, JobRecord]] = deque()  # final reports not sent yet
        self._last_writes = False

    # --- the loop -----------------------------------------------------------------------------

    def step(self) -> bool:
        """Do everything that can be done now; return whether anything happened."""
        progress = False
        for rank, message in self.transport.poll(256):
            self._on_message(rank, message)
            progress = True
        for command in self._poll_communicator():
            self._on_command(command)
            progress = True
        if self.comm.defers_reports:
            progress |= self.reports.journal_delivered_now()
        now = time.monotonic()
        progress |= self._watch_the_disk(now)
        progress |= self._watch_range_waits(now)  # before the end's drain: a wait it ends ends alike
        progress |= self._watch_the_end(now)
        if not self.books.draining and not self.books.paused:
            if now >= self._next_fetch:
                progress |= self._fetch_work(now)
            progress |= self._serve_hungry()
        progress |= self._collect_staged()
        progress |= self._finish_jobs()
        # early when many outcomes wait; those a failed report kept back do not count again
        piled_up = self.reports.pending >= FLUSH_AT_PENDING + self._kept_back
        if (now >= self._next_flush or piled_up) and not self.disk.full:  # else `_watch_the_disk` retries
            self._flush()
            self._kept_back = self.reports.pending
            self._next_flush = now + self.settings.parallel.journal_flush_s
        if now >= self._next_status:
            self._status(now)
            self._next_status = now + self.settings.run.status_interval_s
        self.monitor.tick(self.books.workers.values())
        if self.comm.heartbeat_s and now >= self._next_heartbeat:
            self._heartbeat()
            self._next_heartbeat = now + self.comm.heartbeat_s
        progress |= self._maybe_stop()
        return progress

    @property
    def expecting(self) -> bool:
        """Whether messages are due soon: work is out on the workers."""
        return bool(self.books.open) and not self.stop_sent

    def request_drain(self, signum: int) -> None:
        """A signal asked the run to end.

        SIGUSR1 is the batch system's warning: the allocation ends within ``batch.warning_lead_s``,
        and work goes on while it fits. Any other signal: start nothing new, kill what still runs after
        ``batch.term_grace_s``, report, exit.
        """
        now = time.monotonic()
        if signum == signal.SIGUSR1:
            lead = self.settings.batch.warning_lead_s
            log.warning("received SIGUSR1: the allocation ends within %.0f s", lead)
            self.plan.end_by(now + lead)
            return
        if self.drain_code is None or self.drain_code is ErrorCode.REACHED_MAX_TIME:
            log.warning("received %s: draining", signal.Signals(signum).name)
            self.drain_code = signal_code(signum)
            self.books.draining = True
        self.plan.cut_by(now + self.settings.batch.term_grace_s)

    # --- a full disk (hpcpilot.parallel.diskspace) --------------------------------------------

    def _disk_full(self, why: str) -> None:
        """The disk is full: hand out and fetch nothing more until there is space again."""
        if self.disk.enter(time.monotonic(), why):
            log.error(
                "disk full (1098 NO_LOCAL_SPACE): %s; no more work is handed out, waiting up to %.0f s "
                "for space",
                why,
                self.settings.disk.wait_s,
            )
        self.books.paused = True

    def _on_full(self, exc: BaseException, what: str) -> bool:
        """Take ``exc`` as a full disk if it is one (the run waits for space); False if it is not."""
        if not is_disk_full(exc):
            return False
        self._disk_full(f"{what}: {exc}")
        return True

    def _watch_the_disk(self, now: float) -> bool:
        """On a full disk: try the failed writes again now and then; go on when there is space, or drain.

        The wait lasts ``disk.wait_s`` and never past the point where no work fits before the end.
        """
        disk = self.disk
        if not disk.due(now):
            return False
        if self._flush() and disk.has_space():
            lasted = disk.leave(now)
            self.books.paused = False
            log.warning("space is back after %.0f s: the run goes on", lasted)
            return True
        plan = self.plan
        last = None if plan.kill_at is None else plan.kill_at - (plan.ranges.estimate() or 0.0)
        drain = not self.books.draining and disk.expired(now, last)
        if drain:
            log.error(
                "the disk stayed full for %.0f s: draining (1098 NO_LOCAL_SPACE): %s",
                now - (disk.since or now),
                disk.why,
            )
            self.drain_code = self.drain_code or ErrorCode.NO_LOCAL_SPACE
            self.books.draining = disk.drained = True
        disk.not_yet(now)
        return drain

    def _poll_communicator(self) -> tuple[Command, ...]:
        """The communicator's periodic work and commands (none this time when its files hit a full disk)."""
        try:
            return self.comm.poll()
        except OSError as exc:
            if not self._on_full(exc, "the communicator's files"):
                raise
            return ()

    def _sync_journal(self) -> bool:
        """Flush the journal; False on a full disk (its records stay queued for the next try)."""
        try:
            self.journal.flush()
        except DiskFullError as exc:
            self._disk_full(str(exc))
            return False
        return True

    # --- the end of the allocation ------------------------------------------------------------

    def _watch_the_end(self, now: float) -> bool:
        """Drain when no more work fits before the end; kill what still runs at the cut."""
        plan = self.plan
        if not self.books.draining and plan.nothing_fits(now):
            left = (plan.end - now) if plan.end is not None else 0.0
            log.warning(
                "the allocation ends in %.0f s: no more work fits, draining (ranges take about %.1f s)",
                left,
                plan.ranges.estimate() or 0.0,
            )
            self.drain_code = self.drain_code or ErrorCode.REACHED_MAX_TIME
            self.books.draining = True
            return True
        if self.kill_sent or not plan.due(now):
            return False
        self.kill_sent = True
        code = self.drain_code or ErrorCode.REACHED_MAX_TIME
        grace = self.settings.payload.kill_grace_s
        diag = f"cut at the end of the run ({code.name}): killed with {grace:g} s grace"
        window = plan.spare_window(now)
        means = ((b.job.panda_id, b.range_s) for b in self.books.open.values())
        expected = tuple((p, s) for p, s in means if s is not None) if window > 0 else ()
        stop = Stop(True, True, int(code), diag, window, expected)
        busy = [w for w in self.books.workers.values() if not w.stopped and (w.busy_slots or w.in_flight)]
        if busy:
            log.warning(
                "the end has come: killing the payloads still running on %d rank(s)%s",
                len(busy),
                f" but ranges expected to end within {window:.1f} s" if stop.expected_s else "",
            )
        for worker in self.books.workers.values():
            if not worker.stopped:
                self.transport.send(worker.rank, stop)
        self.finishing.kill_merges(self.settings.payload.kill_grace_s)
        return True

    # --- waiting for ranges (hpcpilot.parallel.rangewait) ------------------------------------

    def _watch_range_waits(self, now: float) -> bool:
        """End the feed of event-service jobs that waited ``eventservice.range_wait_s`` for ranges.

        The end of the allocation ends the wait too (for a job that never had a range: one that had
        some is drained like any other).
        """
        books = self.books
        if books.draining or not books.feeding:
            return False
        nothing_fits = self.plan.nothing_fits(now)
        progress = False
        for book in list(books.feeding.values()):
            busy = (
                books.paused
                or book.queued > 0
                or book.in_flight > 0
                or bool(book.held)
                or book.phase is JobPhase.STAGING_IN
            )
            over = self.range_wait.check(book.job.panda_id, now, busy, nothing_fits and not book.ranges)
            if over is not None:
                self._end_range_wait(book, over)
                progress = True
        return progress

    def _end_range_wait(self, book: JobBook, over: WaitOver) -> None:
        """No more ranges for a job that waited too long: with none at all, it fails with 1238."""
        panda_id = book.job.panda_id
        self.books.exhaust(book)
        self.journal.write(ExhaustedRecord(panda_id))
        if book.ranges:
            log.warning(
                "job %d: no more event ranges arrived in %.0f s (eventservice.range_wait_s): it ends with "
                "the %d range(s) it had",
                panda_id,
                over.waited_s,
                len(book.ranges),
            )
            return
        diag = over.diag(self.comm.range_wait_hint(book.job))
        book.fail(ErrorCode.ES_NO_EVENTS, diag)
        log.error("job %d: %s (1238 ES_NO_EVENTS)", panda_id, diag)

    def _range_limit(self, rank: int, now: float) -> int | None:
        """How many ranges a worker may still take before the end (None: no limit)."""
        worker = self.books.worker(rank)
        head = self.books.next_queued_job()
        if worker.node is None or head is None:
            return None
        cores = head.job.core_count
        return self.plan.range_budget(now, max(worker.node.cores // max(cores, 1), 1), worker.in_flight)

    def _plain_fits(self, job: Job) -> bool:
        """Whether a plain job is expected to end before the cut (by its ``maxWalltime``)."""
        return self.plan.fits(time.monotonic(), job.max_walltime_s)

    # --- messages -----------------------------------------------------------------------------

    def _on_message(self, rank: int, message: Message) -> None:
        if isinstance(message, WorkerUpdate):
            self._on_update(rank, message)
        elif isinstance(message, WorkerBye):
            self._on_bye(rank, message)
        elif isinstance(message, WorkerLost):
            self.worker_lost(rank, message.why)
        else:
            log.warning("unexpected %s from rank %d", type(message).__name__, rank)

    def _on_update(self, rank: int, update: WorkerUpdate) -> None:
        worker = self.books.worker(rank)
        if update.node is not None:
            worker.node = update.node
            self._queue_target = self._target()
            self._update_slots()
            node = update.node
            log.debug("rank %d on %s: %d cores, %d GPU(s)", rank, node.host, node.cores, node.gpus)
            self.journal.write(
                WorkerRecord(
                    rank, node.host, node.cores, node.gpus, node.gpu_vendor, node.gpu_source, node.peers
                )
            )
        self.monitor.fold(worker, update.samples)  # before the results: a job they end has them
        for line in update.logs:
            log.warning("[rank %d] %s", rank, line)
        if update.ranges:
            self._book_ranges(rank, update.ranges)
        for payload in update.payloads:
            if payload.error_code is ErrorCode.NO_LOCAL_SPACE:
                self._disk_full(f"job {payload.panda_id} on rank {rank}: {payload.error_diag[-200:]}")
            book = self.books.record_payload(rank, payload)
            if book is not None:
                self._finish_job(book)
        worker.busy_slots = update.busy_slots
        worker.free_cores = update.free_cores
        self.monitor.on_update(worker, self._worker_slots(worker))
        if update.want_cores > 0:  # a new request replaces what was left of the last one
            worker.want_cores = update.want_cores
            self._hungry.add(rank)
            self._serve(rank)

    def _on_bye(self, rank: int, bye: WorkerBye) -> None:
        self._on_update(rank, bye.update)
        worker = self.books.worker(rank)
        if bye.reason == ErrorCode.NO_LOCAL_SPACE:
            self._disk_full(f"rank {rank}'s disk stayed full")
        if bye.reason:
            self._bye_reasons[rank] = bye.reason
            log.warning(
                "rank %d stopped on its own (%s): its unstarted work goes to others",
                rank,
                _code_name(bye.reason),
            )
        elif not self.stop_sent:
            log.warning(
                "rank %d stopped on its own (a signal reached it): its unstarted work goes to others", rank
            )
        worker.stopped = True
        worker.busy_core_s = bye.busy_core_s
        worker.busy_slots = 0
        self.monitor.on_update(worker, self._worker_slots(worker), force=True)
        self._hungry.discard(rank)
        returned = self.books.return_ranges(bye.returned, rank) if bye.returned else []
        if bye.returned_plain:
            self.books.return_plain(bye.returned_plain, rank)
        crossed = self.books.reclaim(rank)  # sent to it while its bye was on the way
        for panda_id, ids in returned + crossed:
            self.journal.write(ReturnedRecord(panda_id, tuple(ids)))
        self.transport.send(rank, Farewell(rank))  # nothing more goes to this rank

    def worker_lost(self, rank: int, why: str) -> None:
        """A worker rank died (MPI with fault tolerance said so): its work in flight goes to others.

        Its ranges are failed attempts (journalled and reported like any failure) and are queued again;
        its plain jobs are queued again; the run goes on with the remaining ranks.
        """
        worker = self.books.worker(rank)
        if worker.lost:
            return
        host = worker.node.host if worker.node is not None else "unknown host"
        lost = self.books.worker_lost(rank, f"worker rank {rank} ({host}) lost: {why}")
        log.error(
            "worker rank %d (%s) lost: %s; %d range(s) and %d plain job(s) it had go back to the queue",
            rank,
            host,
            why,
            len(lost.ranges),
            len(lost.plain),
        )
        self.journal.write(LostRecord(rank, host, why))
        self._hungry.discard(rank)
        for result, state in lost.ranges:
            self.reports.add(result)
            self._journal_failure(result, state)
        for panda_id in lost.plain:
            self.journal.write(ReturnedRecord(panda_id))
        for panda_id in lost.failed_plain:
            self._finish_job(self.books.jobs[panda_id])
        self._queue_target = self._target()
        self._update_slots()

    def _book_ranges(self, rank: int, batches: tuple[RangeResults, ...]) -> None:
        """Book a worker's range results; journal the finished ones as one record per job and batch."""
        for batch in batches:
            recorded = self.books.record_results(rank, batch)
            for range_id in recorded.stray:
                log.warning("ignoring a result for range %s from rank %d: not assigned there", range_id, rank)
            if recorded.finished:
                self._book_finished(rank, batch, recorded)
            for result, state in recorded.failed:
                self._book_failure(rank, result, state)

    def _book_finished(self, rank: int, batch: RangeResults, recorded: Recorded) -> None:
        """Journal (one record) and queue for the report the ranges of a batch that finished."""
        panda_id = batch.panda_id
        table = self.books.jobs[panda_id].ranges
        ids = table.range_ids(recorded.indices)
        outputs = table.outputs(recorded.indices, ids)
        wall = batch.wall_s
        self.plan.observe_ranges([wall[pos] for pos in recorded.finished])
        self.journal.gather(
            FinishedRecord(
                panda_id,
                rank,
                tuple(ids),
                paths=tuple(o[0] if o else None for o in outputs),
                fsize=tuple(o[1] if o else None for o in outputs),
                adler32=tuple(o[2] if o else None for o in outputs),
                nevents=tuple(batch.nevents[pos] for pos in recorded.finished),
            )
        )
        add = self.reports.add
        for rid, out, pos in zip(ids, outputs, recorded.finished, strict=True):
            output = OutputFile(*out) if out is not None else None
            add(
                RangeResult(
                    panda_id,
                    rid,
                    RangeState.FINISHED,
                    output,
                    batch.nevents[pos],
                    wall_s=wall[pos],
                    cpu_s=batch.cpu_s[pos],
                )
            )

    def _book_failure(self, rank: int, result: RangeResult, state: RangeState) -> None:
        """Journal and queue for the report a failed attempt (a full disk pauses the run)."""
        self.reports.add(result)
        if result.error_code is ErrorCode.NO_LOCAL_SPACE:
            self._disk_full(f"range {result.range_id} on rank {rank}: {result.error_diag[-200:]}")
            self.disk.requeued += state is RangeState.FAILED
        self._journal_failure(result, state)
        if self.kill_sent and result.error_code is not None and state is not RangeState.FATAL:
            self.reports.add_cut(result.panda_id, result.range_id)
            self.ranges_cut += 1

    def _journal_failure(self, r: RangeResult, state: RangeState) -> None:
        attempt = self.books.attempt_of(r.panda_id, r.range_id)
        code = int(r.error_code) if r.error_code is not None else None
        self.journal.write(FailedRecord(r.panda_id, r.range_id, attempt, code, r.error_diag[-300:]))
        if state is RangeState.DROPPED:
            self.journal.write(DroppedRecord(r.panda_id, (r.range_id,)))
        if state is RangeState.FATAL:
            self.reports.add_fatal(r.panda_id, r.range_id)
            self.journal.write(FatalRecord(r.panda_id, r.range_id, code))
            log.warning(
                "range %s of job %d is fatal after %d attempts: %s",
                r.range_id,
                r.panda_id,
                attempt,
                r.error_diag[-200:],
            )

    # --- commands from the workload manager ---------------------------------------------------

    def _on_command(self, command: Command) -> None:
        """Carry out a softkill, tobekilled or abandon, for one job or (not abandon) for the whole run."""
        what = f"job {command.panda_id}" if command.panda_id is not None else "the whole run"
        why = f": {command.reason}" if command.reason else ""
        log.warning("%s for %s (%s)%s", command.kind.value, what, command.source or "workload manager", why)
        if command.kind is CommandKind.ABANDON and command.panda_id is None:
            log.warning("abandon names no job: ignored")
            return
        if command.panda_id is None:
            self.jobs_exhausted = True
            if command.kind is CommandKind.TOBEKILLED:
                self.drain_code = self.drain_code or ErrorCode.KILLED_BY_PANDA
                self.books.draining = True
                return
            for open_book in self.books.open_jobs():
                self._stop_taking(open_book, command)
            return
        book = self.books.open.get(command.panda_id)
        if book is None:
            log.warning(
                "%s for job %d ignored: no such job is running here", command.kind.value, command.panda_id
            )
            return
        self._stop_taking(book, command)

    def _stop_taking(self, book: JobBook, command: Command) -> None:
        """No new work for a job; a killed job fails with 1144 once its work in flight is back."""
        panda_id = book.job.panda_id
        dropped = self.books.drop_queued(book)
        if dropped:
            self.journal.write(DroppedRecord(panda_id, tuple(dropped)))
        if command.kind is CommandKind.ABANDON:
            # stopped like tobekilled, but nothing more about the job goes to the workload manager
            self._abandoned.add(panda_id)
            book.fail(
                ErrorCode.KILLED_BY_PANDA,
                f"abandoned: {command.reason or 'the workload manager ended the job'}",
            )
        elif command.kind is CommandKind.TOBEKILLED:
            book.fail(
                ErrorCode.KILLED_BY_PANDA,
                f"killed by the workload manager (tobekilled, {command.source or 'server'})",
            )
        if command.kind in (CommandKind.TOBEKILLED, CommandKind.ABANDON):
            for worker in self.books.workers.values():
                if panda_id in worker.known_jobs and not worker.stopped:
                    self.transport.send(worker.rank, Kill((panda_id,)))
        waiting = book.phase is JobPhase.STAGING_IN or (
            not book.job.event_service and book.in_flight == 0 and book.phase is JobPhase.QUEUED
        )
        if waiting:
            book.fail(ErrorCode.KILLED_BY_PANDA, f"{command.kind.value} before the job started")
            self._finish_job(book)

    def _heartbeat(self) -> None:
        """Report every open job's current state (``running`` heartbeats)."""
        for book in self.books.open_jobs():
            if book.job.panda_id in self._abandoned:
                continue
            try:
                self.comm.report_job(job_report(book, self._host, self._figures(book)))
            except OSError as exc:
                if not self._on_full(exc, "a heartbeat"):
                    raise
                return

    def _figures(self, book: JobBook) -> JobFigures:
        """A job's resource figures from the monitors' samples."""
        return self.monitor.figures(book.job.panda_id, (book.ended or time.time()) - book.started)

    def _worker_slots(self, worker: WorkerBook, per_slot: int | None = None) -> int:
        """How many items a worker can run at once, of ``per_slot`` cores (default: `_slot_cores`).

        At least one: an item that asks for more cores than the node has gets the whole node.
        """
        if worker.node is None:
            return 0
        return max(worker.node.cores // max(per_slot or self._slot_cores(), 1), 1)

    def _slot_cores(self) -> int:
        """Cores of the smallest slot: the smallest core count of the open jobs (1 without any)."""
        return min((b.job.core_count for b in self.books.open.values()), default=1)

    def _update_slots(self) -> None:
        slots = self.books.total_cores
        if slots != self._slots:
            self._slots = slots
            self.comm.set_slots(slots)

    # --- handing out work ---------------------------------------------------------------------

    def _serve(self, rank: int) -> bool:
        assignment = self.books.assign(rank, self._range_limit(rank, time.monotonic()), self._plain_fits)
        if assignment is None:
            return False
        worker = self.books.worker(rank)
        if not self.books.wants(worker):
            self._hungry.discard(rank)  # else what is left of its request stands
        finished = self._finished_jobs_known_by(rank)
        if finished:
            assignment = Assignment(assignment.jobs, assignment.ranges, assignment.plain, finished)
        self.transport.send(rank, assignment)
        ids: dict[int, list[str]] = {}
        for work in assignment.ranges:
            table = self.books.jobs[work.panda_id].ranges
            ids.setdefault(work.panda_id, []).extend(table.range_ids(range(work.start, work.stop)))
        for panda_id, assigned in ids.items():
            self.journal.gather(AssignedRecord(panda_id, rank, tuple(assigned)))
        for panda_id in assignment.plain:
            self.journal.gather(AssignedRecord(panda_id, rank))
        return True

    def _serve_hungry(self) -> bool:
        if not self._hungry or not (self.books.range_queue or self.books.plain_queue):
            return False
        progress = False
        for rank in sorted(self._hungry):
            progress |= self._serve(rank)
        return progress

    def _finished_jobs_known_by(self, rank: int) -> tuple[int, ...]:
        worker = self.books.worker(rank)
        finished = tuple(p for p in worker.known_jobs if self.books.jobs[p].ranges_done)
        worker.known_jobs.difference_update(finished)
        return finished

    def _target(self) -> int:
        """How many ranges rank 0 keeps queued: enough for every slot's prefetch, twice over.

        Not what sizes requests to the workload manager (`hpcpilot.comm.prefetch` does that): the
        PanDA communicator hands out at most what this asks for, and a range it received is journaled
        only once handed out, so a shallower queue would leave received ranges unjournaled (lost to a
        kill) for longer.
        """
        cores = self.books.total_cores or len(self.transport.worker_ranks)
        per_worker = self.settings.parallel.batch_size
        return max(
            2 * cores * (1 + self.settings.eventservice.prefetch_per_slot),
            per_worker * len(self.transport.worker_ranks),
            16,
        )

    def _fetch_work(self, now: float) -> bool:
        """Get jobs, and ranges when the queue is below half its target (then fill it up).

        Only a source that was asked and had nothing is asked again later (``FETCH_RETRY_S``); a full
        queue is looked at again on the next step.
        """
        progress = self._fetch_jobs() if not self.jobs_exhausted else False
        target = self._queue_target
        books = self.books
        asked = False
        if books.ranges_queued * 2 < target:
            for book in list(books.feeding.values()):
                if books.ranges_queued >= target:
                    break
                asked = True
                progress |= self._fetch_ranges(book, target - books.ranges_queued)
        self._next_fetch = now + (FETCH_RETRY_S if asked and not progress else 0.0)
        return progress

    def _fetch_jobs(self) -> bool:
        limit = self.settings.run.max_jobs
        n = limit - len(self.books.jobs) if limit else 100
        if n <= 0:
            self.jobs_exhausted = True
            return False
        try:
            batch = self.comm.fetch_jobs(n)
        except CommunicatorError as exc:
            if not self.books.jobs:
                self._fail_run(exc)
            else:
                log.warning("could not fetch jobs: %s", exc)
            return False
        self.jobs_exhausted = batch.exhausted
        for bad in batch.bad:
            self._fail_bad_job(bad)
        added = False
        for job in batch.jobs:
            if job.panda_id in self._skip_jobs or job.panda_id in self.books.jobs:
                continue  # done before a resume, or restored from the journal
            self._add_job(job)
            added = True
        return added or bool(batch.bad)

    def _fail_bad_job(self, bad: BadJob) -> None:
        """A job definition that could not be parsed fails alone (reported when its PandaID is known)."""
        log.error("bad job definition: %s", bad.error)
        if bad.panda_id is None:
            return
        code, diag, now = int(bad.error.code), str(bad.error), time.time()
        report = JobReport(bad.panda_id, JobState.FAILED, code, diag, start_time=now, end_time=now)
        self._finals.append((report, JobRecord(bad.panda_id, "failed", code)))
        self._send_finals()
        self._bad_jobs.append({"PandaID": bad.panda_id, "error_code": code, "error_diag": diag})

    def _add_job(self, job: Job, resumed: bool = False) -> None:
        job_dir = self.layout.job_dir(job.panda_id)
        try:
            self.layout.payload_log_dir(job.panda_id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # made by the first payload then (`hpcpilot.payload.base.open_log`)
            if not self._on_full(exc, f"job {job.panda_id}'s directory"):
                raise
        try:
            staging = self.staging.stage_in(job)
            error = None
        except StagingError as exc:
            staging, error = False, exc
        book = self.books.add_job(job, staging=staging or error is not None)
        if job.event_service:
            book.ranges_expected = self.comm.ranges_expected(job)
        log.info(
            "job %d: %s, %d core(s) per payload, in %s%s",
            job.panda_id,
            "event service" if job.event_service else "plain",
            job.core_count,
            job_dir,
            ", inputs staging in" if staging else "",
        )
        state = JobState.RUNNING if resumed else JobState.STARTING  # a resumed job never goes back
        self.comm.report_job(
            JobReport(job.panda_id, state, start_time=time.time(), core_count=job.core_count)
        )
        self.journal.write(JobRecord(job.panda_id, book.state.value, definition=job_record(job)))
        if error is not None:
            self._fail_before_start(book, error.code, str(error))

    def _fail_before_start(self, book: JobBook, code: ErrorCode, diag: str) -> None:
        """A job that cannot start (its inputs cannot be had): it fails alone, the run goes on."""
        book.fail(code, diag)
        self._finish_job(book)

    def _collect_staged(self) -> bool:
        """Release jobs whose inputs arrived, report jobs whose outputs left; fail those that failed."""
        done = self.staging.poll()
        for staged in done:
            book = self.books.jobs.get(staged.panda_id)
            if book is None:
                continue
            error = staged.error()
            if error is not None and error[0] is ErrorCode.NO_LOCAL_SPACE:
                self._disk_full(f"job {staged.panda_id}'s files: {error[1][-200:]}")
            if staged.inbound:
                self._inputs_staged(book, staged, error)
            elif book.phase is JobPhase.STAGING_OUT:
                self.finishing.staged_out(book, error)
        return bool(done)

    def _inputs_staged(self, book: JobBook, staged: Staged, error: tuple[ErrorCode, str] | None) -> None:
        if book.phase is not JobPhase.STAGING_IN:
            return  # killed or drained while its inputs were on their way
        if error is not None:
            log.error("job %d: stage-in failed: %s", book.job.panda_id, error[1])
            self._fail_before_start(book, *error)
            return
        log.info("job %d: %d input file(s) staged in", book.job.panda_id, len(staged.results))
        self.books.release(book)

    def _fetch_ranges(self, book: JobBook, n: int) -> bool:
        try:
            batch = self.comm.fetch_ranges(book.job, n)
        except HpcPilotError as exc:
            log.error("job %d: cannot get event ranges: %s", book.job.panda_id, exc)
            self.books.exhaust(book)
            book.fail(exc.code, str(exc))
            self.journal.write(ExhaustedRecord(book.job.panda_id))
            return True
        for error in batch.errors:
            log.error("job %d: refused a malformed event range (not run): %s", book.job.panda_id, error)
        added = self._add_ranges(book, batch)
        if batch.exhausted:
            self.books.exhaust(book)
        return added > 0 or batch.exhausted

    # --- finishing jobs -----------------------------------------------------------------------

    def _finish_jobs(self) -> bool:
        return self.finishing.step()

    def _finish_job(self, book: JobBook) -> None:
        """Finish a job now (`JobFinishing.finish`): final state, log tarball, stage-out, report."""
        self.finishing.finish(book)

    def _report_final(self, book: JobBook) -> None:
        """Report the job's final state and journal it."""
        job = book.job
        self.books.mark_done(book)
        code = int(book.error_code) if book.error_code is not None else 0
        resumable = book.resumable and book.state is JobState.FAILED
        record = JobRecord(job.panda_id, book.state.value, code, resumable=resumable)
        self._finals.append((job_report(book, self._host, self._figures(book)), record))
        self._send_finals()
        settled = self.finishing.settled_for(job.panda_id)
        if settled is not None:
            self.plan.observe_finish(settled)
        log.info(
            "job %d %s%s",
            job.panda_id,
            book.state.value,
            f" (error {code}: {book.error_diag})" if code else "",
        )

    def _send_finals(self) -> bool:
        """Send the final reports not sent yet, in order, each followed by its journal record (flushed).

        A report that meets a full disk (the local communicator's ``results.json``, Harvester's files)
        waits with those after it for the next try; False then.
        """
        while self._finals:
            report, record = self._finals[0]
            try:
                if report.panda_id not in self._abandoned:  # an abandoned job is only journaled
                    self.comm.report_job(report)
            except OSError as exc:
                if not self._on_full(exc, f"the final report of job {report.panda_id}"):
                    raise
                return False
            self._finals.popleft()
            self.journal.write(record)
            self._sync_journal()  # a resumed run must not take up a job whose end was reported
        return True

    # --- periodic work ------------------------------------------------------------------------

    def _flush(self) -> bool:
        """Flush the journal, then report ranges: a range is always journaled before it is reported.

        Returns False when a write met a full disk (what was not written is tried again later).
        """
        if not self._sync_journal():
            return False
        reported = self.reports.flush_all(journaled=True)
        self.reports.journal_delivered()
        sent = self._send_finals()
        return self._sync_journal() and reported and sent  # "reported": narrows a second report

    def progress(self) -> Progress:
        """A snapshot of the run."""
        books = self.books
        per_slot = self._slot_cores()
        slots = sum(self._worker_slots(worker, per_slot) for worker in books.workers.values())
        done_jobs = len(books.jobs) - len(books.open)
        return Progress(
            elapsed_s=time.monotonic() - self.started,
            ranges_done=books.ranges_finished + books.ranges_fatal,
            ranges_total=books.ranges_total,
            ranges_failed=books.ranges_fatal,
            jobs_done=done_jobs + len(self._bad_jobs),
            jobs_total=len(books.jobs) + len(self._bad_jobs),
            busy_slots=books.busy_slots,
            total_slots=slots,
            failed_attempts=books.ranges_failed_attempts,
        )

    def _status(self, now: float) -> None:
        p = self.progress()
        self.show_status(format_status(p, self._rate.add(now, p.ranges_done)))

    # --- the end ------------------------------------------------------------------------------

    def _fail_run(self, error: HpcPilotError) -> None:
        log.error("%s", error)
        self.fatal_error = error
        self.books.draining = True

    def _all_work_done(self) -> bool:
        return self.jobs_exhausted and not self.books.open

    def _maybe_stop(self) -> bool:
        books = self.books
        if not self.stop_sent and not books.draining and all(w.stopped for w in books.workers.values()):
            reasons = {self._bye_reasons.get(w.rank, 0) for w in books.workers.values()}
            reason = ErrorCode(reasons.pop()) if len(reasons) == 1 and 0 not in reasons else None
            log.error(
                "every worker rank has stopped%s: ending the run",
                f" ({_code_name(reason)})" if reason else "",
            )
            self.drain_code = self.drain_code or reason or ErrorCode.KILL_SIGNAL
            books.draining = True
        if not self.stop_sent and (books.draining or self._all_work_done()):
            drain = books.draining
            kill = self.drain_code is ErrorCode.KILLED_BY_PANDA
            for rank in self.transport.worker_ranks:
                if not books.worker(rank).stopped:
                    self.transport.send(rank, Stop(drain=drain, kill=kill))
            self.stop_sent = True
            return True
        if self.stop_sent and all(w.stopped for w in books.workers.values()):
            finishing = self.finishing.merging or self.staging.busy
            if books.draining and finishing and not self.kill_sent and self.plan.kill_at is not None:
                return False  # merges and stage-out of jobs that are done may finish until the cut
            if not self._last_writes:
                self._last_writes = True
                if self.disk.full:
                    self.disk.release_reserve()  # nothing runs any more: the space is for the records
                if books.draining:
                    self._end_drained_jobs()
                self._flush()
            if self.disk.full and self._writes_pending():
                if not self.disk.expired(time.monotonic(), self.plan.kill_at):
                    return False  # `_watch_the_disk` tries the writes again until there is space
                self._give_up_writing()
            self.monitor.close()
            self.transport.flush()
            self.ended = time.monotonic()
            self._status(self.ended)
            self.done = True
            return True
        return False

    def _writes_pending(self) -> bool:
        """Whether journal records, final reports or range outcomes wait to be written."""
        return bool(self.journal.pending or self._finals or self.reports.pending)

    def _give_up_writing(self) -> None:
        """The disk stayed full to the end: say what could not be written (it is lost)."""
        unreported = self.reports.pending
        log.error(
            "the disk is still full: %d journal record(s), %d final job report(s) and %d range "
            "outcome(s) could not be written",
            self.journal.pending,
            len(self._finals),
            unreported,
        )

    def _end_drained_jobs(self) -> None:
        code = self.drain_code or (self.fatal_error.code if self.fatal_error else ErrorCode.GENERAL_ERROR)
        # the run cut them short (a full disk, a signal, the walltime; not the workload manager): a
        # resumed run finishes them where nobody else hands out their work
        drained = self.drain_code is not None and self.drain_code is not ErrorCode.KILLED_BY_PANDA
        resumable = drained and self.comm.resumes_ended_jobs
        why = "disk full, NO_LOCAL_SPACE" if code is ErrorCode.NO_LOCAL_SPACE else code.name
        self.finishing.kill_merges(self.settings.payload.kill_grace_s, forget=True)
        self.staging.close(wait=False)
        for book in self.books.open_jobs():
            if book.phase is JobPhase.STAGING_OUT:
                why_out = f"run ended early ({why}) during stage-out"
                book.fail(ErrorCode.STAGE_OUT_TIMEOUT, why_out, resumable=resumable)
                book.conclude()
                self._report_final(book)
                continue
            left = book.queued + book.in_flight + book.unfetched
            during = " (during stage-in)" if book.phase is JobPhase.STAGING_IN else ""
            diag = f"run ended early ({why}){during}: {left} work item(s) not done"
            if resumable:
                free = "free space, then " if code is ErrorCode.NO_LOCAL_SPACE else ""
                diag += f"; {free}'run --resume' finishes it"
            book.fail(code, diag, resumable=resumable)  # an earlier failure of the job stays its own
            self._finish_job(book)

    # --- the summary --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The end-of-run summary (written to ``summary.json`` and printed)."""
        summary = run_summary(
            self.books,
            workdir=str(self.layout.root),
            wall_s=(self.ended or time.monotonic()) - self.started,
            bad_jobs=self._bad_jobs,
            drained_by=self.drain_code.name if self.drain_code else None,
            error=str(self.fatal_error) if self.fatal_error else None,
            messages=self.transport.counts.summary(),
            cut=self.ranges_cut,
        )
        summary["disk"] = self.disk.summary(time.monotonic())
        return summary

    # --- resuming -----------------------------------------------------------------------------

    def _add_ranges(self, book: JobBook, batch: RangeBatch) -> int:
        """Book and journal the ranges new to the job (and the end of its feed), flushed at once.

        A range taken from the workload manager is thus never lost to a kill: ``--resume`` knows it.
        A communicator that serves the same ranges again (`Communicator.replays_ranges`) needs no
        flush of its own: the records go with the next periodic one. Returns how many were new.
        """
        panda_id = book.job.panda_id
        table = book.ranges
        before = table.n
        added = self.books.add_ranges(panda_id, batch.ranges) if batch.ranges else 0
        if batch.cut is not None:
            added += self.books.add_cut(panda_id, batch.cut.cut, batch.cut.start, batch.cut.stop)
        if added:
            columns = table.columns(range(before, table.n))
            self.journal.write(RangesRecord.of(panda_id, columns))
        if batch.exhausted:
            self.journal.write(ExhaustedRecord(panda_id))
        if (added or batch.exhausted) and not self.comm.replays_ranges:
            self._sync_journal()
        return added

    def restore(self, state: ResumeState) -> None:
        """Take up what a killed run left (`hpcpilot.parallel.resume`), before the loop starts.

        Done jobs are never run again (also when the communicator serves them again), and the
        communicator counts them as fetched (`Communicator.adopt_done`). Each open job is
        added again and told to the communicator (`Communicator.adopt`); its ranges are booked as the
        journal left them: finished and reported ones stay finished (not rerun, not reported again,
        their outputs merged), finished but unreported ones are verified (the output exists and its
        adler32 is the journaled one) and reported, or else run again; fatal ones stay fatal; every
        other range is queued, with the attempts it already used.
        """
        self._skip_jobs = set(state.done)
        self.comm.adopt_done(state.done)  # read and ended before: a resumed run does not wait for them
        for open_job in state.open:
            job = open_job.job
            final = self.comm.adopt(job, open_job.exhausted)
            if open_job.ended_early and final is JobState.FAILED:
                final = None  # the failure the run before reported as it ended the job early
            if final is not None:  # reported just before the kill, before the journal said so
                log.info(
                    "job %d: the workload manager has its final state (%s) already", job.panda_id, final.value
                )
                self._skip_jobs.add(job.panda_id)
                self.journal.write(JobRecord(job.panda_id, final.value))
                continue
            self._add_job(job, resumed=True)
            book = self.books.jobs[job.panda_id]
            if book.state is JobState.STARTING:
                book.mark_running()  # as reported before the kill: heartbeats never go back
            if book.phase is JobPhase.DONE or not job.event_service:
                continue
            rerun = self._restore_ranges(book, open_job)
            if open_job.exhausted:
                self.books.exhaust(book)
            log.info(
                "job %d resumed%s: %d range(s) finished before, %d to run%s",
                job.panda_id,
                " (the run before ended it early)" if open_job.ended_early else "",
                book.finished,
                book.queued,
                f" ({rerun} finished but unverifiable: run again)" if rerun else "",
            )

    def _restore_ranges(self, book: JobBook, open_job: OpenJob) -> int:
        panda_id = book.job.panda_id
        rerun = 0
        for rng in open_job.ranges:
            rid = rng.range_id
            failed = open_job.failed.get(rid, 0)
            done = open_job.finished.get(rid)
            outcome: RangeResult | None = None
            if done is not None and (done.reported or _output_intact(done)):
                output = None
                if done.path is not None:
                    output = OutputFile(done.path, done.fsize or 0, done.adler32 or "")
                outcome = RangeResult(panda_id, rid, RangeState.FINISHED, output, done.nevents)
                if not done.reported:
                    self.reports.add(outcome)
            elif done is not None:
                rerun += 1
                log.warning("job %d: output of range %s is missing or changed: run again", panda_id, rid)
            elif rid in open_job.fatal:
                outcome = RangeResult(panda_id, rid, RangeState.FATAL)
                if not open_job.fatal[rid]:
                    self.reports.add_fatal(panda_id, rid)
            self.books.restore_range(panda_id, rng, failed, outcome)
        return rerun


def _output_intact(done: FinishedRange) -> bool:
    """Whether a finished range's journaled output is there with the journaled adler32."""
    if done.path is None:
        return True
    try:
        return adler32_of_file(done.path) == done.adler32
    except OSError:
        return False


def _code_name(code: int) -> str:
    """``1098 NO_LOCAL_SPACE`` (the number alone for a code hpcpilot does not know)."""
    try:
        return f"{code} {ErrorCode(code).name}"
    except ValueError:
        return str(code)
