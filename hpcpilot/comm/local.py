"""The local communicator: a work directory holding jobs (and optionally ranges) in Harvester's shape.

* ``<workdir>/HPCJobs.json``: ``{"<PandaID>": {job dict}, ...}`` (``local.jobs_file``).
* ``<workdir>/JobsEventRanges.json`` (optional, ``local.ranges_file``): ``{"<PandaID>": [range, ...]}``.
  A job listed there gets exactly those ranges; an event-service job not listed has its events cut into
  ranges of ``local.events_per_range`` events by the pilot, from ``nEventsPerInputFile`` events per
  input file (one file when the job has no inputs, as for event generation).
* Job reports go to ``<workdir>/results.json`` (atomically rewritten, one entry per job). Entries an earlier
  run in the directory wrote are kept (a resumed run adds the jobs it finishes to those done before).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import BadJob, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.comm.wire import panda_id_or_none, parse_json_object
from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import (
    CommunicatorError,
    ErrorCode,
    HpcPilotError,
    JobDefinitionError,
)
from hpcpilot.model.job import Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, parse_range
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.runtime.atomic import write_json_atomic


class LocalCommunicator(Communicator):
    """Serves jobs and ranges from files in the work directory; writes reports there."""

    replays_ranges = True  # the same files give the same ranges to a resumed run
    resumes_ended_jobs = True  # no one else hands out the work of a job a drain cut short

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        super().__init__(settings, layout)
        self._jobs_path = layout.root / settings.local.jobs_file
        self._ranges_path = layout.root / settings.local.ranges_file
        self._pending: list[tuple[str, Any]] | None = None
        self._feed: dict[str, list[Any]] | None = None
        self._feed_error: CommunicatorError | None = None
        self._cutters: dict[int, Iterator[EventRange]] = {}
        self._served: dict[str, int] = {}  # entries of the range file handed out, per job
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
        feed = self._range_feed()
        key = str(job.panda_id)
        if key in feed:
            return self._from_feed(job.panda_id, feed[key], n)
        cutter = self._cutters.get(job.panda_id)
        if cutter is None:
            cutter = self._cutters[job.panda_id] = cut_ranges(job, self.settings.local.events_per_range)
        ranges = tuple(islice(cutter, n))
        return RangeBatch(ranges, exhausted=len(ranges) < n)

    def ranges_expected(self, job: Job) -> int | None:
        """The ranges the range file lists for ``job``, else the number `cut_ranges` cuts.

        None when that cannot be told (a range file that cannot be read, a job without an event count).
        """
        try:
            feed = self._range_feed()
        except CommunicatorError:
            return None
        key = str(job.panda_id)
        if key in feed:
            return len(feed[key]) + self._served.get(key, 0)
        return count_ranges(job, self.settings.local.events_per_range)

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

    def _range_feed(self) -> dict[str, list[Any]]:
        if self._feed_error is not None:
            raise self._feed_error  # every event-service job fails alike, not just the first
        if self._feed is None:
            try:
                self._feed = self._load_feed()
            except CommunicatorError as exc:
                self._feed_error = exc
                raise
        return self._feed

    def _load_feed(self) -> dict[str, list[Any]]:
        feed: dict[str, list[Any]] = {}
        if not self._ranges_path.exists():
            return feed
        for key, value in self._read_json(self._ranges_path).items():
            if not isinstance(value, list):
                raise CommunicatorError(
                    f"ranges of job {key} must be a list, got {type(value).__name__}",
                    context={"source": str(self._ranges_path), "field": key},
                )
            feed[key] = list(value)
        return feed

    def _from_feed(self, panda_id: int, items: list[Any], n: int) -> RangeBatch:
        taken, items[:] = items[:n], items[n:]
        self._served[str(panda_id)] = self._served.get(str(panda_id), 0) + len(taken)
        ranges: list[EventRange] = []
        errors: list[HpcPilotError] = []
        for raw in taken:
            try:
                source = f"{self._ranges_path}['{panda_id}']"
                ranges.append(parse_range(raw, source=source, panda_id=panda_id))
            except HpcPilotError as exc:
                errors.append(exc)
        return RangeBatch(tuple(ranges), exhausted=not items, errors=tuple(errors))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommunicatorError(
                f"cannot read {path.name}: {exc.strerror}", context={"source": str(path)}
            ) from None
        return parse_json_object(text, source=str(path))


def count_ranges(job: Job, events_per_range: int) -> int | None:
    """How many ranges `cut_ranges` cuts from ``job`` (None without ``nEventsPerInputFile``)."""
    per_file = job.n_events_per_input_file
    if per_file is None or events_per_range <= 0:
        return None
    return max(len(job.input_files), 1) * -(-per_file // events_per_range)


def cut_ranges(job: Job, events_per_range: int) -> Iterator[EventRange]:
    """Cut an event-service job's events into ranges, lazily.

    Each input file (or one pseudo-file when the job has none) holds ``nEventsPerInputFile`` events,
    numbered from 1; range ids follow ``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>``.

    Raises
    ------
    JobDefinitionError
        (on first use) if the job does not say how many events it has.
    """
    per_file = job.n_events_per_input_file
    if per_file is None:
        raise JobDefinitionError(
            "event-service job has no range feed and no 'nEventsPerInputFile' to cut ranges from",
            code=ErrorCode.ES_NO_EVENTS,
            context={"PandaID": job.panda_id, "field": "nEventsPerInputFile"},
        )
    files = job.input_files or (None,)
    process_id = 0
    for file_index, spec in enumerate(files, start=1):
        for start in range(1, per_file + 1, events_per_range):
            process_id += 1
            yield EventRange(
                range_id=f"{job.task_id}-{job.panda_id}-{file_index}-{process_id}-{job.attempt_nr}",
                start_event=start,
                last_event=min(start + events_per_range - 1, per_file),
                lfn=spec.lfn if spec else "",
                guid=(spec.guid or "") if spec else "",
                scope=(spec.scope or "") if spec else "",
            )
