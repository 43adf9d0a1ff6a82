"""A fake Harvester: the shared-file side of Harvester's SharedFileMessenger, with protocol checks.

`FakeHarvester` prepares an access point the way Harvester does (job spec files, the POOL catalogue,
input symlinks, ``worker_pandaids.json``, optionally ranges fed before the batch job starts), then polls
the directory on its own period in a thread and does what Harvester's messenger does there
(PROTOCOLS.md §1, HSF/harvester ``shared_file_messenger.py``):

* ``worker_requestevents.json`` -> ``JobsEventRanges.json`` written NON-atomically from a per-job range
  store (an empty list once a job has no more ranges; nothing at all for ManyToOne), then the request
  file removed;
* ``worker_requestjob.json`` -> more jobs fed (job spec files, catalogue, symlinks, ``worker_pandaids.json``
  listing the PandaIDs of that feed), then the request file removed; no jobs left: the request stays;
* ``event_status.dump.json`` renamed to ``.read``, read, ``worker_updateevents.json`` written for the
  event statuses, then ``.read`` acknowledged as ``.read.<UTC timestamp>``;
* ``worker_attributes.json`` and ``jobReport.json`` read per job; ``kill_worker.json`` and the heartbeat
  file watched.

Per-job files are read only where the real messenger reads them: ``get_access_point(workspec, PandaID)``
is the access point itself for OneToOne (and OneToMany) workers, ``<accessPoint>/<PandaID>/`` for
ManyToOne ones. A report the pilot writes anywhere else is never read by Harvester; `misplaced_reports`
lists them, and each is a violation at `FakeHarvester.stop`.

Everything is recorded, and what the pilot writes is checked against the protocol; each breach is a
line in `FakeHarvester.violations` (tests assert it is empty). Faults can be injected into the feeds
(`Fault`): a file written in two halves with a pause (the half-written file visible meanwhile, completed
through the same open file even if the pilot renamed it), garbage, or an unknown PandaID.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
import re
import tarfile
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlencode

#: The ``type`` values of ``event_status.dump.json`` entries.
FILE_TYPES = frozenset({"output", "log", "checkpoint", "es_output", "zip_output"})
#: Types whose entries also carry an event status (the others are file-only for Harvester).
EVENT_FILE_TYPES = frozenset({"es_output", "zip_output"})
#: Range statuses a pilot reports.
RANGE_STATUSES = frozenset({"running", "finished", "failed", "fatal"})
#: ``jobStatus`` values of ``worker_attributes.json`` and their order.
JOB_STATUS_ORDER = {"starting": 0, "running": 1, "finished": 2, "failed": 2}
FINAL_JOB_STATUSES = frozenset({"finished", "failed"})
#: Fields of one job's entry in ``worker_requestevents.json``.
EVENT_REQUEST_FIELDS = ("pandaID", "taskID", "jobsetID", "nRanges")
#: What Harvester's acknowledgement appends to a consumed file (``.read.<UTC timestamp>``).
ACK_TIME_FORMAT = "%Y-%m-%d_%H_%M_%S.%f"
ACK_SUFFIX = re.compile(r"\.read\.\d{4}-\d{2}-\d{2}_\d{2}_\d{2}_\d{2}\.\d{6}$")
#: An adler32 checksum as Harvester compares it: 8 lower-case hex digits.
ADLER32 = re.compile(r"^[0-9a-f]{8}$")
#: What a garbage feed holds.
GARBAGE = '<html><body>502 Bad Gateway</body></html>\n{"not": json'
#: The PandaID the `Fault.FOREIGN` fault uses.
UNKNOWN_PANDA_ID = 999999


class MapType(enum.StrEnum):
    """How jobs map to the worker (Harvester's ``mapType``)."""

    ONE_TO_ONE = "OneToOne"  #: one job, every file at the top of the access point
    MANY_TO_ONE = "ManyToOne"  #: several jobs ("MultiJobs"), per-job files in ``<accessPoint>/<PandaID>/``


class Fault(enum.StrEnum):
    """A fault injected into one feed."""

    HALF = "half"  #: the feed file(s) written in two halves, `FakeHarvester.half_pause_s` apart
    GARBAGE = "garbage"  #: the feed file holds garbage (nothing is taken from the store)
    FOREIGN = "foreign"  #: ranges for an unknown PandaID / an unknown PandaID listed without a job spec


@dataclass(frozen=True)
class HarvesterFiles:
    """File names of the protocol, under Harvester's ``[payload_interaction]`` keys.

    Attributes
    ----------
    jobSpecFile, pandaIDsFile, xmlPoolCatalogFile, jobRequestFile, workerAttributesFile
        One file name each (PROTOCOLS.md §1).
    jobReportFile, eventStatusDumpJsonFile, eventRequestFile, eventRangesFile, updateEventsFile
        Likewise.
    killWorkerFile, heartbeatFile
        Likewise.
    """

    jobSpecFile: str = "HPCJobs.json"  # noqa: N815 - Harvester's key names
    pandaIDsFile: str = "worker_pandaids.json"  # noqa: N815
    xmlPoolCatalogFile: str = "PoolFileCatalog_H.xml"  # noqa: N815
    jobRequestFile: str = "worker_requestjob.json"  # noqa: N815
    workerAttributesFile: str = "worker_attributes.json"  # noqa: N815
    jobReportFile: str = "jobReport.json"  # noqa: N815
    eventStatusDumpJsonFile: str = "event_status.dump.json"  # noqa: N815
    eventRequestFile: str = "worker_requestevents.json"  # noqa: N815
    eventRangesFile: str = "JobsEventRanges.json"  # noqa: N815
    updateEventsFile: str = "worker_updateevents.json"  # noqa: N815
    killWorkerFile: str = "kill_worker.json"  # noqa: N815
    heartbeatFile: str = "worker_heartbeat.json"  # noqa: N815

    @classmethod
    def custom(cls) -> HarvesterFiles:
        """Names that differ from the usual ones, except ``updateEventsFile`` and ``heartbeatFile``.

        The job spec takes Harvester's old default ``pandaJobData.out``. A configuration file written by
        `config_text` sets only the changed names, so the pilot is also tested on keeping the usual
        name of a key the file does not set.
        """
        return cls(
            jobSpecFile="pandaJobData.out",
            pandaIDsFile="pandaIDs_custom.json",
            xmlPoolCatalogFile="PFC_custom.xml",
            jobRequestFile="request_jobs_custom.json",
            workerAttributesFile="attributes_custom.json",
            jobReportFile="report_custom.json",
            eventStatusDumpJsonFile="outputs_custom.json",
            eventRequestFile="request_events_custom.json",
            eventRangesFile="ranges_custom.json",
            killWorkerFile="done_custom.json",
        )

    def changed(self) -> dict[str, str]:
        """The keys whose names differ from the usual ones."""
        usual = HarvesterFiles()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(usual, f.name)
        }

    def config_text(self) -> str:
        """A ``panda_harvester.cfg`` as Harvester's own: other sections, comments, and the changed names.

        Keys Harvester has but the pilot does not use (``eventStatusDumpXmlFile``) are included too.
        """
        lines = [
            "# Harvester configuration (written by the fake Harvester of the hpcpilot tests)",
            "[master]",
            "uname = atlpan",
            "gname = zp",
            "harvester_id = fake-harvester",
            "",
            "[db]",
            "engine = sqlite",
            "database_filename = /var/tmp/harvester.db",
            "",
            "[payload_interaction]",
            "# files exchanged with the payload in the access point",
            "eventStatusDumpXmlFile = _event_status.dump",
        ]
        lines += [f"{key} = {value}" for key, value in self.changed().items()]
        lines += ["", "[monitor]", "sleepTime = 300", "checkInterval = 300", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class DeclaredFile:
    """A file declared in a consumed ``event_status.dump.json``.

    Attributes
    ----------
    panda_id
        The job it was declared for.
    file_type
        Its ``type``.
    path
        Its ``path``.
    fsize, chksum, guid
        As declared (None if missing).
    range_id, status
        ``eventRangeID`` / ``eventStatus`` (None if missing).
    is_zip
        ``isZip`` (None if missing).
    dump
        Where the entry was read (the acknowledged file's path).
    """

    panda_id: int
    file_type: str
    path: str
    fsize: int | None
    chksum: str | None
    guid: str | None
    range_id: str | None
    status: str | None
    is_zip: int | None
    dump: str


@dataclass(frozen=True)
class EventFeed:
    """One write of the range feed file.

    Attributes
    ----------
    at
        ``time.time()`` when it was started.
    ranges
        Range ids fed per PandaID (an empty list: "no more ranges").
    fault
        The fault injected, if any.
    prefed
        Whether it was written before the pilot started.
    """

    at: float
    ranges: dict[int, list[str]]
    fault: Fault | None
    prefed: bool


@dataclass(frozen=True)
class JobFeed:
    """One job feed.

    Attributes
    ----------
    at
        ``time.time()`` when it was started.
    panda_ids
        What ``worker_pandaids.json`` lists.
    fault
        The fault injected, if any.
    """

    at: float
    panda_ids: list[int]
    fault: Fault | None


@dataclass(frozen=True)
class Request:
    """A request file as the fake read it.

    Attributes
    ----------
    at
        ``time.time()`` when the fake read it (up to one period after the pilot wrote it).
    content
        Its content (``{"nJobs": N}`` or the event request dict).
    """

    at: float
    content: Any


@dataclass
class _JobState:
    """What the fake knows about one job it fed."""

    panda_id: int
    params: dict[str, Any]
    access_point: Path
    store: deque[dict[str, Any]] = field(default_factory=deque)
    served: dict[str, dict[str, Any]] = field(default_factory=dict)
    told_no_more: bool = False
    reports: dict[str, list[str]] = field(default_factory=dict)
    attributes: list[dict[str, Any]] = field(default_factory=list)
    job_report: Any = None
    report_mtime: float | None = None
    final_seen_cycle: int | None = None


_Step = tuple[float, Callable[[], None]]


def adler32_of(path: Path) -> str:
    """The adler32 of a file as 8 lower-case hex digits (``zlib.adler32``, read in chunks)."""
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def cut_ranges(job: Mapping[str, Any], events_per_range: int) -> list[dict[str, Any]]:
    """The ranges a server would serve for an event-service job, as PanDA serves them.

    Each input file (one pseudo-file when the job has none) holds ``nEventsPerInputFile`` events;
    ids are ``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>`` with the process id counting
    across files. Ranges carry the input's LFN, GUID and scope (for a job without inputs, the LFN of
    a pseudo-input that does not exist, as event generation gets).
    """
    per_file = int(job.get("nEventsPerInputFile") or 0)
    if per_file <= 0:
        return []
    panda_id, task_id = int(job["PandaID"]), int(job.get("taskID") or job.get("jediTaskID") or 0)
    attempt = int(job.get("attemptNr") or 1)
    lfns = _split(job.get("inFiles"))
    guids = _split(job.get("GUID"))
    scopes = _split(job.get("scopeIn"))
    files = [
        (lfn, guids[i] if i < len(guids) else "", scopes[i] if i < len(scopes) else "")
        for i, lfn in enumerate(lfns)
    ] or [(f"EVNT.{task_id}._000001.pool.root.1", f"00000000-0000-0000-0000-{panda_id:012d}", "mc")]
    ranges: list[dict[str, Any]] = []
    process = 0
    for file_id, (lfn, guid, scope) in enumerate(files, start=1):
        for start in range(1, per_file + 1, events_per_range):
            process += 1
            ranges.append(
                {
                    "eventRangeID": f"{task_id}-{panda_id}-{file_id}-{process}-{attempt}",
                    "startEvent": start,
                    "lastEvent": min(start + events_per_range - 1, per_file),
                    "LFN": lfn,
                    "GUID": guid,
                    "scope": scope,
                }
            )
    return ranges


def _split(value: object) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return []
    return [item for item in value.split(",") if item and item not in {"NULL", "None", "null"}]


def _is_event_service(job: Mapping[str, Any]) -> bool:
    return str(job.get("eventService", "")).strip().lower() in {"true", "1", "yes"}


def pool_file_catalog(jobs: Iterable[Mapping[str, Any]]) -> str:
    """The POOL file catalogue of the inputs of a feed, in the layout Harvester writes."""
    xml = '<?xml version="1.0" ?>\n<!DOCTYPE POOLFILECATALOG  SYSTEM "InMemory">\n<POOLFILECATALOG>\n    '
    done: set[str] = set()
    for job in jobs:
        guids = _split(job.get("GUID"))
        for i, lfn in enumerate(_split(job.get("inFiles"))):
            if lfn in done:
                continue
            done.add(lfn)
            guid = guids[i] if i < len(guids) else ""
            xml += (
                f'  <File ID="{guid}">\n    <physical>\n      <pfn filetype="ROOT_All" name="{lfn}"/>\n'
                "    </physical>\n    <logical/>\n  </File>\n  "
            )
    return xml + "</POOLFILECATALOG>"


class FakeHarvester:
    """Harvester's SharedFileMessenger side of one worker, polling its access point in a thread.

    Parameters
    ----------
    access_point
        The worker's access point (created if needed); the pilot's ``--workdir``.
    jobs
        Job dicts fed before the pilot starts (exactly one for OneToOne).
    map_type
        `MapType.ONE_TO_ONE` or `MapType.MANY_TO_ONE`.
    more_jobs
        Job dicts fed when the pilot asks for jobs (one per feed for OneToOne).
    ranges
        The range store per PandaID; by default an event-service job's events are cut into ranges of
        ``events_per_range`` events (`cut_ranges`).
    events_per_range
        See ``ranges``.
    prefeed
        Ranges per event-service job written to the range feed before the pilot starts (OneToOne).
    period_s
        Seconds between two looks at the access point.
    job_spec_format
        ``json`` (``{"<PandaID>": {job}}``) or ``cgi`` (the urlencoded job dict).
    files
        The protocol's file names.
    write_config
        Write ``panda_harvester.cfg`` (beside the access point) with the names; see `config_path`.
    event_faults, job_faults
        The fault (or None) of each successive range feed (the pre-feed counts) and job feed (the
        initial feed counts).
    half_pause_s
        How long a half-written file stays half written (`Fault.HALF`).
    input_dir
        Where the jobs' input files are; those found there are symlinked into the job's access point.
    polling
        Run the polling thread; with False the test calls `tick` by hand.
    softkill_file, kill_file
        The names of the operator's command files (`operator_command`).

    Attributes
    ----------
    violations
        Breaches of the protocol by what the pilot wrote, one line each.
    event_feeds, job_feeds
        Every feed written.
    event_requests, job_requests
        Every request file read.
    consumed_dumps
        The acknowledged names of the consumed ``event_status.dump.json`` files.
    kill_seen_at
        ``time.time()`` when ``kill_worker.json`` was first seen, else None.
    heartbeats
        The heartbeat file's modification times, as seen.
    log
        What the fake did, one line each.
    cycles
        Looks at the access point done so far.
    """

    def __init__(
        self,
        access_point: Path,
        jobs: Sequence[Mapping[str, Any]],
        *,
        map_type: MapType = MapType.ONE_TO_ONE,
        more_jobs: Sequence[Mapping[str, Any]] = (),
        ranges: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
        events_per_range: int = 10,
        prefeed: int = 0,
        period_s: float = 1.0,
        job_spec_format: str = "json",
        files: HarvesterFiles | None = None,
        write_config: bool = False,
        event_faults: Sequence[Fault | None] = (),
        job_faults: Sequence[Fault | None] = (),
        half_pause_s: float = 2.0,
        input_dir: Path | None = None,
        polling: bool = True,
        softkill_file: str = "pilot_softkill.json",
        kill_file: str = "pilot_tobekilled.json",
    ) -> None:
        if job_spec_format not in {"json", "cgi"}:
            raise ValueError(f"job_spec_format must be json or cgi, not {job_spec_format!r}")
        if map_type is MapType.ONE_TO_ONE and len(jobs) != 1:
            raise ValueError("a OneToOne worker gets exactly one job")
        if not jobs:
            raise ValueError("a worker starts with at least one job")
        if map_type is MapType.MANY_TO_ONE and prefeed:
            raise ValueError("Harvester feeds no events to a ManyToOne worker")
        self.access_point = access_point.resolve()
        self.map_type = map_type
        self.period_s = period_s
        self.job_spec_format = job_spec_format
        self.files = files or HarvesterFiles()
        self.half_pause_s = half_pause_s
        self.input_dir = input_dir
        self.polling = polling
        self.softkill_file = softkill_file
        self.kill_file = kill_file
        self._initial = [dict(j) for j in jobs]
        self._more = deque(dict(j) for j in more_jobs)
        self._range_source = {int(k): [dict(r) for r in v] for k, v in (ranges or {}).items()}
        self._events_per_range = events_per_range
        self._prefeed = prefeed
        self._event_faults = deque(event_faults)
        self._job_faults = deque(job_faults)
        self._write_config = write_config

        self.violations: list[str] = []
        self.event_feeds: list[EventFeed] = []
        self.job_feeds: list[JobFeed] = []
        self.event_requests: list[Request] = []
        self.job_requests: list[Request] = []
        self.consumed_dumps: list[Path] = []
        self.kill_seen_at: float | None = None
        self.heartbeats: list[float] = []
        self.log: list[str] = []
        self.cycles = 0

        self._jobs: dict[int, _JobState] = {}
        self._declared: list[DeclaredFile] = []
        self._foreign_ranges: set[str] = set()
        self._lost_ranges: set[str] = set()
        self._steps: deque[_Step] = deque()
        self._next_step_at = 0.0
        self._lock = threading.RLock()
        self._cycle_done = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[str] = []
        self._kill_checked = False
        self._job_request_mtime: float | None = None
        self._started = False
        self._stopped = False

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """Where ``panda_harvester.cfg`` is written (beside the access point) with ``write_config``."""
        return self.access_point.parent / f"{self.access_point.name}.panda_harvester.cfg"

    def start(self) -> FakeHarvester:
        """Set up the access point, feed the initial jobs (and ranges), start polling."""
        if self._started:
            raise RuntimeError("the fake Harvester was started already")
        self._started = True
        self.access_point.mkdir(parents=True, exist_ok=True)
        if self._write_config:
            self.config_path.write_text(self.files.config_text(), encoding="utf-8")
        with self._lock:
            self._feed_jobs(self._initial, self._next_fault(self._job_faults), initial=True)
            if self._prefeed:
                feed = {
                    pid: self._take_ranges(state, self._prefeed)
                    for pid, state in self._jobs.items()
                    if _is_event_service(state.params)
                }
                self._feed_events(feed, self._next_fault(self._event_faults), prefed=True)
            self._run_due_steps(time.monotonic())
        if self.polling:
            self._thread = threading.Thread(target=self._loop, name="fake-harvester", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling, complete pending writes, take a last look, check that declared files remain.

        Raises
        ------
        RuntimeError
            If the polling thread failed (the fake's own bug, not the pilot's).
        """
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self._run_all_steps()
            self._cycle(final=True)
            for path in self.misplaced_reports():
                self._violate(
                    f"{path} is written where Harvester's messenger ({self.map_type}) never reads it"
                )
            for item in self._declared:
                if not Path(item.path).is_file():
                    self._violate(
                        f"job {item.panda_id}: declared {item.file_type} {item.path} was removed before "
                        "Harvester staged it out"
                    )
        if self._errors:
            raise RuntimeError("the fake Harvester failed:\n" + "\n".join(self._errors))

    def __enter__(self) -> FakeHarvester:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def tick(self) -> None:
        """One look at the access point now (for tests driving the fake by hand)."""
        with self._lock:
            self._run_due_steps(time.monotonic())
            self._cycle(final=False)
            self._run_due_steps(time.monotonic())

    def complete_writes(self) -> None:
        """Finish pending (half-done) writes now, without waiting for their pauses."""
        with self._lock:
            self._run_all_steps()

    def wait_cycles(self, n: int = 1, timeout: float = 30.0) -> None:
        """Block until the polling thread has completed ``n`` more looks.

        Raises
        ------
        TimeoutError
            If that takes longer than ``timeout``.
        """
        with self._cycle_done:
            target = self.cycles + n
            if not self._cycle_done.wait_for(lambda: self.cycles >= target, timeout=timeout):
                raise TimeoutError(f"the fake Harvester did not complete {n} look(s) in {timeout} s")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait until ``predicate()`` holds (checked after every look); return whether it did."""
        deadline = time.monotonic() + timeout
        with self._cycle_done:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cycle_done.wait(timeout=min(left, 0.5))
        return True

    def _loop(self) -> None:
        next_cycle = time.monotonic() + self.period_s
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                with self._lock:
                    self._run_due_steps(now)
                    if now >= next_cycle:
                        next_cycle = now + self.period_s
                        self._cycle(final=False)
                        self._run_due_steps(time.monotonic())
            except Exception:
                with self._lock:
                    self._errors.append(traceback.format_exc())
                    self._cycle_done.notify_all()
            wake = next_cycle if not self._steps else min(next_cycle, self._next_step_at)
            self._stop.wait(min(max(wake - time.monotonic(), 0.005), 0.1))

    # --- operator -----------------------------------------------------------------------------

    def operator_command(self, kind: str, panda_ids: Sequence[int] | None = None) -> Path:
        """Create the operator's ``softkill`` or ``tobekilled`` file in the access point (atomically).

        Parameters
        ----------
        kind
            ``softkill`` or ``tobekilled``.
        panda_ids
            The jobs it is for (``{"PandaIDs": [...]}``); None: the whole run (an empty file).
        """
        name = {"softkill": self.softkill_file, "tobekilled": self.kill_file}[kind]
        path = self.access_point / name
        text = "" if panda_ids is None else json.dumps({"PandaIDs": list(panda_ids)})
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        with self._lock:
            self.log.append(f"{time.time():.3f} operator: {name} {text}")
        return path

    # --- what the tests look at ---------------------------------------------------------------

    @property
    def kill_seen(self) -> bool:
        """Whether ``kill_worker.json`` has appeared."""
        return self.kill_seen_at is not None

    def panda_ids(self) -> list[int]:
        """The PandaIDs fed to the worker, in feed order."""
        with self._lock:
            return list(self._jobs)

    def misplaced_reports(self) -> list[Path]:
        """Reports (worker attributes, job report, event status dump) where the messenger never reads them.

        The messenger reads them in ``get_access_point(workspec, PandaID)`` of each job of the worker
        (HSF/harvester ``shared_file_messenger.py``: ``get_work_attributes``, ``get_files_to_stage_out``):
        a report file of that name in the access point or one directory below it, elsewhere, is
        misplaced. Directories named after a PandaID this fake did not feed (`Fault.FOREIGN`) are left
        out: no place is read for a job Harvester does not know.
        """
        names = {
            self.files.workerAttributesFile,
            self.files.jobReportFile,
            self.files.eventStatusDumpJsonFile,
        }
        with self._lock:
            read_at = {state.access_point for state in self._jobs.values()}
            fed = set(self._jobs)
        found: list[Path] = []
        dirs = [self.access_point, *sorted(p for p in self.access_point.iterdir() if p.is_dir())]
        for directory in dirs:
            pid = _int(directory.name) if directory != self.access_point else None
            if pid is not None and pid not in fed:
                continue
            if directory in read_at:
                continue
            found.extend(directory / name for name in sorted(names) if (directory / name).is_file())
        return found

    def job_access_point(self, panda_id: int) -> Path:
        """Where Harvester looks for one job's files."""
        return self._state(panda_id).access_point

    def served_ranges(self, panda_id: int) -> list[str]:
        """Range ids fed to the pilot for a job, in feed order."""
        with self._lock:
            return list(self._state(panda_id).served)

    def ranges_left(self, panda_id: int) -> int:
        """Ranges of a job still in the store (not fed yet)."""
        with self._lock:
            return len(self._state(panda_id).store)

    def told_no_more(self, panda_id: int) -> bool:
        """Whether the job was fed its empty list ("no more ranges")."""
        with self._lock:
            return self._state(panda_id).told_no_more

    def range_reports(self, panda_id: int) -> dict[str, list[str]]:
        """Every status reported per range id, in order, over all consumed dump files."""
        with self._lock:
            return {rid: list(s) for rid, s in self._state(panda_id).reports.items()}

    def finished_ranges(self, panda_id: int) -> list[str]:
        """Range ids reported ``finished`` (once per report: a duplicate shows twice)."""
        with self._lock:
            return [
                rid
                for rid, statuses in self._state(panda_id).reports.items()
                for status in statuses
                if status == "finished"
            ]

    def attributes(self, panda_id: int) -> list[dict[str, Any]]:
        """Every distinct ``worker_attributes.json`` content seen for a job, in order."""
        with self._lock:
            return [dict(a) for a in self._state(panda_id).attributes]

    def status_sequence(self, panda_id: int) -> list[str]:
        """The ``jobStatus`` values seen for a job, in order (repeats of one status collapsed)."""
        seq: list[str] = []
        for attrs in self.attributes(panda_id):
            status = str(attrs.get("jobStatus"))
            if not seq or seq[-1] != status:
                seq.append(status)
        return seq

    def final_attributes(self, panda_id: int) -> dict[str, Any] | None:
        """The job's last attributes if their ``jobStatus`` is final, else None."""
        attrs = self.attributes(panda_id)
        if attrs and attrs[-1].get("jobStatus") in FINAL_JOB_STATUSES:
            return attrs[-1]
        return None

    def job_report(self, panda_id: int) -> Any:
        """The job's last ``jobReport.json`` content (None if none was seen)."""
        with self._lock:
            return self._state(panda_id).job_report

    def declared_outputs(self, panda_id: int, file_type: str | None = None) -> list[DeclaredFile]:
        """Files declared for a job (of one ``type`` if given), in order."""
        with self._lock:
            return [
                d
                for d in self._declared
                if d.panda_id == panda_id and (file_type is None or d.file_type == file_type)
            ]

    @property
    def foreign_ranges(self) -> set[str]:
        """Range ids fed for the unknown PandaID (`Fault.FOREIGN`)."""
        with self._lock:
            return set(self._foreign_ranges)

    # --- one look at the access point -------------------------------------------------------

    def _cycle(self, *, final: bool) -> None:
        """What Harvester does on one of its periods, and the checks."""
        kill_now = (self.access_point / self.files.killWorkerFile).exists()
        first_kill = kill_now and self.kill_seen_at is None
        if first_kill:
            self.kill_seen_at = time.time()
            self.log.append(f"{self.kill_seen_at:.3f} {self.files.killWorkerFile} appeared")
        self._read_heartbeat()
        for state in list(self._jobs.values()):
            self._read_attributes(state)
        for access_point, owners in self._dump_points().items():
            self._consume_dump(access_point, owners)
        if not final and not self._steps:
            self._handle_event_request()
        if not final and not self._steps:
            self._handle_job_request()
        if first_kill:
            for state in self._jobs.values():
                last = state.attributes[-1].get("jobStatus") if state.attributes else None
                if last not in FINAL_JOB_STATUSES:
                    self._violate(
                        f"{self.files.killWorkerFile} appeared before the final "
                        f"{self.files.workerAttributesFile} of job {state.panda_id} (last: {last})"
                    )
            self._kill_checked = True
        self.cycles += 1
        self._cycle_done.notify_all()

    def _dump_points(self) -> dict[Path, set[int]]:
        points: dict[Path, set[int]] = {}
        for state in self._jobs.values():
            points.setdefault(state.access_point, set()).add(state.panda_id)
        return points

    def _after_kill(self, what: str) -> None:
        if self._kill_checked:
            self._violate(f"{what} after {self.files.killWorkerFile} (Harvester may have cancelled the job)")

    # --- reading what the pilot wrote ---------------------------------------------------------

    def _read_json(self, path: Path, what: str) -> tuple[bool, Any]:
        """(readable, content) of a file the pilot must write atomically; a torn file is a violation."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False, None
        try:
            return True, json.loads(text)
        except ValueError as exc:
            self._violate(f"{what} {path} is not valid JSON (not written atomically?): {exc}: {text[:200]!r}")
            return False, None

    def _read_heartbeat(self) -> None:
        try:
            mtime = (self.access_point / self.files.heartbeatFile).stat().st_mtime
        except FileNotFoundError:
            return
        if not self.heartbeats or self.heartbeats[-1] != mtime:
            self.heartbeats.append(mtime)

    def _read_attributes(self, state: _JobState) -> None:
        path = state.access_point / self.files.workerAttributesFile
        ok, attrs = self._read_json(path, "worker attributes")
        if ok:
            self._check_attributes(state, path, attrs)
        report_path = state.access_point / self.files.jobReportFile
        try:
            mtime = report_path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != state.report_mtime:
            ok, report = self._read_json(report_path, "job report")
            if ok:
                state.report_mtime = mtime
                if not isinstance(report, dict):
                    self._violate(f"job report {report_path} is a {type(report).__name__}, not an object")
                state.job_report = report
                self._after_kill(f"job {state.panda_id}: {report_path.name} rewritten")

    def _check_attributes(self, state: _JobState, path: Path, attrs: Any) -> None:
        pid = state.panda_id
        if not isinstance(attrs, dict):
            self._violate(f"job {pid}: {path} is a {type(attrs).__name__}, not a flat object")
            return
        previous = state.attributes[-1] if state.attributes else None
        if attrs == previous:
            return
        state.attributes.append(attrs)
        if previous is None or previous.get("jobStatus") != attrs.get("jobStatus"):
            self.log.append(f"{time.time():.3f} job {pid}: jobStatus {attrs.get('jobStatus')!r}")
        self._after_kill(f"job {pid}: {path.name} changed")
        status = attrs.get("jobStatus")
        if status not in JOB_STATUS_ORDER:
            self._violate(
                f"job {pid}: {path.name} jobStatus {status!r} is not starting/running/finished/failed"
            )
            return
        nested = sorted(k for k, v in attrs.items() if isinstance(v, dict | list))
        if nested:
            self._violate(f"job {pid}: {path.name} is not flat: {nested} (Harvester forwards flat fields)")
        for key in ("pilotErrorCode", "transExitCode", "coreCount", "nEvents"):
            if key in attrs and (isinstance(attrs[key], bool) or not isinstance(attrs[key], int)):
                self._violate(f"job {pid}: {path.name} {key} is {attrs[key]!r}, not an integer")
        before = previous.get("jobStatus") if previous is not None else None
        if before in FINAL_JOB_STATUSES and status != before:
            self._violate(f"job {pid}: jobStatus went from final {before!r} to {status!r}")
        elif before in JOB_STATUS_ORDER and JOB_STATUS_ORDER[status] < JOB_STATUS_ORDER[str(before)]:
            self._violate(f"job {pid}: jobStatus went backwards from {before!r} to {status!r}")
        if status in FINAL_JOB_STATUSES and state.final_seen_cycle is None:
            state.final_seen_cycle = self.cycles
        code = attrs.get("pilotErrorCode", 0)
        if status == "failed" and not code:
            self._violate(f"job {pid}: jobStatus failed without a pilotErrorCode")
        if status == "finished" and code:
            self._violate(f"job {pid}: jobStatus finished with pilotErrorCode {code!r}")

    def _consume_dump(self, access_point: Path, owners: set[int]) -> None:
        """Harvester's get_files_to_stage_out for one access point, then acknowledge_events_files."""
        path = access_point / self.files.eventStatusDumpJsonFile
        read_path = path.with_name(path.name + ".read")
        if not read_path.exists():
            try:
                os.rename(path, read_path)
            except FileNotFoundError:
                return
        text = read_path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError as exc:
            self._violate(f"{path} is not valid JSON (not written atomically?): {exc}: {text[:200]!r}")
            read_path.unlink()
            return
        if not isinstance(data, dict):
            self._violate(f"{path} holds a {type(data).__name__}, not an object keyed by PandaID")
            read_path.unlink()
            return
        acknowledged = read_path.with_name(
            read_path.name + "." + datetime.datetime.now(datetime.UTC).strftime(ACK_TIME_FORMAT)
        )
        n_data = 0
        events: dict[str, list[dict[str, Any]]] = {}
        for key, entries in data.items():
            pid = _int(key)
            state = self._jobs.get(pid) if pid is not None else None
            if state is None or pid not in owners:
                self._violate(f"{path} has entries for {key!r}, which is not a job of this access point")
                continue
            if not isinstance(entries, list):
                self._violate(f"{path}: the entries of job {key} are a {type(entries).__name__}, not a list")
                continue
            if state.final_seen_cycle is not None and state.final_seen_cycle < self.cycles and entries:
                self._violate(
                    f"{path}: entries for job {key} declared after its final "
                    f"{self.files.workerAttributesFile} (outputs and log must be declared first)"
                )
            for entry in entries:
                n_data += 1
                event = self._check_entry(state, path, entry, str(acknowledged))
                if event is not None:
                    events.setdefault(key, []).append(event)
        if n_data == 0:
            read_path.unlink()
            self.log.append(f"{time.time():.3f} consumed empty {path}")
            return
        self._after_kill(f"{path} written")
        if events:
            self._update_events(access_point, events)
        os.rename(read_path, acknowledged)
        self.consumed_dumps.append(acknowledged)
        self.log.append(f"{time.time():.3f} consumed {path} ({n_data} entries) as {acknowledged.name}")

    def _check_entry(self, state: _JobState, path: Path, entry: Any, dump: str) -> dict[str, Any] | None:
        """Check one dump entry; return its event status update as Harvester derives it, if any."""
        pid = state.panda_id
        where = f"{path.name} of job {pid}"
        if not isinstance(entry, dict):
            self._violate(f"{where}: entry {entry!r} is not an object")
            return None
        if "filetype" in entry:
            self._violate(f"{where}: entry has 'filetype' (Harvester reads 'type' and drops it): {entry}")
        range_id = entry.get("eventRangeID")
        status = entry.get("eventStatus")
        if "path" in entry:
            file_type = entry.get("type")
            if file_type not in FILE_TYPES:
                self._violate(f"{where}: file entry without a valid 'type' ({file_type!r}): {entry}")
                return None
            self._check_file(state, where, entry, str(file_type), dump)
            if file_type not in EVENT_FILE_TYPES:
                return None
        if range_id is None or status is None:
            self._violate(f"{where}: entry without eventRangeID/eventStatus: {entry}")
            return None
        self._record_status(state, where, str(range_id), status, has_file="path" in entry)
        return {"eventRangeID": range_id, "eventStatus": status}

    def _check_file(
        self, state: _JobState, where: str, entry: dict[str, Any], file_type: str, dump: str
    ) -> None:
        pfn = entry["path"]
        fsize, chksum, guid = entry.get("fsize"), entry.get("chksum"), entry.get("guid")
        range_id, status, is_zip = entry.get("eventRangeID"), entry.get("eventStatus"), entry.get("isZip")
        required = ["path", "type", "fsize", "chksum"]
        if file_type in EVENT_FILE_TYPES:
            required += ["guid", "eventRangeID", "eventStatus"]
        missing = [k for k in required if entry.get(k) in (None, "")]
        if missing:
            self._violate(f"{where}: {file_type} entry lacks {missing}: {entry}")
        self._declared.append(
            DeclaredFile(
                panda_id=state.panda_id,
                file_type=file_type,
                path=str(pfn),
                fsize=fsize if isinstance(fsize, int) else None,
                chksum=chksum if isinstance(chksum, str) else None,
                guid=guid if isinstance(guid, str) else None,
                range_id=range_id if isinstance(range_id, str) else None,
                status=status if isinstance(status, str) else None,
                is_zip=is_zip if isinstance(is_zip, int) else None,
                dump=dump,
            )
        )
        if not isinstance(pfn, str) or not os.path.isabs(pfn):
            self._violate(f"{where}: path {pfn!r} is not absolute")
            return
        file_path = Path(pfn)
        if not file_path.is_file():
            self._violate(f"{where}: declared {file_type} {pfn} does not exist")
            return
        if fsize is not None and (isinstance(fsize, bool) or not isinstance(fsize, int)):
            self._violate(f"{where}: fsize {fsize!r} of {pfn} is not an integer")
        elif fsize is not None and fsize != file_path.stat().st_size:
            self._violate(f"{where}: fsize {fsize} of {pfn} differs from its size {file_path.stat().st_size}")
        if chksum is not None:
            if not isinstance(chksum, str) or not ADLER32.fullmatch(chksum):
                self._violate(f"{where}: chksum {chksum!r} of {pfn} is not 8 lower-case hex digits (adler32)")
            elif chksum != adler32_of(file_path):
                self._violate(
                    f"{where}: chksum {chksum} of {pfn} differs from its adler32 {adler32_of(file_path)}"
                )
        if file_type == "es_output":
            if is_zip not in (None, 0):
                self._violate(f"{where}: es_output {pfn} has isZip {is_zip!r} (Harvester would not zip it)")
            if isinstance(range_id, str) and file_path.name.split(".")[-1] != range_id:
                self._violate(
                    f"{where}: es_output {file_path.name} does not end in .{range_id} "
                    "(<outputLFN>.<eventRangeID>)"
                )
        elif file_type == "zip_output":
            if is_zip not in (None, 1):
                self._violate(f"{where}: zip_output {pfn} has isZip {is_zip!r}, not 1")
            self._check_zip(where, file_path, range_id)
        elif file_type == "log":
            log_guid = state.params.get("logGUID")
            if log_guid and guid != log_guid:
                self._violate(
                    f"{where}: log {file_path.name} has guid {guid!r}, not the job's logGUID {log_guid}"
                )
        if status is not None and file_type in EVENT_FILE_TYPES and status != "finished":
            self._violate(f"{where}: {file_type} {file_path.name} declared with eventStatus {status!r}")

    def _check_zip(self, where: str, file_path: Path, range_id: object) -> None:
        try:
            with tarfile.open(file_path) as tar:
                members = [Path(m.name).name for m in tar.getmembers() if m.isfile()]
        except (OSError, tarfile.TarError) as exc:
            self._violate(f"{where}: zip_output {file_path} is not a readable tar/zip: {exc}")
            return
        if isinstance(range_id, str) and not any(m.split(".")[-1] == range_id for m in members):
            self._violate(
                f"{where}: zip_output {file_path.name} holds no <outputLFN>.{range_id} ({members[:5]})"
            )

    def _record_status(
        self, state: _JobState, where: str, range_id: str, status: Any, *, has_file: bool
    ) -> None:
        if status not in RANGE_STATUSES:
            self._violate(f"{where}: range {range_id} has eventStatus {status!r}")
            return
        if range_id not in state.served:
            origin = "fed for an unknown PandaID" if range_id in self._foreign_ranges else "never served"
            self._violate(f"{where}: range {range_id} was {origin} to job {state.panda_id}")
        reports = state.reports.setdefault(range_id, [])
        finals = [s for s in reports if s != "running"]
        if status != "running" and finals:
            kind = "finished twice" if status == finals[-1] == "finished" else f"{finals[-1]} then {status}"
            self._violate(f"{where}: range {range_id} reported {kind}")
        elif status == "running" and finals:
            self._violate(f"{where}: range {range_id} reported running after {finals[-1]}")
        if status == "finished" and not has_file:
            self._violate(
                f"{where}: range {range_id} reported finished without its output (es_output/zip_output)"
            )
        reports.append(status)

    def _update_events(self, access_point: Path, events: dict[str, list[dict[str, Any]]]) -> None:
        """Harvester's worker_updateevents.json: written (.new, rename), read, acknowledged."""
        path = access_point / self.files.updateEventsFile
        new = path.with_name(path.name + ".new")
        with new.open("w", encoding="utf-8") as handle:
            json.dump(events, handle)
        os.rename(new, path)
        read_path = path.with_name(path.name + ".read")
        os.rename(path, read_path)
        stamp = datetime.datetime.now(datetime.UTC).strftime(ACK_TIME_FORMAT)
        os.rename(read_path, read_path.with_name(f"{read_path.name}.{stamp}"))

    # --- requests and feeds -------------------------------------------------------------------

    def _handle_event_request(self) -> None:
        """Harvester's events_requested, then feed_events."""
        path = self.access_point / self.files.eventRequestFile
        ok, request = self._read_json(path, "event request")
        if not ok:
            return  # Harvester's events_requested: {} when missing or unreadable; the file stays
        self.event_requests.append(Request(time.time(), request))
        self.log.append(f"{time.time():.3f} event request {json.dumps(request)[:300]}")
        if not isinstance(request, dict):
            self._violate(f"{path} holds a {type(request).__name__}, not an object keyed by PandaID")
            path.unlink()
            return
        if self.map_type is MapType.MANY_TO_ONE:
            self.log.append(f"{time.time():.3f} event request in a ManyToOne worker: nothing fed")
            path.unlink()  # feed_events: TOBEFIXED for MultiJobs, the request is removed all the same
            return
        fault = self._next_fault(self._event_faults)
        feed: dict[int, list[dict[str, Any]]] = {}
        for key, spec in request.items():
            state = self._check_event_request(path, key, spec)
            if state is None or fault is Fault.GARBAGE:
                continue
            n_ranges = spec["nRanges"]
            feed[state.panda_id] = self._take_ranges(state, n_ranges)
        self._feed_events(feed, fault, prefed=False)

    def _check_event_request(self, path: Path, key: str, spec: Any) -> _JobState | None:
        pid = _int(key)
        state = self._jobs.get(pid) if pid is not None else None
        if state is None:
            self._violate(f"{path}: asks for ranges of {key!r}, which is not a job of this worker")
            return None
        if not isinstance(spec, dict) or any(k not in spec for k in EVENT_REQUEST_FIELDS):
            self._violate(
                f"{path}: the request of job {key} is not {{{', '.join(EVENT_REQUEST_FIELDS)}}}: {spec}"
            )
            return None
        if not _is_event_service(state.params):
            self._violate(f"{path}: asks for ranges of job {key}, which is not an event-service job")
        for name, job_key in (("pandaID", "PandaID"), ("taskID", "taskID"), ("jobsetID", "jobsetID")):
            if job_key in state.params and str(spec[name]) != str(state.params[job_key]):
                self._violate(
                    f"{path}: job {key} has {name} {spec[name]!r}, the job's is {state.params[job_key]!r}"
                )
        n_ranges = spec["nRanges"]
        if isinstance(n_ranges, bool) or not isinstance(n_ranges, int) or n_ranges <= 0:
            self._violate(f"{path}: job {key} asks for nRanges {n_ranges!r}")
            return None
        if state.told_no_more:
            self._violate(f"{path}: asks for ranges of job {key} after it was fed its empty list (no more)")
        return state

    def _take_ranges(self, state: _JobState, n: int) -> list[dict[str, Any]]:
        taken = [state.store.popleft() for _ in range(min(n, len(state.store)))]
        for item in taken:
            state.served[str(item["eventRangeID"])] = item
        if not taken:
            state.told_no_more = True
        return taken

    def _feed_events(
        self, feed: dict[int, list[dict[str, Any]]], fault: Fault | None, *, prefed: bool
    ) -> None:
        """Harvester's feed_events: JobsEventRanges.json written NON-atomically, then the request removed."""
        path = self.access_point / self.files.eventRangesFile
        self._check_unconsumed_feed(path)
        document: dict[str, list[dict[str, Any]]] = {str(pid): ranges for pid, ranges in feed.items()}
        if fault is Fault.FOREIGN:
            task = next(iter(self._jobs.values())).params.get("taskID", 1)
            foreign = {
                "eventRangeID": f"{task}-{UNKNOWN_PANDA_ID}-1-1-1",
                "startEvent": 1,
                "lastEvent": 10,
                "LFN": "EVNT.foreign._000001.pool.root.1",
                "GUID": "ffffffff-0000-0000-0000-000000000000",
                "scope": "mc",
            }
            document[str(UNKNOWN_PANDA_ID)] = [foreign]
            self._foreign_ranges.add(str(foreign["eventRangeID"]))
        text = GARBAGE if fault is Fault.GARBAGE else json.dumps(document)
        self.event_feeds.append(
            EventFeed(
                at=time.time(),
                ranges={pid: [str(r["eventRangeID"]) for r in ranges] for pid, ranges in feed.items()},
                fault=fault,
                prefed=prefed,
            )
        )
        self.log.append(
            f"{time.time():.3f} feeding {path.name}"
            f" ({fault or 'ok'}): {{{', '.join(f'{p}: {len(r)}' for p, r in feed.items())}}}"
        )
        self._schedule_write(path, text, half=fault is Fault.HALF)
        request = self.access_point / self.files.eventRequestFile
        self._steps.append((0.0, lambda: request.unlink(missing_ok=True)))

    def _check_unconsumed_feed(self, path: Path) -> None:
        """A feed written over one the pilot has not taken loses its ranges: the pilot asked too early."""
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(previous, dict):
            return
        lost = [
            str(r.get("eventRangeID"))
            for v in previous.values()
            if isinstance(v, list)
            for r in v
            if isinstance(r, dict)
        ]
        if lost:
            self._lost_ranges.update(lost)
            self._violate(
                f"the pilot asked for ranges while {path.name} was not consumed: feeding again overwrites "
                f"{len(lost)} range(s): {lost[:5]}"
            )

    def _handle_job_request(self) -> None:
        """Harvester's job_requested, then feed_jobs when it has jobs (else the request stays)."""
        path = self.access_point / self.files.jobRequestFile
        if not path.exists():
            return
        ok, request = self._read_json(path, "job request")
        n_jobs = 1
        if ok and isinstance(request, dict) and isinstance(request.get("nJobs"), int):
            n_jobs = request["nJobs"]
        elif ok:
            self._violate(f"{path} is not {{'nJobs': N}}: {request!r}")
        mtime = path.stat().st_mtime if path.exists() else None
        if mtime != self._job_request_mtime:  # a new request (an unanswered one stays and is read again)
            self._job_request_mtime = mtime
            self.job_requests.append(Request(time.time(), request))
            self.log.append(f"{time.time():.3f} job request {request!r} ({len(self._more)} job(s) left)")
        if not self._more:
            return
        if n_jobs <= 0:
            self._violate(f"{path} asks for {n_jobs} jobs")
            return
        count = 1 if self.map_type is MapType.ONE_TO_ONE else n_jobs
        jobs = [self._more.popleft() for _ in range(min(count, len(self._more)))]
        self._feed_jobs(jobs, self._next_fault(self._job_faults), initial=False)

    def _feed_jobs(self, jobs: list[dict[str, Any]], fault: Fault | None, *, initial: bool) -> None:
        """Harvester's feed_jobs: per job the spec, the catalogue, symlinks; then the PandaIDs file."""
        catalogue = pool_file_catalog(jobs)
        panda_ids: list[int] = []
        for params in jobs:
            pid = int(params["PandaID"])
            access_point = self.access_point
            if self.map_type is MapType.MANY_TO_ONE:
                access_point = self.access_point / str(pid)
                access_point.mkdir(exist_ok=True)  # setup_access_points
            state = _JobState(pid, params, access_point)
            source = self._range_source.get(pid)
            if source is None and _is_event_service(params):
                source = cut_ranges(params, self._events_per_range)
            state.store.extend(source or ())
            self._jobs[pid] = state
            if fault is Fault.GARBAGE:
                text = GARBAGE
            elif self.job_spec_format == "cgi":
                text = urlencode(params)
            else:
                text = json.dumps({pid: params})
            self._schedule_write(access_point / self.files.jobSpecFile, text, half=fault is Fault.HALF)
            self._steps.append((0.0, _writer(access_point / self.files.xmlPoolCatalogFile, catalogue)))
            self._steps.append((0.0, self._symlinker(params, access_point)))
            panda_ids.append(pid)
        listed = [*panda_ids, UNKNOWN_PANDA_ID] if fault is Fault.FOREIGN else panda_ids
        self.job_feeds.append(JobFeed(time.time(), listed, fault))
        self.log.append(f"{time.time():.3f} feeding jobs {listed} ({fault or 'ok'})")
        ids_path = self.access_point / self.files.pandaIDsFile
        self._schedule_write(ids_path, json.dumps(listed), half=fault is Fault.HALF)
        if not initial:
            request = self.access_point / self.files.jobRequestFile
            self._steps.append((0.0, lambda: request.unlink(missing_ok=True)))

    def _symlinker(self, params: Mapping[str, Any], access_point: Path) -> Callable[[], None]:
        def link() -> None:
            if self.input_dir is None:
                return
            for lfn in _split(params.get("inFiles")):
                source = self.input_dir / lfn
                target = access_point / lfn
                if not source.exists() or source == target:
                    continue
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(source)

        return link

    # --- writes, possibly in two halves ------------------------------------------------------------

    def _schedule_write(self, path: Path, text: str, *, half: bool) -> None:
        """Queue a NON-atomic write (``open(path, "w")``, write, close), in two halves when ``half``."""
        if not half:
            self._steps.append((0.0, _writer(path, text)))
            return
        cut = max(1, len(text) // 2)
        handle: list[IO[str]] = []

        def first() -> None:
            stream = path.open("w", encoding="utf-8")
            stream.write(text[:cut])
            stream.flush()
            handle.append(stream)
            self.log.append(f"{time.time():.3f} {path.name}: first half written")

        def second() -> None:
            stream = handle.pop()
            stream.write(text[cut:])
            stream.close()
            self.log.append(f"{time.time():.3f} {path.name}: second half written")

        self._steps.append((0.0, first))
        self._steps.append((self.half_pause_s, second))

    def _run_due_steps(self, now: float) -> None:
        while self._steps:
            delay, step = self._steps[0]
            if delay and self._next_step_at == 0.0:
                self._next_step_at = now + delay
            if delay and now < self._next_step_at:
                return
            self._steps.popleft()
            self._next_step_at = 0.0
            step()

    def _run_all_steps(self) -> None:
        while self._steps:
            self._steps.popleft()[1]()
        self._next_step_at = 0.0

    # --- helpers ------------------------------------------------------------------------------

    def _state(self, panda_id: int) -> _JobState:
        with self._lock:
            try:
                return self._jobs[panda_id]
            except KeyError:
                raise KeyError(f"job {panda_id} was not fed by this fake Harvester") from None

    @staticmethod
    def _next_fault(faults: deque[Fault | None]) -> Fault | None:
        return faults.popleft() if faults else None

    def _violate(self, message: str) -> None:
        self.violations.append(message)
        self.log.append(f"{time.time():.3f} VIOLATION {message}")

    def summary(self) -> str:
        """Everything the fake did and found, for an assertion message."""
        with self._lock:
            return "\n".join([*self.log[-80:], "violations:", *self.violations])


def _writer(path: Path, text: str) -> Callable[[], None]:
    def write() -> None:
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text)

    return write


def _int(text: object) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None
