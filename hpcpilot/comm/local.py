"""The local communicator: a work directory holding jobs (and optionally ranges) in Harvester's shape.

* ``<workdir>/HPCJobs.json``: ``{"<PandaID>": {job dict}, ...}`` (``local.jobs_file``).
* ``<workdir>/JobsEventRanges.json`` (optional, ``local.ranges_file``): ``{"<PandaID>": [range, ...]}``.
  A job listed there gets exactly those ranges; an event-service job not listed has its events cut into
  ranges of ``local.events_per_range`` events by the pilot, from ``nEventsPerInputFile`` events per
  input file (one file when the job has no inputs, as for event generation).
* Job reports go to ``<workdir>/results.json`` (atomically rewritten, one entry per job). Entries an earlier
  run in the directory wrote are kept (a resumed run adds the jobs it finishes to those done before).

The range feed and the cutting live in `hpcpilot.comm.range_files` (shared with the ``act``
communicator); `count_ranges` and `cut_ranges` are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import BadJob, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.comm.range_files import RangeFiles, count_ranges, cut_ranges, read_json_object
from hpcpilot.comm.wire import panda_id_or_none
from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import CommunicatorError, JobDefinitionError
from hpcpilot.model.job import Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.runtime.atomic import write_json_atomic

__all__ = ["LocalCommunicator", "count_ranges", "cut_ranges"]


class LocalCommunicator(Communicator):
    """Serves jobs and ranges from files in the work directory; writes reports there."""

    replays_ranges = True  # the same files give the same ranges to a resumed run
    resumes_ended_jobs = True  # no one else hands out the work of a job a drain cut short

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        super().__init__(settings, layout)
        self._jobs_path = layout.root / settings.local.jobs_file
        self._ranges_path = layout.root / settings.local.ranges_file
        self._pending: list[tuple[str, Any]] | None = None
        self._ranges = RangeFiles(self._ranges_path, settings.local.events_per_range)
        self._reports: dict[str, dict[str, Any]] = self._earlier_reports()

    def fetch_jobs(self, n: int) -> JobBatch:
        """Hand out up to ``n`` jobs of the job file (read once, on the first call).

        Raises
        ------
        CommunicatorError
            If the job file is missing, not JSON, or not a dict of PandaID -> job dict.
        """
        if self._pending is None:
            self._pending = list(self._read_json(self._jobs_path).items())
        taken, self._pending = self._pending[:n], self._pending[n:]
        jobs: list[Job] = []
        bad: list[BadJob] = []
        for key, raw in taken:
            source = f"{self._jobs_path}[{key!r}]"
            try:
                job = parse_job(raw, source=source)
            except JobDefinitionError as exc:
                bad.append(BadJob(panda_id_or_none(key), exc))
                continue
            if str(job.panda_id) != key:
                bad.append(
                    BadJob(
                        panda_id_or_none(key),
                        JobDefinitionError(
                            f"key {key!r} differs from the job's PandaID {job.panda_id}",
                            context={"source": source, "field": "PandaID"},
                        ),
                    )
                )
                continue
            jobs.append(job)
        return JobBatch(tuple(jobs), tuple(bad), exhausted=not self._pending)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        """Up to ``n`` ranges of ``job``: from the range file if it lists the job, else cut here."""
        return self._ranges.fetch(job, n)

    def ranges_expected(self, job: Job) -> int | None:
        """The ranges the range file lists for ``job``, else the number `cut_ranges` cuts.

        None when that cannot be told (a range file that cannot be read, a job without an event count).
        """
        return self._ranges.expected(job)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Nothing to do: the journal in the work directory already holds every range's state."""

    def adopt(self, job: Job, exhausted: bool = False) -> JobState | None:
        """A resumed job: its final state if ``results.json`` already has one (the killed run wrote it)."""
        status = self._reports.get(str(job.panda_id), {}).get("jobStatus")
        try:
            state = JobState(status)
        except ValueError:
            return None
        return state if state.is_final else None

    def report_job(self, report: JobReport) -> None:
        """Record the job's report in ``results.json`` (atomically)."""
        self._reports[str(report.panda_id)] = {
            "jobStatus": report.state.value,
            "pilotErrorCode": report.error_code or 0,
            "pilotErrorDiag": report.error_diag,
            "transExitCode": report.exit_code if report.exit_code is not None else 0,
            "nEvents": report.n_events,
            "eventRanges": report.ranges,
            "outputs": list(report.outputs),
            "startTime": report.start_time,
            "endTime": report.end_time,
            "cpuConsumptionTime": round(report.cpu_s, 3),
            "wallTime": round(report.wall_s, 3),
            "coreCount": report.core_count,
            "timestamp": time.time(),
            **report.metrics,
        }
        if report.job_metrics:
            self._reports[str(report.panda_id)]["jobMetrics"] = report.job_metrics
        write_json_atomic(self.layout.results, self._reports)

    def _earlier_reports(self) -> dict[str, dict[str, Any]]:
        """Reports an earlier run in this directory wrote (kept: a job reported again replaces its own)."""
        try:
            return dict(self._read_json(self.layout.results))
        except CommunicatorError:
            return {}

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        return read_json_object(path)
