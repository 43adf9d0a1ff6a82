"""Finishing jobs on rank 0: merge, final state, log tarball, stage-out, then the final report.

An event-service job whose ranges are all final (`Books.take_settled`) has its range outputs merged
(a `MergeProcess` per job, polled: rank 0 never waits for it); a plain job whose payload ended, or
any job the run ends, goes straight on. Finishing a job decides its final state (`JobBook.conclude`,
`settle_event_service`), reports its range outcomes, packs its payload logs into its ``logFile``,
starts the stage-out of its files and, when nothing is to be moved (or once the stage-out is over,
`JobFinishing.staged_out`), hands it to the coordinator's final report.

The coordinator keeps what it shares with the rest of the run and passes it in (`FinishingHooks`): the
journal, the reports to the workload manager, and what a full disk does to the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpcpilot.config.schema import Settings
from hpcpilot.data.archive import make_tarball
from hpcpilot.model.errors import ErrorCode, HpcPilotError, PayloadError, StagingError
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.results import OutputFile
from hpcpilot.model.states import JobState
from hpcpilot.parallel.books import Books, JobBook
from hpcpilot.parallel.outcome import finished_outputs, merge_inputs, settle_event_service
from hpcpilot.parallel.staging import JobStaging
from hpcpilot.payload.merge_run import MergeProcess, choose_merger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishingHooks:
    """What finishing a job needs of the coordinator.

    Attributes
    ----------
    report_ranges
        Report a job's range outcomes not reported yet (by PandaID), before its final report.
    report_final
        Report a job's final state and journal it (the job is done).
    sync_journal
        Flush the journal; False on a full disk.
    on_full
        Take an exception as a full disk if it is one (the run waits for space); False if it is not.
    disk_full
        The disk is full (why): the run hands out nothing more until there is space.
    """

    report_ranges: Callable[[int], object]
    report_final: Callable[[JobBook], None]
    sync_journal: Callable[[], bool]
    on_full: Callable[[BaseException, str], bool]
    disk_full: Callable[[str], None]


class JobFinishing:
    """Merges, final states, log tarballs and stage-outs of the jobs that are over.

    Parameters
    ----------
    settings
        The effective settings.
    layout
        The work directory.
    books
        The coordinator's books.
    staging
        The stage-in/out of the run.
    hooks
        What it needs of the coordinator.
    resumes_ended_jobs
        Whether a job ended early may be taken up by ``--resume`` (`Communicator.resumes_ended_jobs`).
    """

    def __init__(
        self,
        settings: Settings,
        layout: WorkLayout,
        books: Books,
        staging: JobStaging,
        hooks: FinishingHooks,
        *,
        resumes_ended_jobs: bool,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.books = books
        self.staging = staging
        self.hooks = hooks
        self.resumes_ended_jobs = resumes_ended_jobs
        self.merges: dict[int, MergeProcess] = {}
        self._settled_at: dict[int, float] = {}

    @property
    def merging(self) -> bool:
        """Whether merges still run."""
        return bool(self.merges)

    def step(self) -> bool:
        """Take up the event-service jobs whose ranges are all final; poll the merges."""
        progress = False
        for book in self.books.take_settled():
            self._settled_at[book.job.panda_id] = time.monotonic()
            self._start_merge_or_finish(book)
            progress = True
        for panda_id in list(self.merges):
            progress |= self._poll_merge(self.books.jobs[panda_id])
        return progress

    def settled_for(self, panda_id: int) -> float | None:
        """Seconds from the moment a job's ranges were all final until now (None: not known); once."""
        settled = self._settled_at.pop(panda_id, None)
        return None if settled is None else time.monotonic() - settled

    def kill_merges(self, grace_s: float, *, forget: bool = False) -> None:
        """Kill the merges still running (``forget``: and stop polling them)."""
        for merge in self.merges.values():
            merge.kill(grace_s)
        if forget:
            self.merges.clear()

    def finish(self, book: JobBook) -> None:
        """Decide the job's final state, stage out its files (if the site wants it), report it."""
        job = book.job
        book.ended = time.time()
        if job.event_service:
            settle_event_service(book, status=self.settings.eventservice.exhausted_status)
        else:
            book.conclude()
        self.hooks.report_ranges(job.panda_id)
        book.log = self._log_tarball(book)
        if self._stage_out(book):
            self.books.mark_staging_out(book)
            return
        self.hooks.report_final(book)

    def staged_out(self, book: JobBook, error: tuple[ErrorCode, str] | None) -> None:
        """A job's stage-out is over (``error``: how it failed): its final state goes out."""
        if error is not None and not book.fail(*error):
            log.warning("job %d: stage-out failed too: %s", book.job.panda_id, error[1])
        book.conclude()
        self.hooks.report_final(book)

    # --- merging ------------------------------------------------------------------------------

    def _start_merge_or_finish(self, book: JobBook) -> None:
        job = book.job
        target = self.layout.merged_output(job)
        merger = None
        if book.finished and target is not None:
            try:
                merger = choose_merger(self.settings.eventservice.merger, target.name)
            except HpcPilotError as exc:
                book.fail(exc.code, str(exc))
        if merger is None or target is None:
            self.finish(book)
            return
        inputs = merge_inputs(book)
        if not inputs:
            self.finish(book)
            return
        book.start_merge()
        self.hooks.sync_journal()  # every range's end is durable before a merge that may last: no rerun
        log.info(
            "job %d: merging %d range outputs into %s with %s",
            job.panda_id,
            len(inputs),
            target.name,
            merger,
        )
        try:
            self.merges[job.panda_id] = MergeProcess(
                merger,
                inputs,
                target,
                self.layout.payload_log_dir(job.panda_id),
                input_bytes=sum(out.fsize for _, out in finished_outputs(book)),
                keep_free_bytes=self.settings.monitor.min_free_disk_mb << 20,
            )
        except HpcPilotError as exc:
            self._merge_failed(book, exc)
            self.finish(book)
            return
        except OSError as exc:
            if not self.hooks.on_full(exc, f"job {job.panda_id}'s merge"):
                book.fail(ErrorCode.PAYLOAD_EXECUTION_FAILURE, str(exc))
            else:
                why = f"cannot start the merge: {exc}"
                self._merge_failed(book, PayloadError(why, code=ErrorCode.NO_LOCAL_SPACE, retryable=True))
            self.finish(book)

    def _merge_failed(self, book: JobBook, exc: HpcPilotError) -> None:
        """A merge failed; one that may succeed later (no space, killed) leaves the job resumable.

        Resumable only where no one else hands out the job's work (`Communicator.resumes_ended_jobs`).
        """
        book.fail(exc.code, str(exc), resumable=exc.retryable and self.resumes_ended_jobs)
        log.error(
            "job %d: %s%s",
            book.job.panda_id,
            exc,
            "; its range outputs are kept: 'run --resume' merges them" if book.resumable else "",
        )

    def _poll_merge(self, book: JobBook) -> bool:
        merge = self.merges[book.job.panda_id]
        try:
            merged = merge.poll()
        except HpcPilotError as exc:
            if exc.code is ErrorCode.NO_LOCAL_SPACE:  # the merger met a full disk
                self.hooks.disk_full(f"job {book.job.panda_id}'s merge: {exc}")
            self._merge_failed(book, exc)
            merged = None
        else:
            if merged is None:
                return False
        del self.merges[book.job.panda_id]
        book.merged = merged
        self.finish(book)
        return True

    # --- files --------------------------------------------------------------------------------

    def _stage_out(self, book: JobBook) -> bool:
        """Start staging out a job's outputs (when it finished) and its log; False if nothing moves."""
        outputs: list[Path] = []
        if book.state is JobState.FINISHED:
            outputs = [Path(o.path) for o in book.outputs]  # with the merged output of an ES job
        log_file = Path(book.log.path) if book.log is not None else None
        try:
            return self.staging.stage_out(book.job, outputs, log_file)
        except StagingError as exc:
            log.error("job %d: cannot stage out: %s", book.job.panda_id, exc)
            book.fail(exc.code, str(exc))
            book.conclude()
            return False

    def _log_tarball(self, book: JobBook) -> OutputFile | None:
        """Pack the job's payload logs into its ``logFile`` (when the job names one)."""
        spec = book.job.log_file
        if spec is None:
            return None
        job_dir = self.layout.job_dir(book.job.panda_id)
        try:
            return make_tarball(
                job_dir / spec.lfn, [(self.layout.payload_log_dir(book.job.panda_id), "logs")]
            )
        except OSError as exc:
            log.warning("job %d: cannot write the log tarball %s: %s", book.job.panda_id, spec.lfn, exc)
            self.hooks.on_full(exc, f"job {book.job.panda_id}'s log tarball")
            return None
