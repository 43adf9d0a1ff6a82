"""The ``act`` communicator: a job in an ARC session directory, put there by the ARC Control Tower.

No network: aCT fetched the job from PanDA and put it into the ARC job's session directory as
``pandaJobData.out``; ARC started the pilot there. The pilot runs the job and leaves, in the session
directory (``act.session_dir``, default the work directory):

* ``heartbeat.json``: the job's PanDA ``updateJob`` data, rewritten atomically at every change of its
  state (``starting``, ``running``, ``finished``/``failed``), which aCT downloads and reports to PanDA;
* ``output.list``: the files ARC uploads when the job ends (the outputs of a finished job, the log),
  each to its surl (``act.output_url``, ``act.log_url``).

The names and content are built in `hpcpilot.comm.act_files`. An event-service job's ranges come from
``act.ranges_file`` or are cut by the pilot (`hpcpilot.comm.range_files`); their outcomes stay in the
journal, and aCT is told only of the merged output. A failed job is reported in ``heartbeat.json``, and
the run still exits 0 (`Communicator.exits_ok_on_failed_jobs`): ARC must not see a failed batch job.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from hpcpilot.comm.act_files import (
    HEARTBEAT_FILE,
    JOB_FILE,
    OUTPUT_LIST,
    StagedFile,
    file_info,
    heartbeat,
    metadata_text,
    output_list,
    parse_job_data,
    surl_of,
)
from hpcpilot.comm.base import BadJob, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.comm.range_files import RangeFiles
from hpcpilot.comm.wire import panda_id_or_none
from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import CommunicatorError, ConfigError, JobDefinitionError
from hpcpilot.model.job import FileSpec, Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.runtime.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

#: The payload's own job report in its job directory; becomes ``metaData`` when it is a JSON object.
PAYLOAD_REPORT = "jobReport.json"
#: A payload's job report larger than this is not sent (a report of the pilot's own is).
PAYLOAD_REPORT_MAX = 4 * 1024 * 1024


class ActCommunicator(Communicator):
    """Runs the job aCT put into the session directory; writes ``heartbeat.json`` and ``output.list``."""

    replays_ranges = True  # the same files give the same ranges to a resumed run
    exits_ok_on_failed_jobs = True  # the failure is in heartbeat.json; ARC must see a batch job that ended

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        super().__init__(settings, layout)
        self.cfg = settings.act
        session = Path(self.cfg.session_dir) if self.cfg.session_dir else layout.root
        self.session = session if session.is_absolute() else layout.root / session
        self.heartbeat_s = self.cfg.heartbeat_s
        feed = self.session / self.cfg.ranges_file if self.cfg.ranges_file else None
        self._ranges = RangeFiles(feed, self.cfg.events_per_range, required=feed is not None)
        self._read = False
        self.jobs: dict[int, Job] = {}
        self._written: dict[int, JobState] = {}  # the state heartbeat.json last got, per job
        self._staged: dict[str, StagedFile] = {}  # what output.list holds, by lfn

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """``act.output_url`` is required; it and ``act.log_url`` must be URLs.

        Raises
        ------
        ConfigError
            Naming the setting.
        """
        if not settings.act.output_url:
            raise ConfigError(
                "act.output_url is required: the storage URL the job's outputs are uploaded to by ARC",
                context={"key": "act.output_url"},
            )
        for key, value in (
            ("act.output_url", settings.act.output_url),
            ("act.log_url", settings.act.log_url),
        ):
            if value and "://" not in value:
                raise ConfigError(
                    f"{key} must be a URL (scheme://host/path), got {value!r}", context={"key": key}
                )

    # --- jobs and ranges -------------------------------------------------------------------------

    def fetch_jobs(self, n: int) -> JobBatch:
        """The job of ``pandaJobData.out`` (read once: an ARC job runs one PanDA job).

        Raises
        ------
        CommunicatorError
            If the file cannot be read or holds no job with a PandaID (the run then ends: there is
            no job to report on).
        """
        if n <= 0:
            return JobBatch()
        if self._read:
            return JobBatch(exhausted=True)
        self._read = True
        path = self.session / JOB_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommunicatorError(
                f"cannot read {JOB_FILE}: {exc.strerror} (act.session_dir names the ARC session directory)",
                context={"source": str(path)},
            ) from None
        raw = parse_job_data(text, source=str(path))
        try:
            job = parse_job(raw, source=str(path))
        except JobDefinitionError as exc:
            return JobBatch(bad=(BadJob(panda_id_or_none(str(raw.get("PandaID", ""))), exc),), exhausted=True)
        self.jobs[job.panda_id] = job
        return JobBatch((job,), exhausted=True)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        """Up to ``n`` ranges of ``job``: from ``act.ranges_file`` if it lists the job, else cut here."""
        return self._ranges.fetch(job, n)

    def ranges_expected(self, job: Job) -> int | None:
        """The ranges the range file lists for ``job``, else the number the pilot cuts."""
        return self._ranges.expected(job)

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Nothing to do: aCT is told of the merged output only; the journal holds every range's state."""

    def adopt(self, job: Job, exhausted: bool = False) -> JobState | None:
        """A resumed job: its final state if ``heartbeat.json`` already has one (the killed run wrote it)."""
        self.jobs[job.panda_id] = job
        self._read = True
        try:
            data = json.loads((self.session / HEARTBEAT_FILE).read_text(encoding="utf-8"))
            if str(data["jobId"]) != str(job.panda_id):
                return None
            state = JobState(data["state"])
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return state if state.is_final else None

    # --- reports ---------------------------------------------------------------------------------

    def report_job(self, report: JobReport) -> None:
        """Rewrite ``heartbeat.json`` when the job's state changed; when final, ``output.list`` first."""
        panda_id = report.panda_id
        if not report.state.is_final and self._written.get(panda_id) is report.state:
            return
        job = self.jobs.get(panda_id)
        xml = metadata = None
        if report.state.is_final:
            staged = self._stage(report, job)
            self._staged.update((f.lfn, f) for f in staged)
            write_text_atomic(self.session / OUTPUT_LIST, output_list(list(self._staged.values())))
            xml = file_info(staged)
            metadata = metadata_text(self._payload_report(panda_id), report)
        data = heartbeat(report, job, now=time.time(), xml=xml, metadata=metadata)
        write_json_atomic(self.session / HEARTBEAT_FILE, data)
        self._written[panda_id] = report.state

    def _stage(self, report: JobReport, job: Job | None) -> list[StagedFile]:
        """The files ARC uploads for a job that ended: its outputs when it finished, and its log."""
        files: list[StagedFile] = []
        specs = {f.lfn: f for f in job.output_files} if job is not None else {}
        if report.state is JobState.FINISHED:
            for o in report.outputs:
                path = Path(str(o["path"]))
                files.append(
                    self._file(
                        report, path, specs.get(path.name), self.cfg.output_url, o["fsize"], o["adler32"]
                    )
                )
        if report.log is not None:
            path = Path(str(report.log["path"]))
            spec = job.log_file if job is not None else None
            url = self.cfg.log_url or self.cfg.output_url
            files.append(self._file(report, path, spec, url, report.log["fsize"], report.log["adler32"]))
        return files

    def _file(
        self, report: JobReport, path: Path, spec: FileSpec | None, url: str, fsize: object, adler32: object
    ) -> StagedFile:
        lfn = path.name
        try:
            name = str(path.resolve().relative_to(self.session.resolve()))
        except ValueError:
            log.warning("%s lies outside the session directory %s: ARC cannot upload it", path, self.session)
            name = str(path)
        scope = (spec.scope if spec is not None else None) or ""
        return StagedFile(
            lfn=lfn,
            name=name,
            surl=surl_of(url, lfn=lfn, scope=scope, panda_id=report.panda_id),
            fsize=int(str(fsize)),
            adler32=str(adler32),
            guid=(spec.guid if spec is not None else None) or str(uuid.uuid4()),
        )

    def _payload_report(self, panda_id: int) -> str | None:
        """The payload's ``jobReport.json`` in the job directory, if it wrote one of a sane size."""
        path = self.layout.job_dir(panda_id) / PAYLOAD_REPORT
        try:
            if path.stat().st_size > PAYLOAD_REPORT_MAX:
                log.warning("%s is larger than %d bytes: not sent as metaData", path, PAYLOAD_REPORT_MAX)
                return None
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
