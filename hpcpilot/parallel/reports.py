"""Range outcomes on their way to the workload manager (rank 0): buffered, journaled first, reported.

The coordinator adds every range outcome it books (`RangeReports.add`), the ids of ranges that used
all their attempts (`add_fatal`) and of ranges cut at the end of the run (`add_cut`); they are
reported per job, in batches: periodically (`flush_all`) and when the job finishes (`flush`).

The rules live here:

* nothing is reported before it is journaled: a report follows a journal flush (``sync_journal``),
  and a flush that fails (a full disk) keeps the outcomes back;
* reporting is at-least-once: a ``reported`` record (`ReportedRecord`) follows a successful report,
  and a run killed between the two reports those ranges again after ``--resume``;
* a report that fails is kept for the next try, ahead of the outcomes that came since; one that met a
  full disk (``on_full``) is kept too, and the flush answers False;
* a job the workload manager abandoned is never reported (its outcomes are dropped);
* a communicator that defers its reports (`Communicator.defers_reports`) says when they became
  durable (`Communicator.delivered`): only then are they journaled as reported (`journal_delivered`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Container

from hpcpilot.comm.base import Communicator
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import Job
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.runtime.records import ReportedRecord

log = logging.getLogger(__name__)


class RangeReports:
    """The range outcomes not reported yet, per job, and the rules for reporting them.

    Parameters
    ----------
    communicator
        The workload manager the outcomes go to (`Communicator.report_ranges`).
    job_of
        The job of a PandaID (a job is in the books before any of its outcomes is added).
    write
        Queue a journal record (`hpcpilot.runtime.journal.Journal.write`).
    sync_journal
        Flush the journal; False on a full disk (its records stay queued for the next try).
    on_full
        Take an exception as a full disk if it is one (the run waits for space); False if it is not.
    abandoned
        The jobs the workload manager abandoned: nothing more about them is reported. Read, never
        written: the coordinator adds to it.
    """

    def __init__(
        self,
        communicator: Communicator,
        job_of: Callable[[int], Job],
        write: Callable[[ReportedRecord], None],
        sync_journal: Callable[[], bool],
        on_full: Callable[[BaseException, str], bool],
        abandoned: Container[int],
    ) -> None:
        self.comm = communicator
        self._job_of = job_of
        self._write = write
        self._sync_journal = sync_journal
        self._on_full = on_full
        self._abandoned = abandoned
        self._results: dict[int, list[RangeResult]] = defaultdict(list)
        self._fatal: dict[int, list[str]] = defaultdict(list)
        self._cut: dict[int, list[str]] = defaultdict(list)

    # --- what the coordinator adds ------------------------------------------------------------

    def add(self, result: RangeResult) -> None:
        """Add one range outcome (finished, or a failed attempt) to its job's next report."""
        self._results[result.panda_id].append(result)

    def add_fatal(self, panda_id: int, range_id: str) -> None:
        """Add a range that used all its attempts to its job's next report."""
        self._fatal[panda_id].append(range_id)

    def add_cut(self, panda_id: int, range_id: str) -> None:
        """Add a range whose payload was killed at the end of the run (reported failed, handed out again)."""
        self._cut[panda_id].append(range_id)

    @property
    def pending(self) -> int:
        """How many range outcomes (results, not fatal or cut ids) wait to be reported."""
        return sum(len(results) for results in self._results.values())

    # --- reporting ----------------------------------------------------------------------------

    def flush_all(self, journaled: bool = False) -> bool:
        """Report the outcomes of every job that has results waiting (after flushing the journal).

        ``journaled``: the journal was flushed just before. Returns False when a full disk kept
        something back (it waits for the next try); every job is tried all the same.
        """
        if not journaled and not self._sync_journal():
            return False
        reported = [self.flush(panda_id, journaled=True) for panda_id in list(self._results)]
        return all(reported)

    def flush(self, panda_id: int, journaled: bool = False) -> bool:
        """Report a job's range outcomes (after flushing the journal unless ``journaled``).

        Reporting is at-least-once: a ``reported`` record follows a successful report, and a run killed
        between the two reports those ranges again after ``--resume``. Returns False when a full disk
        kept them back (nothing is reported before it is journaled): they wait for the next try.
        """
        results = self._results.pop(panda_id, [])
        fatal = self._fatal.pop(panda_id, [])
        cut = self._cut.pop(panda_id, [])
        if not (results or fatal or cut) or panda_id in self._abandoned:
            return True
        if not journaled and not self._sync_journal():
            self._keep(panda_id, results, fatal, cut)
            return False
        try:
            self.comm.report_ranges(self._job_of(panda_id), results, fatal, cut)
        except CommunicatorError as exc:
            log.warning("job %d: range report failed, kept for later: %s", panda_id, exc)
            self._keep(panda_id, results, fatal, cut)
            return True
        except OSError as exc:
            if not self._on_full(exc, f"the range report of job {panda_id}"):
                raise
            self._keep(panda_id, results, fatal, cut)
            return False
        ids = [r.range_id for r in results if r.state is RangeState.FINISHED] + fatal
        if ids and not self.comm.defers_reports:
            self._write(ReportedRecord(panda_id, tuple(ids)))
        return True

    def _keep(self, panda_id: int, results: list[RangeResult], fatal: list[str], cut: list[str]) -> None:
        """Put range outcomes back for the next report, ahead of those that came since."""
        self._results[panda_id][:0] = results
        self._fatal[panda_id][:0] = fatal
        self._cut[panda_id][:0] = cut

    # --- reports a deferring communicator made durable ----------------------------------------

    def journal_delivered(self) -> bool:
        """Journal the reports a deferring communicator has made durable (`Communicator.delivered`)."""
        delivered = self.comm.delivered()
        for panda_id, ids in delivered:
            self._write(ReportedRecord(panda_id, tuple(ids)))
        return bool(delivered)

    def journal_delivered_now(self) -> bool:
        """Journal (and flush) reports that just became durable: a resumed run does not send them again."""
        if not self.journal_delivered():
            return False
        self._sync_journal()
        return True
