"""Where things live in a work directory (Harvester's access point). Path arithmetic only, no I/O.

The layout:

    <workdir>/
      HPCJobs.json            job definitions in (local communicator, Harvester's shape)
      JobsEventRanges.json    an optional range feed
      <PandaID>/              one directory per job: payload outputs, per-range outputs, merged output
      journal.jsonl           rank 0's journal of every range's state
      results.json            the local communicator's job reports
      summary.json            the end-of-run summary
      .hpcpilot-reserve       space rank 0 holds back for its last records on a full disk
      logs/                   rank-NNNN.log per rank, payload stdout/stderr per slot
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcpilot.model.job import Job
from hpcpilot.model.ranges import EventRange


@dataclass(frozen=True, slots=True)
class WorkLayout:
    """The paths of one work directory.

    Attributes
    ----------
    root
        The work directory (absolute).
    """

    root: Path

    def job_dir(self, panda_id: int) -> Path:
        """The directory of one job."""
        return self.root / str(panda_id)

    @property
    def journal(self) -> Path:
        """Rank 0's range journal."""
        return self.root / "journal.jsonl"

    @property
    def results(self) -> Path:
        """The local communicator's job reports (JSON)."""
        return self.root / "results.json"

    @property
    def summary(self) -> Path:
        """The end-of-run summary (JSON)."""
        return self.root / "summary.json"

    @property
    def disk_reserve(self) -> Path:
        """The file that holds back space for rank 0's last records on a full disk."""
        return self.root / ".hpcpilot-reserve"

    @property
    def log_dir(self) -> Path:
        """Per-rank logs."""
        return self.root / "logs"

    def rank_log(self, rank: int) -> Path:
        """The log file of one rank."""
        return self.log_dir / f"rank-{rank:04d}.log"

    def payload_log_dir(self, panda_id: int) -> Path:
        """Where one job's payload stdout/stderr files go."""
        return self.job_dir(panda_id) / "logs"

    def range_output(self, job: Job, event_range: EventRange) -> Path:
        """The output of one range: ``<outputLFN>.<eventRangeID>`` in the job directory."""
        main = job.main_output
        base = main.lfn if main is not None else f"{job.panda_id}.output"
        return self.job_dir(job.panda_id) / f"{base}.{event_range.range_id}"

    def merged_output(self, job: Job) -> Path | None:
        """Where the merged output of an event-service job goes, if it declares one."""
        main = job.main_output
        return self.job_dir(job.panda_id) / main.lfn if main is not None else None
