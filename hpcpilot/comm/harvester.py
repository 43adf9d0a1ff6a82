"""The ``harvester`` communicator: Harvester's shared-file protocol in the access point (PROTOCOLS.md §1).

Harvester writes job specs and range feeds into the access point (the work directory) and reads what
the pilot writes there, each on its own polling period (minutes in production). This communicator:

* consumes every file it reads by renaming it first (``<name>.reading``, then ``<name>.read``), so
  nothing is read twice and a file Harvester is still writing is completed in place and read again on
  the next look (a file still unreadable once it has not changed for `STALE_S` seconds is set aside
  as ``<name>.bad.<ns>``);
* keeps a taken range feed as ``.reading`` until the coordinator has been handed (and so has
  journaled) the ranges it brought for open jobs, and only then as ``.read``: a kill at any moment
  leaves every range Harvester fed, and the empty list that ends a job's ranges, either in the journal
  or in the feed file, which a resumed run reads again (its journal tells the ranges it knows);
* keeps a deep cache of ranges per job and writes ``worker_requestevents.json`` when the cache falls
  below a threshold that grows with the rate ranges are used times the delay Harvester took to answer
  the last request, so slots never starve;
* declares outputs in ``event_status.dump.json`` in batches: it takes the unconsumed file by renaming
  it (Harvester consumes it the same way, so exactly one side wins), writes old and new entries to a
  fresh file atomically, and starts over when Harvester has taken the previous one;
* writes ``worker_attributes.json`` (starting, running heartbeats, final), ``jobReport.json``, touches
  ``worker_heartbeat.json``, and writes ``kill_worker.json`` at the end;
* turns an operator's ``pilot_softkill.json`` / ``pilot_tobekilled.json`` into commands.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import time
import uuid
from collections import deque
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import (
    BadJob,
    Command,
    CommandKind,
    Communicator,
    JobBatch,
    JobReport,
    RangeBatch,
)
from hpcpilot.comm.harvester_files import (
    NO_FEED_FOR_MANY_TO_ONE,
    HarvesterFiles,
    MappingType,
    dump_text,
    es_output_entry,
    event_request,
    file_entry,
    infer_mapping,
    mapping_warnings,
    parse_harvester_config,
    parse_job_spec,
    parse_kill_file,
    parse_panda_ids,
    report_dir,
    status_entry,
    worker_attributes,
)
from hpcpilot.comm.job_report import job_report_document
from hpcpilot.comm.prefetch import RangePrefetch
from hpcpilot.comm.wire import batch_id, panda_id_or_none, parse_json_object
from hpcpilot.config.schema import Settings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.errors import CommunicatorError, ConfigError, HpcPilotError, JobDefinitionError
from hpcpilot.model.job import Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState, parse_range
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.runtime.atomic import atomic_path, fsync_directory, write_json_atomic

log = logging.getLogger(__name__)

#: A taken file that cannot be parsed is set aside (``<name>.bad.<ns>``) once it has not changed for this
#: many seconds (Harvester may still be writing it) and was looked at `MAX_TRIES` times.
STALE_S = 10.0
MAX_TRIES = 3

#: Job spec file names Harvester sites use (its ``jobSpecFile``): named when a listed job has none.
KNOWN_SPEC_NAMES = ("HPCJobs.json", "pandaJobData.out")

#: How the pilot learns Harvester's file names (named by the error of a listed job without a spec).
CONFIG_HINT = (
    "Harvester's jobSpecFile is read from its configuration: harvester.config_file, --harvester-config "
    "or $HPCPILOT_HARVESTER_CONFIG"
)


def load_file_names(config_file: str) -> HarvesterFiles:
    """The protocol's file names: from Harvester's configuration file if one is given.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed (names ``harvester.config_file`` and the file).
    """
    if not config_file:
        return HarvesterFiles()
    path = Path(config_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"harvester.config_file: cannot read {path}: {exc.strerror}") from None
    try:
        names, notes = parse_harvester_config(text, source=str(path))
    except CommunicatorError as exc:
        raise ConfigError(f"harvester.config_file: {exc}") from None
    for note in notes:
        log.warning("%s", note)
    return names


class _Consumer:
    """Reads a file Harvester writes, once: rename, parse, retry while it may be half written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reading = path.with_name(path.name + ".reading")
        self.tries = 0
        self._seen: tuple[int, int] | None = None  # (size, mtime) at the last failed look
        self._changed = 0.0  # when that last changed

    @property
    def pending(self) -> bool:
        """Whether a taken file could not be parsed yet."""
        return self.reading.exists()

    def take(self) -> str | None:
        """The text of the file if there is one to read (taking it first), else None."""
        if not self.reading.exists():
            try:
                os.rename(self.path, self.reading)
            except FileNotFoundError:
                return None
            self.tries = 0
        try:
            return self.reading.read_text(encoding="utf-8")
        except OSError as exc:
            log.warning("cannot read %s: %s", self.reading, exc.strerror)
            return None

    def done(self) -> None:
        """The content was used: keep it as ``<name>.read``."""
        os.replace(self.reading, self.path.with_name(self.path.name + ".read"))

    def failed(self, error: HpcPilotError) -> None:
        """The content could not be parsed: look again later; set it aside once it stopped changing."""
        self.tries += 1
        try:
            stat = self.reading.stat()
        except OSError:
            return
        seen, now = (stat.st_size, stat.st_mtime_ns), time.monotonic()
        if seen != self._seen:
            self._seen, self._changed = seen, now
        if self.tries == 1:
            log.warning(
                "%s cannot be parsed yet (still being written?), will look again: %s", self.path, error
            )
        if self.tries < MAX_TRIES or now - self._changed < STALE_S:
            return
        bad = self.path.with_name(f"{self.path.name}.bad.{time.time_ns()}")
        os.replace(self.reading, bad)
        log.error(
            "%s is not valid and has not changed for %.0f s: set aside as %s: %s",
            self.path,
            now - self._changed,
            bad.name,
            error,
        )
        self.tries, self._seen = 0, None

    @property
    def waiting(self) -> bool:
        """Whether a file is there to be read (new, or taken and not parsed yet)."""
        return self.reading.exists() or self.path.exists()


class HarvesterCommunicator(Communicator):
    """Talks to Harvester through files in the access point (the work directory)."""

    #: Reports reach Harvester when a dump file is written (every ``harvester.report_interval_s``).
    defers_reports = True

    def __init__(self, settings: Settings, layout: WorkLayout) -> None:
        super().__init__(settings, layout)
        self.cfg = settings.harvester
        self.names = load_file_names(self.cfg.config_file)
        self.heartbeat_s = self.cfg.heartbeat_s
        self.ap = layout.root
        self.batch_id = batch_id(os.environ)
        self.started = time.monotonic()
        # jobs
        self.jobs: dict[int, Job] = {}
        #: Where each job's reports go (`report_dir`, by the worker's mapping type).
        self.job_ap: dict[int, Path] = {}
        self.mapping = None if self.cfg.mapping_type == "auto" else MappingType(self.cfg.mapping_type)
        self._listed_n = 0  # PandaIDs in the last PandaIDs file read
        self._failed_ids: set[int] = set()  # jobs read (or listed) that failed to parse: they ended
        self._spec_top = _Consumer(self.ap / self.names.jobSpecFile)
        self._ids_file = _Consumer(self.ap / self.names.pandaIDsFile)
        self._spec_sub: dict[int, _Consumer] = {}
        self._listed: list[int] = []  # PandaIDs listed whose spec has not been read yet
        self._new_jobs: list[Job] = []
        self._new_bad: list[BadJob] = []
        self._open_cores: dict[int, int] = {}
        self._job_request_t: float | None = None
        self._done_before: set[int] = set()  # jobs runs before a resumed one read and ended
        # ranges
        self._feed = _Consumer(self.ap / self.names.eventRangesFile)
        self._feed_held = False  # the feed taken (``.reading``) is parsed and cached, not marked read
        self._held: set[int] = set()  # jobs whose ranges of that feed were not handed out yet
        self._cache: dict[int, deque[Any]] = {}
        self._ended: set[int] = set()
        self._ahead: dict[int, int] = {}  # ranges handed beyond what the coordinator asked for
        self._request_t: float | None = None
        es = settings.eventservice
        self.prefetch = RangePrefetch(
            self.cfg.request_threshold,
            self.cfg.request_ranges,
            es.prefetch_per_slot,
            es.request_horizon_s,
            es.request_max,
        )
        self._slots = 0
        # reports
        self._dump_new: dict[int, list[str]] = {}
        self._dump_old: dict[int, list[str]] = {}
        self._dump_since: float | None = None
        self._dump_ids: dict[int, list[str]] = {}  # finished and fatal ranges of the queued entries
        self._delivered: list[tuple[int, list[str]]] = []
        self._zip_seq = 0
        self.dump_writes = 0
        self.dump_entries = 0
        self._commands: list[Command] = []
        self._next_scan = 0.0
        self._next_heartbeat = 0.0

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Read Harvester's configuration file, if one is given (raises `ConfigError`); log warnings."""
        load_file_names(settings.harvester.config_file)
        for warning in mapping_warnings(settings):
            log.warning("%s", warning)

    def _mapping(self, *, spec_in_own_dir: bool | None, panda_id: int) -> MappingType:
        """A job's mapping type: ``harvester.mapping_type``, else what the access point shows."""
        if self.mapping is not None:
            return self.mapping
        own = self.ap / str(panda_id)
        return infer_mapping(
            spec_in_own_dir=spec_in_own_dir, listed=self._listed_n, own_dir_exists=own.is_dir()
        )

    def _report_dir(self, panda_id: int) -> Path:
        """Where the reports of a job go (decided when it was read; inferred for a job never read)."""
        known = self.job_ap.get(panda_id)
        if known is not None:
            return known
        return report_dir(self.ap, panda_id, self._mapping(spec_in_own_dir=None, panda_id=panda_id))

    # --- the periodic look at the access point ----------------------------------------------

    def poll(self) -> tuple[Command, ...]:
        """Look at the access point when due; write due reports; touch the heartbeat file."""
        now = time.monotonic()
        self._release_feed()
        if now >= self._next_scan:
            self._scan(now)
        if self._dump_since is not None and now - self._dump_since >= self.cfg.report_interval_s:
            self._write_dumps()
        if self.heartbeat_s and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_s
            write_json_atomic(self.ap / self.names.heartbeatFile, {"time": time.time()}, indent=None)
        commands, self._commands = tuple(self._commands), []
        return commands

    def set_slots(self, slots: int) -> None:
        """Size range and job requests from the run's slots."""
        self._slots = slots

    def _scan(self, now: float) -> None:
        self._next_scan = now + self.cfg.poll_s
        self._scan_jobs()
        self._note_answer(now)
        self._scan_ranges()
        self._scan_kill_files()
        self._request_ranges(now)
        self._request_jobs(now)

    # --- jobs ---------------------------------------------------------------------------------

    def fetch_jobs(self, n: int) -> JobBatch:
        """Hand out jobs read from the access point (up to ``n``) and those that could not be read."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._scan(now)
        jobs, self._new_jobs = self._new_jobs[:n], self._new_jobs[n:]
        bad, self._new_bad = self._new_bad, []
        for job in jobs:
            self._open_cores[job.panda_id] = job.core_count
        for item in bad:
            if item.panda_id is not None:
                self.job_ap.setdefault(item.panda_id, self._report_dir(item.panda_id))
        return JobBatch(tuple(jobs), tuple(bad), exhausted=self._jobs_exhausted(now))

    def _jobs_exhausted(self, now: float) -> bool:
        if self._new_jobs or self._listed or self._spec_top.pending or self._ids_file.pending:
            return False
        max_jobs = self.settings.run.max_jobs
        if max_jobs and self._jobs_read() >= max_jobs:
            return True
        if self.cfg.request_jobs:
            asked = self._job_request_t
            return not self._open_cores and asked is not None and now - asked >= self.cfg.job_wait_s
        return self._jobs_read() > 0 or now - self.started >= self.cfg.job_wait_s

    def _jobs_read(self) -> int:
        """Jobs read from the access point, by this run or (ended) by the runs before a resumed one.

        A job listed or fed whose spec is missing or cannot be parsed counts: it has ended (failed).
        """
        return len(self._done_before.union(self.jobs, self._failed_ids))

    def _scan_jobs(self) -> None:
        text = self._spec_top.take()
        if text is not None:
            self._read_spec(self._spec_top, text, top=True)
        text = self._ids_file.take()
        if text is not None:
            try:
                ids = parse_panda_ids(text, source=str(self._ids_file.path))
            except CommunicatorError as exc:
                self._ids_file.failed(exc)
            else:
                self._ids_file.done()
                self._listed_n = len(ids)
                self._listed.extend(i for i in ids if i not in self.jobs and i not in self._listed)
                self._job_request_t = None
        for panda_id in list(self._listed):
            self._read_listed(panda_id)

    def _read_listed(self, panda_id: int) -> None:
        """Read the spec of a PandaID listed in ``worker_pandaids.json`` from its own directory."""
        if panda_id in self.jobs:
            self._listed.remove(panda_id)
            return
        consumer = self._spec_sub.setdefault(
            panda_id, _Consumer(self.ap / str(panda_id) / self.names.jobSpecFile)
        )
        text = consumer.take()
        if text is not None:
            self._read_spec(consumer, text, top=False)
            if panda_id in self.jobs:
                self._listed.remove(panda_id)
            return
        if self._spec_top.pending:
            return  # the top-level spec may still bring it
        self._listed.remove(panda_id)
        self._failed_ids.add(panda_id)
        self.job_ap[panda_id] = self._report_dir(panda_id)
        self._new_bad.append(BadJob(panda_id, self._no_spec_error(panda_id, consumer.path)))

    def _no_spec_error(self, panda_id: int, own: Path) -> JobDefinitionError:
        """The error of a listed job without a spec: the files tried, those found, the setting.

        Paths are relative to the access point (the context's ``source`` names it): the diagnosis
        Harvester passes on to PanDA keeps 250 characters.
        """
        tried = [self._spec_top.path, own]
        dirs = {p.parent for p in tried}
        found = sorted(
            str((d / name).relative_to(self.ap))
            for d in dirs
            for name in KNOWN_SPEC_NAMES
            if name != self.names.jobSpecFile and (d / name).exists()
        )
        found += sorted(
            f"{p.relative_to(self.ap)}: not valid"
            for d in dirs
            for p in d.glob(f"{self.names.jobSpecFile}.bad.*")
        )
        names = ", ".join(str(p.relative_to(self.ap)) for p in tried)
        also = f" (found {', '.join(found)})" if found else ""
        return JobDefinitionError(
            f"PandaID {panda_id} listed in {self.names.pandaIDsFile} has no spec: tried {names}{also}; "
            + CONFIG_HINT,
            context={"source": str(self.ap), "field": "jobSpecFile"},
        )

    def _read_spec(self, consumer: _Consumer, text: str, *, top: bool) -> None:
        source = str(consumer.path)
        try:
            raw_jobs = parse_job_spec(text, fmt=self.cfg.job_spec_format, source=source)
        except CommunicatorError as exc:
            consumer.failed(exc)
            return
        consumer.done()
        for key, raw in raw_jobs.items():
            self._add_job(key, raw, source=f"{source}[{key!r}]", own_dir=not top or len(raw_jobs) > 1)

    def _add_job(self, key: str, raw: Any, *, source: str, own_dir: bool) -> None:
        panda_id = panda_id_or_none(key)
        try:
            job = parse_job(raw, source=source)
            if job.panda_id != panda_id:
                raise JobDefinitionError(
                    f"key {key!r} differs from the job's PandaID {job.panda_id}",
                    context={"source": source, "field": "PandaID"},
                )
        except JobDefinitionError as exc:
            if panda_id is not None:
                self._failed_ids.add(panda_id)
                self.job_ap[panda_id] = report_dir(
                    self.ap, panda_id, self._mapping(spec_in_own_dir=own_dir, panda_id=panda_id)
                )
            self._new_bad.append(BadJob(panda_id, exc))
            return
        if job.panda_id in self.jobs:
            log.warning("job %d was fed again (%s): ignored", job.panda_id, source)
            return
        self.jobs[job.panda_id] = job
        mapping = self._mapping(spec_in_own_dir=own_dir, panda_id=job.panda_id)
        self.job_ap[job.panda_id] = report_dir(self.ap, job.panda_id, mapping)
        if job.event_service and mapping is MappingType.MANY_TO_ONE:
            log.warning(
                "job %d is an event-service job in a ManyToOne worker: %s",
                job.panda_id,
                NO_FEED_FOR_MANY_TO_ONE,
            )
        self._new_jobs.append(job)
        unknown = self._cache.get(job.panda_id)
        if unknown:
            log.info("job %d: %d ranges fed before its spec are now used", job.panda_id, len(unknown))

    def _request_jobs(self, now: float) -> None:
        """Ask for jobs for idle slots when the queue allows it (one request out at a time)."""
        if not self.cfg.request_jobs or self._slots <= 0 or self._new_jobs or self._listed:
            return
        path = self.ap / self.names.jobRequestFile
        if self._job_request_t is not None and path.exists():
            return
        if self._spec_top.waiting or self._ids_file.waiting:
            return  # an answer is not read yet
        max_jobs = self.settings.run.max_jobs
        per_job = max((j.core_count for j in self.jobs.values()), default=1)
        free = (self._slots - sum(self._open_cores.values())) // max(per_job, 1)
        if max_jobs:
            free = min(free, max_jobs - self._jobs_read())
        if free <= 0:
            return
        write_json_atomic(path, {"nJobs": free}, indent=None)
        if self._job_request_t is None:
            self._job_request_t = now
        log.info("asked Harvester for %d job(s) (%s)", free, path.name)

    # --- ranges -------------------------------------------------------------------------------

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        """Every cached range of ``job``; exhausted once Harvester sent its empty list.

        All of them, not only the ``n`` asked for: a range taken from Harvester's feed file reaches the
        coordinator's journal at once, so that a killed run loses none (``run --resume``). Those beyond
        ``n`` count as used only when the coordinator asks for them (the prefetch keeps its rate and
        counts them as cached when deciding to ask Harvester for more). The feed they came in is
        marked read on the next call (the coordinator has journaled them by then): until then a
        resumed run reads it again.
        """
        now = time.monotonic()
        self._release_feed()
        if now >= self._next_scan:
            self._scan(now)
        cache = self._cache.get(job.panda_id)
        ranges: list[EventRange] = []
        errors: list[HpcPilotError] = []
        source = str(self._feed.path)
        while cache:
            try:
                raw = cache.popleft()
                ranges.append(parse_range(raw, source=f"{source}[{job.panda_id}]", panda_id=job.panda_id))
            except HpcPilotError as exc:
                errors.append(exc)
        ahead = self._ahead.get(job.panda_id, 0) + len(ranges)
        used = min(n, ahead)
        self._ahead[job.panda_id] = ahead - used
        self.prefetch.taken(used, now)
        exhausted = job.panda_id in self._ended and not cache
        self._held.discard(job.panda_id)
        return RangeBatch(tuple(ranges), exhausted=exhausted, errors=tuple(errors))

    def range_wait_hint(self, job: Job) -> str:
        """A job of a multi-job (ManyToOne) worker: Harvester feeds it no ranges.

        Harvester's ``SharedFileMessenger.feed_events`` writes nothing for a worker that holds
        several jobs (HSF/harvester ``pandaharvester/harvestermessenger/shared_file_messenger.py``,
        "TOBEFIXED" for MultiJobs) and deletes the request all the same. Such a job has its own
        directory ``<accessPoint>/<PandaID>/``.
        """
        if self.job_ap.get(job.panda_id, self.ap) == self.ap:
            return ""
        return (
            "Harvester does not feed events to ManyToOne workers (its messenger writes no "
            f"{self.names.eventRangesFile} for a worker with several jobs)"
        )

    def adopt(self, job: Job, exhausted: bool = False) -> JobState | None:
        """A resumed job: its ranges are asked for and its reports written as for a job read here.

        Its ``worker_attributes.json`` already final (written by the killed run) means Harvester has
        its final state: that state is returned and the job is left alone.
        """
        self.jobs[job.panda_id] = job
        mapping = self._mapping(spec_in_own_dir=self._own_dir(job), panda_id=job.panda_id)
        self.job_ap[job.panda_id] = report_dir(self.ap, job.panda_id, mapping)
        final = self._final_state(job.panda_id)
        if final is not None:
            return final
        self._open_cores[job.panda_id] = job.core_count
        if exhausted:
            self._ended.add(job.panda_id)
        return None

    def adopt_done(self, panda_ids: Collection[int]) -> None:
        """Jobs the runs before a resumed one read and ended: they count as read.

        Harvester feeds a worker's jobs once (the spec file, consumed by the run that read it): a
        resumed run whose jobs all ended before the kill must end, not wait ``harvester.job_wait_s``
        for a job spec that will not come.
        """
        self._done_before.update(panda_ids)

    def _final_state(self, panda_id: int) -> JobState | None:
        """The final ``jobStatus`` of the job's ``worker_attributes.json``, if it has one."""
        path = self.job_ap[panda_id] / self.names.workerAttributesFile
        try:
            status = json.loads(path.read_text(encoding="utf-8")).get("jobStatus")
            state = JobState(status)
        except (OSError, ValueError, AttributeError):
            return None
        return state if state.is_final else None

    def _own_dir(self, job: Job) -> bool:
        """Whether a job read in an earlier run had its own access point (as `_read_spec` decides)."""
        spec = self.names.jobSpecFile
        own = self.ap / str(job.panda_id)
        if (own / spec).exists() or (own / f"{spec}.read").exists():
            return True
        top = self.ap / f"{spec}.read"
        try:
            raw_jobs = parse_job_spec(
                top.read_text(encoding="utf-8"), fmt=self.cfg.job_spec_format, source=str(top)
            )
        except (OSError, CommunicatorError):
            return False
        return len(raw_jobs) > 1

    def _note_answer(self, now: float) -> None:
        """Harvester's answer to the last range request is there: how long it took (sizes requests)."""
        if self._request_t is not None and self._feed.path.exists():
            self.prefetch.answered(now - self._request_t)
            self._request_t = None

    def _release_feed(self) -> None:
        """Mark the held feed read once the ranges it brought for open jobs were handed out.

        The coordinator journals (and fsyncs) the ranges `fetch_ranges` hands it before it calls the
        communicator again; ranges of a job not (or no longer) open do not hold the feed back.
        """
        if not self._feed_held:
            return
        if self._held & (self._open_cores.keys() | {j.panda_id for j in self._new_jobs}):
            return
        self._feed.done()
        self._feed_held, self._held = False, set()

    def _scan_ranges(self) -> None:
        if self._feed_held:
            return  # the next feed waits in its file until the ranges of this one are journaled
        text = self._feed.take()
        if text is None:
            return
        try:
            feed = parse_json_object(text, source=str(self._feed.path))
        except CommunicatorError as exc:
            self._feed.failed(exc)
            return
        self._feed_held = True
        added = 0
        for key, items in feed.items():
            panda_id = panda_id_or_none(key)
            if panda_id is None or not isinstance(items, list):
                log.error(
                    "%s: entry %r skipped: expected a PandaID and a list of ranges, got %s",
                    self._feed.path,
                    key,
                    type(items).__name__,
                )
                continue
            if panda_id not in self.jobs:
                log.warning(
                    "%s: %d range(s) for job %s, which is not (yet) known here: kept for it",
                    self._feed.path,
                    len(items),
                    key,
                )
            if not items:
                self._ended.add(panda_id)
            self._cache.setdefault(panda_id, deque()).extend(items)
            self._held.add(panda_id)
            added += len(items)
        log.info("took %d range(s) from %s", added, self._feed.path.name)

    def _request_ranges(self, now: float) -> None:
        path = self.ap / self.names.eventRequestFile
        if self._request_t is not None and path.exists():
            return  # Harvester has not answered the last request yet
        if self._feed.path.exists() or (self._feed.pending and not self._feed_held):
            return  # its answer is not read yet: a new answer would overwrite it
        threshold, size = self.prefetch.sizes(self._slots)
        request = {
            str(pid): event_request(job, size)
            for pid, job in self.jobs.items()
            if job.event_service
            and pid not in self._ended
            and pid in self._open_cores
            and len(self._cache.get(pid, ())) + self._ahead.get(pid, 0) < threshold
        }
        if not request:
            return
        write_json_atomic(path, request, indent=None)
        self._request_t = now
        log.info("asked Harvester for %d range(s) of job(s) %s", size, ", ".join(request))

    # --- commands -----------------------------------------------------------------------------

    def _scan_kill_files(self) -> None:
        for name, kind in (
            (self.cfg.kill_file, CommandKind.TOBEKILLED),
            (self.cfg.softkill_file, CommandKind.SOFTKILL),
        ):
            consumer = _Consumer(self.ap / name)
            text = consumer.take()
            if text is None:
                continue
            consumer.done()
            try:
                ids = parse_kill_file(text, source=str(consumer.path))
            except CommunicatorError as exc:
                log.error("%s (applied to the whole run)", exc)
                ids = None
            if ids is None:
                self._commands.append(Command(kind, None, str(consumer.path)))
            else:
                self._commands.extend(Command(kind, pid, str(consumer.path)) for pid in ids)

    # --- reports ------------------------------------------------------------------------------

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Queue the batch's finished outputs and exhausted ranges for ``event_status.dump.json``."""
        finished = [r for r in results if r.state is RangeState.FINISHED]
        packed = self._pack(job, finished) if self.cfg.pack_ranges else None
        entries: list[dict[str, Any]] = []
        for result in finished:
            if result.output is None:
                entries.append(status_entry(result.range_id, "finished"))
            elif packed is not None:
                entries.append(es_output_entry(result, packed, str(uuid.uuid4()), zip_path=packed.path))
            else:
                entries.append(es_output_entry(result, result.output, str(uuid.uuid4())))
        status = self.settings.eventservice.exhausted_status
        entries.extend(status_entry(rid, status) for rid in fatal)
        entries.extend(status_entry(rid, "failed") for rid in cut)
        self._queue_entries(job.panda_id, entries)
        ids = [r.range_id for r in finished] + list(fatal)
        if ids:
            self._dump_ids.setdefault(job.panda_id, []).extend(ids)
            self.prefetch.used(len(ids), time.monotonic())

    def delivered(self) -> list[tuple[int, list[str]]]:
        """(PandaID, range ids) written to a dump file since the last call."""
        done, self._delivered = self._delivered, []
        return done

    def _pack(self, job: Job, finished: list[RangeResult]) -> OutputFile | None:
        """Pack the batch's range outputs into one tar file (``zip_output``)."""
        outputs = [Path(r.output.path) for r in finished if r.output is not None]
        if not outputs:
            return None
        self._zip_seq += 1
        dest = self.layout.job_dir(job.panda_id) / f"{job.panda_id}.es_outputs.{self._zip_seq:06d}.tar"
        with atomic_path(dest) as tmp, tarfile.open(tmp, "w") as tar:
            for path in outputs:
                tar.add(path, arcname=path.name)
        return OutputFile(str(dest), dest.stat().st_size, adler32_of_file(dest))

    def _queue_entries(self, panda_id: int, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        self._dump_new.setdefault(panda_id, []).extend(json.dumps(e) for e in entries)
        if self._dump_since is None:
            self._dump_since = time.monotonic()

    def _write_dumps(self) -> None:
        for panda_id in list(self._dump_new):
            self._write_dump(panda_id)
        self._dump_since = None

    def _write_dump(self, panda_id: int) -> None:
        """Merge new entries into the job's unconsumed dump file, or start a fresh one; atomically.

        The unconsumed file is taken by renaming it, as Harvester does: if the rename fails, Harvester
        has taken it (its entries are consumed); if it succeeds, its entries are ours to rewrite.
        """
        new = self._dump_new.pop(panda_id, [])
        if not new:
            return
        path = self._report_dir(panda_id) / self.names.eventStatusDumpJsonFile
        path.parent.mkdir(parents=True, exist_ok=True)
        claimed = path.with_name(path.name + ".pilot")
        old: list[str] = []
        if claimed.exists():  # left by an interrupted write: its entries were never seen by Harvester
            old = self._entries_of(claimed, panda_id)
        try:
            os.rename(path, claimed)
            if panda_id in self._dump_old:
                old = old or self._dump_old[panda_id]
            else:  # written by an earlier run of this pilot (resumed): read it back
                old = old or self._entries_of(claimed, panda_id)
        except FileNotFoundError:
            pass
        known = {_entry_key(e) for e in old}  # a resumed run reports again what the killed run left here
        new = [e for e in new if _entry_key(e) not in known]
        entries = old + new
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(dump_text({str(panda_id): entries}), encoding="utf-8")
        except OSError:
            # a full disk: the new entries wait for the next write (the claimed file keeps the old)
            self._dump_new[panda_id] = new + self._dump_new.get(panda_id, [])
            raise
        claimed.unlink(missing_ok=True)
        fsync_directory(path.parent)
        self._dump_old[panda_id] = entries
        ids = self._dump_ids.pop(panda_id, [])
        if ids:
            self._delivered.append((panda_id, ids))
        self.dump_writes += 1
        self.dump_entries += len(new)

    @staticmethod
    def _entries_of(path: Path, panda_id: int) -> list[str]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [json.dumps(e) for e in data.get(str(panda_id), [])]
        except (OSError, ValueError, AttributeError) as exc:
            log.error("cannot recover the entries of %s: %s", path, exc)
            return []

    def report_job(self, report: JobReport) -> None:
        """Write the job's worker attributes; when final, first its outputs, log and job report."""
        panda_id = report.panda_id
        job = self.jobs.get(panda_id)
        job_ap = self._report_dir(panda_id)
        job_ap.mkdir(parents=True, exist_ok=True)
        if report.state.is_final:
            files = [
                file_entry("output", str(o["path"]), o["fsize"], o["adler32"], str(uuid.uuid4()))
                for o in report.outputs
            ]
            if report.log is not None:
                log_guid = job.log_file.guid if job is not None and job.log_file is not None else None
                files.append(
                    file_entry(
                        "log",
                        str(report.log["path"]),
                        report.log["fsize"],
                        report.log["adler32"],
                        log_guid or str(uuid.uuid4()),
                    )
                )
            self._queue_entries(panda_id, files)
            self._write_dump(panda_id)
            write_json_atomic(job_ap / self.names.jobReportFile, job_report_document(report))
            self._open_cores.pop(panda_id, None)
        write_json_atomic(
            job_ap / self.names.workerAttributesFile, worker_attributes(report, job, self.batch_id)
        )

    def close(self) -> None:
        """Write what is pending, then ``kill_worker.json``: this worker is done."""
        self._write_dumps()
        log.info(
            "declared %d entries in %d write(s) of %s",
            self.dump_entries,
            self.dump_writes,
            self.names.eventStatusDumpJsonFile,
        )
        unused = {pid: len(c) for pid, c in self._cache.items() if c}
        for pid, count in unused.items():
            log.warning("%d range(s) of job %d were received but not processed (not reported)", count, pid)
        for name in (self.names.eventRequestFile, self.names.jobRequestFile):
            (self.ap / name).unlink(missing_ok=True)
        write_json_atomic(self.ap / self.names.killWorkerFile, {"time": time.time()}, indent=None)


def _entry_key(text: str) -> tuple[str, str]:
    """What a dump entry declares: (range id, status) for a range, ("path", path) for a file."""
    try:
        entry = json.loads(text)
    except ValueError:
        return ("text", text)
    if not isinstance(entry, dict):
        return ("text", text)
    if entry.get("eventRangeID") is not None:
        return (str(entry["eventRangeID"]), str(entry.get("eventStatus")))
    return ("path", str(entry.get("path")))
