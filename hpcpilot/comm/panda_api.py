"""The PanDA server's HTTP API: pure builders of requests and parsers of replies (no I/O).

Two generations (PROTOCOLS.md section 2), chosen by ``panda.api``:

* ``v1``: ``/api/v1/<module>/<method>``; a JSON body on POST (snake_case parameters, values typed: the
  server checks ``isinstance`` against its signature), a query string on GET; the reply is
  ``{"success": bool, "message": str, "data": ...}``.
* ``legacy``: ``/server/panda/<method>``; a form-encoded POST body (camelCase parameters) with
  ``Accept: application/json``; the reply is JSON with a ``StatusCode``, or urlencoded
  (``StatusCode=20``) from a server that ignores ``Accept``.

The calls (v1 path under ``/api/v1/``, legacy method under ``/server/panda/``):

* get jobs: POST ``pilot/acquire_jobs`` / ``getJob``;
* heartbeat and final update: POST ``pilot/update_job`` / ``updateJob``;
* get ranges: POST ``event/acquire_event_ranges`` / ``getEventRanges``;
* update ranges: POST ``event/update_event_ranges`` / ``updateEventRanges``;
* ranges left: GET ``event/get_available_event_range_count`` / ``checkEventsAvailability``.

Only parameter names the server's signature knows are ever sent: an unknown keyword fails the whole call
on the server.

**Output files of the final update.** The server stores the final update's ``job_output_report``
(legacy: ``xml``) and its Adder parses it as JSON: ``{"<lfn>": {"guid": ..., "fsize": ...,
"adler32": ...}}`` (this is what Pilot 3 sends today under the old name ``xml``; the old POOL
catalogue XML is no longer read). `output_report` builds exactly that; ``surl`` is left out because
hpcpilot does not stage files out to storage (yet).

**The final update** carries what Pilot 3 sends (`job_update`): besides the file report, the job
report as ``meta_data`` (JSON text), ``exe_error_code``/``exe_error_diag``, ``n_input_files`` and,
with every CPU time, ``cpu_conversion_factor``.

**Commands** of an ``update_job`` reply: ``tobekilled``, ``softkill``, ``debug``/``debugoff`` and
``alreadydone``/``badattemptnr`` (`ABANDON_COMMANDS`: the job is done elsewhere, or this attempt is
stale; nothing more is sent for it).

**Event range updates** use format version 0: ``event_ranges`` (legacy ``eventRanges``) is a JSON
string of ``[{"eventRangeID", "eventStatus", "errorCode"?, "errorDiag"?, "cpuConsumptionTime"?,
"coreCount"?}, ...]``; the reply's ``Returns`` list says per range whether it was accepted.

Every malformed reply raises `CommunicatorError` whose message names the call and whose context has
``call`` and ``field``; ``retryable`` says whether asking again can help (a malformed reply, a server
timeout or database error: yes). A refusal that is about the request itself (not about the
credentials) has ``rejected`` set in its context: the same request will never be accepted.
"""

from __future__ import annotations

import enum
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcpilot.comm.base import JobReport
from hpcpilot.model.bounds import fit_words
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import Job
from hpcpilot.model.states import JobState

__all__ = [
    "RANGE_STATUSES",
    "Api",
    "Call",
    "EncodedRequest",
    "JobUpdate",
    "JobsReply",
    "RangeUpdate",
    "RangesReply",
    "Request",
    "ServerCommand",
    "StatusCode",
    "UpdateJobReply",
    "acquire_event_ranges",
    "acquire_jobs",
    "decode_reply",
    "format_time",
    "get_available_event_range_count",
    "job_update",
    "output_report",
    "parse_acquire_event_ranges",
    "parse_acquire_jobs",
    "parse_command",
    "parse_event_range_count",
    "parse_update_event_ranges",
    "parse_update_job",
    "update_event_ranges",
    "update_job",
]

RANGE_STATUSES = ("running", "finished", "failed", "fatal")
"""The event range statuses a pilot reports."""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How ``startTime``/``endTime`` are written (UTC)."""

NO_JOBS_MESSAGE = "No jobs in PanDA"
"""The ``message`` of a v1 ``acquire_jobs`` reply that has no job."""


class Api(enum.Enum):
    """The generation of the server API."""

    V1 = "v1"
    LEGACY = "legacy"


class Call(enum.Enum):
    """The server calls the pilot makes (named as in the v1 API)."""

    ACQUIRE_JOBS = "acquire_jobs"
    UPDATE_JOB = "update_job"
    ACQUIRE_EVENT_RANGES = "acquire_event_ranges"
    UPDATE_EVENT_RANGES = "update_event_ranges"
    GET_AVAILABLE_EVENT_RANGE_COUNT = "get_available_event_range_count"


class StatusCode(enum.IntEnum):
    """The server's ``StatusCode`` values (PROTOCOLS.md section 2)."""

    OK = 0
    TIMEOUT = 10
    NO_JOBS = 20
    FAILED = 30
    NON_SECURE = 40
    INVALID_TOKEN = 50
    INVALID_ROLE = 60
    PERMISSION_DENIED = 70
    KEY_MISSING = 80
    PROXY_ERROR = 90


_STATUS_WORDS: Mapping[int, str] = {
    StatusCode.TIMEOUT: "timeout",
    StatusCode.NO_JOBS: "no jobs",
    StatusCode.FAILED: "failed",
    StatusCode.NON_SECURE: "non-secure connection",
    StatusCode.INVALID_TOKEN: "invalid token",
    StatusCode.INVALID_ROLE: "invalid role",
    StatusCode.PERMISSION_DENIED: "permission denied",
    StatusCode.KEY_MISSING: "key missing",
    StatusCode.PROXY_ERROR: "proxy error",
}

#: Status codes after which the same call may succeed later (server timeout, database error).
_TRANSIENT_CODES = frozenset({StatusCode.TIMEOUT, StatusCode.FAILED})

#: Status codes that say the credentials are wrong, not the request: it may succeed once they are fixed.
_AUTH_CODES = frozenset(
    {StatusCode.NON_SECURE, StatusCode.INVALID_ROLE, StatusCode.PERMISSION_DENIED, StatusCode.PROXY_ERROR}
)

#: Words of a v1 refusal message that blame the credentials rather than the request.
_AUTH_WORDS = ("role", "secure", "ssl", "permission", "token", "proxy", "certificate")

_ROUTES: Mapping[tuple[Api, Call], tuple[str, str]] = {
    (Api.V1, Call.ACQUIRE_JOBS): ("POST", "/api/v1/pilot/acquire_jobs"),
    (Api.V1, Call.UPDATE_JOB): ("POST", "/api/v1/pilot/update_job"),
    (Api.V1, Call.ACQUIRE_EVENT_RANGES): ("POST", "/api/v1/event/acquire_event_ranges"),
    (Api.V1, Call.UPDATE_EVENT_RANGES): ("POST", "/api/v1/event/update_event_ranges"),
    (Api.V1, Call.GET_AVAILABLE_EVENT_RANGE_COUNT): ("GET", "/api/v1/event/get_available_event_range_count"),
    (Api.LEGACY, Call.ACQUIRE_JOBS): ("POST", "/server/panda/getJob"),
    (Api.LEGACY, Call.UPDATE_JOB): ("POST", "/server/panda/updateJob"),
    (Api.LEGACY, Call.ACQUIRE_EVENT_RANGES): ("POST", "/server/panda/getEventRanges"),
    (Api.LEGACY, Call.UPDATE_EVENT_RANGES): ("POST", "/server/panda/updateEventRanges"),
    (Api.LEGACY, Call.GET_AVAILABLE_EVENT_RANGE_COUNT): ("POST", "/server/panda/checkEventsAvailability"),
}

#: Resource metrics of ``update_job``: PanDA's attribute name (legacy parameter) -> v1 parameter.
METRIC_PARAMS: Mapping[str, str] = {
    "maxRSS": "max_rss",
    "maxVMEM": "max_vmem",
    "maxSWAP": "max_swap",
    "maxPSS": "max_pss",
    "avgRSS": "avg_rss",
    "avgVMEM": "avg_vmem",
    "avgSWAP": "avg_swap",
    "avgPSS": "avg_pss",
    "totRCHAR": "tot_rchar",
    "totWCHAR": "tot_wchar",
    "totRBYTES": "tot_rbytes",
    "totWBYTES": "tot_wbytes",
    "rateRCHAR": "rate_rchar",
    "rateWCHAR": "rate_wchar",
    "rateRBYTES": "rate_rbytes",
    "rateWBYTES": "rate_wbytes",
}

#: The ``update_job`` fields of `JobUpdate`: (v1 parameter, legacy parameter).
_UPDATE_NAMES: Mapping[str, tuple[str, str]] = {
    "panda_id": ("job_id", "jobId"),
    "state": ("job_status", "state"),
    "trans_exit_code": ("trans_exit_code", "transExitCode"),
    "pilot_error_code": ("pilot_error_code", "pilotErrorCode"),
    "pilot_error_diag": ("pilot_error_diag", "pilotErrorDiag"),
    "node": ("node", "node"),
    "site_name": ("site_name", "siteName"),
    "cpu_s": ("cpu_consumption_time", "cpuConsumptionTime"),
    "cpu_unit": ("cpu_consumption_unit", "cpuConsumptionUnit"),
    "core_count": ("core_count", "coreCount"),
    "start_time": ("start_time", "startTime"),
    "end_time": ("end_time", "endTime"),
    "n_events": ("n_events", "nEvents"),
    "attempt_nr": ("attempt_nr", "attemptNr"),
    "batch_id": ("batch_id", "batchID"),
    "output_report": ("job_output_report", "xml"),
    "job_metrics": ("job_metrics", "jobMetrics"),
    "meta_data": ("meta_data", "metaData"),
    "exe_error_code": ("exe_error_code", "exeErrorCode"),
    "exe_error_diag": ("exe_error_diag", "exeErrorDiag"),
    "n_input_files": ("n_input_files", "nInputFiles"),
    "cpu_conversion_factor": ("cpu_conversion_factor", "cpuConversionFactor"),
}

CPU_CONVERSION_FACTOR = 1.0
"""``cpu_conversion_factor`` sent with the CPU time: hpcpilot reports plain CPU seconds (no HS06 scaling)."""


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request ready for the wire.

    Attributes
    ----------
    call
        Which call it is.
    method
        ``GET`` or ``POST``.
    target
        Path and query string, relative to the server's base URL.
    body
        The request body (None for GET).
    headers
        Content type and accepted reply type (never credentials: the HTTP client adds those).
    """

    call: Call
    method: str
    target: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """One call with its parameters, before encoding.

    Attributes
    ----------
    api
        The API generation.
    call
        The call.
    params
        Parameter name -> value, under the generation's names.
    """

    api: Api
    call: Call
    params: tuple[tuple[str, str | int | float], ...]

    @property
    def method(self) -> str:
        """``GET`` or ``POST``."""
        return _ROUTES[(self.api, self.call)][0]

    @property
    def path(self) -> str:
        """The call's path, relative to the server's base URL."""
        return _ROUTES[(self.api, self.call)][1]

    def param(self, name: str) -> str | int | float | None:
        """The value of one parameter, or None."""
        return dict(self.params).get(name)

    def encode(self) -> EncodedRequest:
        """The request as the server expects it.

        A JSON body (v1 POST), a query string (v1 GET) or a form-encoded body (legacy); the reply is
        always asked for as JSON.
        """
        params = dict(self.params)
        accept = ("Accept", "application/json")
        if self.api is Api.V1 and self.method == "GET":
            query = urllib.parse.urlencode(params)
            return EncodedRequest(self.call, "GET", f"{self.path}?{query}", None, (accept,))
        if self.api is Api.V1:
            body = json.dumps(params).encode("utf-8")
            content = ("Content-Type", "application/json")
        else:
            body = urllib.parse.urlencode({k: str(v) for k, v in params.items()}).encode("ascii")
            content = ("Content-Type", "application/x-www-form-urlencoded")
        return EncodedRequest(self.call, "POST", self.path, body, (content, accept))


def _request(api: Api, call: Call, params: Mapping[str, str | int | float | None]) -> Request:
    """A `Request` without the parameters that are None or empty strings."""
    kept = tuple((k, v) for k, v in params.items() if v is not None and v != "")
    return Request(api, call, kept)


def _pick(api: Api, v1: str, legacy: str) -> str:
    return v1 if api is Api.V1 else legacy


def acquire_jobs(
    api: Api,
    *,
    site_name: str,
    n_jobs: int,
    node: str,
    computing_element: str = "",
    prod_source_label: str = "",
    resource_type: str = "",
    harvester_id: str = "",
    worker_id: str = "",
    memory_mb: int | None = None,
    disk_mb: int | None = None,
) -> Request:
    """Ask for up to ``n_jobs`` jobs for a PanDA queue.

    Parameters
    ----------
    api
        The API generation.
    site_name
        The PanDA queue.
    n_jobs
        How many jobs at most.
    node
        The node asking (rank 0's host name).
    computing_element, prod_source_label, resource_type, harvester_id, worker_id
        Sent when set; ``worker_id`` is sent as an integer when it is one.
    memory_mb, disk_mb
        Memory and disk the jobs may use, when known.

    Returns
    -------
    Request
        ``acquire_jobs`` / ``getJob``.
    """
    worker: str | int = int(worker_id) if worker_id.isdigit() else worker_id
    return _request(
        api,
        Call.ACQUIRE_JOBS,
        {
            _pick(api, "site_name", "siteName"): site_name,
            _pick(api, "n_jobs", "nJobs"): n_jobs,
            "node": node,
            _pick(api, "computing_element", "computingElement"): computing_element,
            _pick(api, "prod_source_label", "prodSourceLabel"): prod_source_label,
            _pick(api, "resource_type", "resourceType"): resource_type,
            "harvester_id": harvester_id,
            "worker_id": worker,
            _pick(api, "memory", "mem"): memory_mb,
            _pick(api, "disk_space", "diskSpace"): disk_mb,
        },
    )


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """The content of one ``update_job`` call, independent of the API generation.

    Attributes
    ----------
    panda_id
        ``job_id`` / ``jobId``.
    state
        ``job_status`` / ``state``.
    trans_exit_code, pilot_error_code, pilot_error_diag
        The payload's exit code and the pilot's error, when known.
    node, site_name, batch_id
        Where the job runs.
    cpu_s, cpu_unit
        CPU consumption (sent as whole seconds) and its unit.
    core_count
        Cores the job uses.
    start_time, end_time
        Unix times, sent as ``%Y-%m-%d %H:%M:%S`` UTC.
    n_events
        Events processed.
    attempt_nr
        The job's attempt number.
    metrics
        Resource figures under PanDA's names (``maxRSS``, ...); unknown names are not sent.
    output_report
        The final update's file report (JSON, see `output_report`).
    job_metrics
        ``name=value`` words for ``jobMetrics`` (range counts, user metrics); not sent when empty.
    meta_data
        The job report (JSON text) of the final update, as Pilot 3 sends it (``metaData``).
    exe_error_code, exe_error_diag
        The payload's exit code and what it said about its failure (``exeErrorCode`` /
        ``exeErrorDiag``), at the final update.
    n_input_files
        How many input files the job read (final update).
    cpu_conversion_factor
        Sent with the CPU time, as Pilot 3 does.
    """

    panda_id: int
    state: JobState
    trans_exit_code: int | None = None
    pilot_error_code: int | None = None
    pilot_error_diag: str = ""
    node: str = ""
    site_name: str = ""
    batch_id: str = ""
    cpu_s: float | None = None
    cpu_unit: str = "s"
    core_count: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    n_events: int | None = None
    attempt_nr: int | None = None
    metrics: tuple[tuple[str, float], ...] = ()
    output_report: str = ""
    job_metrics: str = ""
    meta_data: str = ""
    exe_error_code: int | None = None
    exe_error_diag: str = ""
    n_input_files: int | None = None
    cpu_conversion_factor: float | None = None

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict (for the outbox on disk); `from_record` reads it back."""
        record: dict[str, Any] = {name: getattr(self, name) for name in _UPDATE_NAMES}
        record["state"] = self.state.value
        record["metrics"] = dict(self.metrics)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobUpdate:
        """Read a dict written by `to_record`.

        Raises
        ------
        CommunicatorError
            If it is not such a dict.
        """
        try:
            fields = {name: record[name] for name in _UPDATE_NAMES if name in record}
            fields["state"] = JobState(record["state"])
            metrics = record.get("metrics", {})
            fields["metrics"] = tuple((str(k), float(v)) for k, v in metrics.items())
            return cls(**fields)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CommunicatorError(
                f"stored job update is not readable: {exc!r}", context={"field": "update_job"}
            ) from None


def job_update(
    report: JobReport,
    job: Job | None,
    *,
    node: str,
    site_name: str,
    batch_id: str,
    now: float,
    output_report: str = "",
    job_report: Mapping[str, Any] | None = None,
) -> JobUpdate:
    """The content of a heartbeat or of the final update, with the fields Pilot 3 sends.

    Pilot 3 (PanDAWMS/pilot3 ``pilot/control/job.py`` ``get_data_structure``, and
    ``pilot/util/https.py`` ``add_error_codes`` at the final update) sends with every update the
    job's id, state, node, site, attempt, core count, events, CPU time with
    ``cpuConversionFactor``, resource figures and ``jobMetrics``; at the final update also the file
    report (``xml``), the job report (``metaData``, JSON text), ``transExitCode``,
    ``pilotErrorCode``/``Diag`` and ``exeErrorCode``/``Diag``. The v1 server takes all of them
    (PanDAWMS/panda-server ``pandaserver/api/v1/pilot_api.py`` ``update_job``: ``meta_data``,
    ``exe_error_code``, ``exe_error_diag``, ``n_input_files``, ``cpu_conversion_factor``).

    Parameters
    ----------
    report
        The job's state as the coordinator reports it.
    job
        The job's definition when known (attempt number, input files).
    node, site_name, batch_id
        Where the job runs (``node`` when the report names no host).
    now
        The current Unix time: the end time of a final report that has none.
    output_report
        The final update's file report (`output_report`).
    job_report
        The job report document of the final update, sent as ``meta_data`` (JSON text).

    Returns
    -------
    JobUpdate
        What `update_job` sends.
    """
    final = report.state.is_final
    cpu_s = report.cpu_s if (report.cpu_s or final) else None
    words = [f"{name}={count}" for name, count in report.ranges.items()] + report.job_metrics.split()
    exit_code = report.exit_code
    payload_failed = exit_code not in (None, 0)
    return JobUpdate(
        panda_id=report.panda_id,
        state=report.state,
        trans_exit_code=exit_code,
        pilot_error_code=report.error_code if report.error_code is not None else (0 if final else None),
        pilot_error_diag=report.error_diag,
        node=report.host or node,
        site_name=site_name,
        batch_id=batch_id,
        cpu_s=cpu_s,
        core_count=report.core_count,
        start_time=report.start_time or None,
        end_time=(report.end_time or now) if final else None,
        n_events=report.n_events if (report.n_events or final) else None,
        attempt_nr=job.attempt_nr if job is not None else None,
        metrics=tuple(report.metrics.items()),
        output_report=output_report if final else "",
        job_metrics=fit_words(words) if words else "",
        meta_data=json.dumps(dict(job_report), sort_keys=True) if final and job_report else "",
        exe_error_code=(exit_code if exit_code is not None else 0) if final else None,
        exe_error_diag=report.error_diag if final and payload_failed else "",
        n_input_files=len(job.input_files) if final and job is not None else None,
        cpu_conversion_factor=CPU_CONVERSION_FACTOR if cpu_s is not None else None,
    )


def format_time(unix: float) -> str:
    """A Unix time as the server wants it: ``%Y-%m-%d %H:%M:%S`` in UTC."""
    return time.strftime(TIME_FORMAT, time.gmtime(unix))


def update_job(api: Api, update: JobUpdate) -> Request:
    """A heartbeat or final update of one job.

    Parameters
    ----------
    api
        The API generation.
    update
        What to send.

    Returns
    -------
    Request
        ``update_job`` / ``updateJob``.
    """
    values: dict[str, str | int | float | None] = {
        "panda_id": update.panda_id,
        "state": update.state.value,
        "trans_exit_code": update.trans_exit_code,
        "pilot_error_code": update.pilot_error_code,
        "pilot_error_diag": update.pilot_error_diag[:500],
        "node": update.node,
        "site_name": update.site_name,
        "cpu_s": round(update.cpu_s) if update.cpu_s is not None else None,
        "cpu_unit": update.cpu_unit if update.cpu_s is not None else None,
        "core_count": update.core_count,
        "start_time": format_time(update.start_time) if update.start_time else None,
        "end_time": format_time(update.end_time) if update.end_time else None,
        "n_events": update.n_events,
        "attempt_nr": update.attempt_nr,
        "batch_id": update.batch_id,
        "output_report": update.output_report,
        "job_metrics": update.job_metrics or None,
        "meta_data": update.meta_data,
        "exe_error_code": update.exe_error_code,
        "exe_error_diag": update.exe_error_diag[:500],
        "n_input_files": update.n_input_files,
        "cpu_conversion_factor": (
            float(update.cpu_conversion_factor) if update.cpu_conversion_factor is not None else None
        ),
    }
    index = 0 if api is Api.V1 else 1
    params: dict[str, str | int | float | None] = {
        _UPDATE_NAMES[name][index]: value for name, value in values.items()
    }
    for name, value in update.metrics:
        if name in METRIC_PARAMS:
            params[METRIC_PARAMS[name] if api is Api.V1 else name] = round(value)
    return _request(api, Call.UPDATE_JOB, params)


def output_report(files: Sequence[tuple[str, str, int, str]]) -> str:
    """The file report of a final update: ``{"<lfn>": {"guid", "fsize", "adler32"}}`` as JSON.

    Parameters
    ----------
    files
        ``(lfn, guid, fsize, adler32)`` of every output and the log.

    Returns
    -------
    str
        The JSON text (empty when there are no files).
    """
    if not files:
        return ""
    report = {lfn: {"guid": guid, "fsize": fsize, "adler32": adler32} for lfn, guid, fsize, adler32 in files}
    return json.dumps(report, sort_keys=True)


def acquire_event_ranges(api: Api, *, panda_id: int, jobset_id: int, task_id: int, n_ranges: int) -> Request:
    """Ask for up to ``n_ranges`` event ranges of one job.

    Returns
    -------
    Request
        ``acquire_event_ranges`` / ``getEventRanges``.
    """
    return _request(
        api,
        Call.ACQUIRE_EVENT_RANGES,
        {
            _pick(api, "job_id", "pandaID"): panda_id,
            _pick(api, "jobset_id", "jobsetID"): jobset_id,
            _pick(api, "task_id", "taskID"): task_id,
            _pick(api, "n_ranges", "nRanges"): n_ranges,
        },
    )


@dataclass(frozen=True, slots=True)
class RangeUpdate:
    """The new status of one event range (format version 0).

    Attributes
    ----------
    range_id
        ``eventRangeID``.
    status
        ``eventStatus``: one of `RANGE_STATUSES`.
    error_code, error_diag
        ``errorCode`` / ``errorDiag`` of a failed range.
    cpu_s
        ``cpuConsumptionTime`` in seconds.
    core_count
        ``coreCount``.
    """

    range_id: str
    status: str
    error_code: int | None = None
    error_diag: str = ""
    cpu_s: float | None = None
    core_count: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The update as it goes into ``event_ranges``."""
        wire: dict[str, Any] = {"eventRangeID": self.range_id, "eventStatus": self.status}
        if self.error_code is not None:
            wire["errorCode"] = self.error_code
        if self.error_diag:
            wire["errorDiag"] = self.error_diag[:500]
        if self.cpu_s is not None:
            wire["cpuConsumptionTime"] = round(self.cpu_s, 3)
        if self.core_count is not None:
            wire["coreCount"] = self.core_count
        return wire

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> RangeUpdate:
        """Read back a dict written by `to_wire`.

        Raises
        ------
        CommunicatorError
            If it is not such a dict.
        """
        try:
            return cls(
                range_id=str(raw["eventRangeID"]),
                status=str(raw["eventStatus"]),
                error_code=int(raw["errorCode"]) if "errorCode" in raw else None,
                error_diag=str(raw.get("errorDiag", "")),
                cpu_s=float(raw["cpuConsumptionTime"]) if "cpuConsumptionTime" in raw else None,
                core_count=int(raw["coreCount"]) if "coreCount" in raw else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CommunicatorError(
                f"stored range update is not readable: {exc!r}", context={"field": "eventRanges"}
            ) from None


def update_event_ranges(api: Api, updates: Sequence[RangeUpdate]) -> Request:
    """Report the status of a batch of ranges in one call (format version 0).

    Returns
    -------
    Request
        ``update_event_ranges`` / ``updateEventRanges``.
    """
    text = json.dumps([u.to_wire() for u in updates])
    return _request(
        api, Call.UPDATE_EVENT_RANGES, {_pick(api, "event_ranges", "eventRanges"): text, "version": 0}
    )


def get_available_event_range_count(api: Api, *, panda_id: int, jobset_id: int, task_id: int) -> Request:
    """Ask how many ranges of a job are still to be processed.

    Returns
    -------
    Request
        ``get_available_event_range_count`` (GET) / ``checkEventsAvailability``.
    """
    return _request(
        api,
        Call.GET_AVAILABLE_EVENT_RANGE_COUNT,
        {
            _pick(api, "job_id", "pandaID"): panda_id,
            _pick(api, "jobset_id", "jobsetID"): jobset_id,
            _pick(api, "task_id", "taskID"): task_id,
        },
    )


# --------------------------------------------------------------------------- replies


class ServerCommand(enum.Enum):
    """What the ``command`` of an ``update_job`` reply can ask for."""

    TOBEKILLED = "tobekilled"
    SOFTKILL = "softkill"
    DEBUG = "debug"
    DEBUGOFF = "debugoff"
    #: The job was finished elsewhere (another pilot's final update came first).
    ALREADYDONE = "alreadydone"
    #: This attempt is stale: the server runs another attempt of the job.
    BADATTEMPTNR = "badattemptnr"


ABANDON_COMMANDS = frozenset({ServerCommand.ALREADYDONE, ServerCommand.BADATTEMPTNR})
"""Commands after which Pilot 3 stops the job quietly: nothing more is reported for it."""


_DEBUG_TOOLS = frozenset({"tail", "ls", "ps", "gdb", "du"})


def parse_command(text: object) -> tuple[ServerCommand, ...]:
    """The commands in a reply's ``command`` value.

    The value may be ``None``/``"NULL"`` (no command), one word, a comma-separated list
    (``"debug,tobekilled"``) or a debug command line (``"tail -30 payload.stdout"``). Unknown words are
    left out.
    """
    if not isinstance(text, str):
        return ()
    found: list[ServerCommand] = []
    for part in text.split(","):
        words = part.strip().lower().split()
        if not words:
            continue
        word = words[0]
        if word in _DEBUG_TOOLS:
            command: ServerCommand | None = ServerCommand.DEBUG
        else:
            command = next((c for c in ServerCommand if c.value == word), None)
        if command is not None and command not in found:
            found.append(command)
    return tuple(found)


def _error(call: Call, field: str, problem: str, *, retryable: bool = True) -> CommunicatorError:
    return CommunicatorError(
        f"{call.value}: {problem}", retryable=retryable, context={"call": call.value, "field": field}
    )


def decode_reply(call: Call, body: bytes) -> Any:
    """Decode a reply body.

    JSON, or urlencoded (``StatusCode=0&...``) from a server that ignores ``Accept:
    application/json``. An empty body decodes to an empty dict.

    Raises
    ------
    CommunicatorError
        If the body is neither (retryable: a proxy or a server in trouble may answer like that).
    """
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _error(call, "body", "reply is not UTF-8 text") from None
    if not text:
        return {}
    if text[0] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(call, "body", f"reply is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if "=" in text and not text.startswith("<"):
        pairs = urllib.parse.parse_qs(text, keep_blank_values=True, strict_parsing=False)
        return {key: values[-1] for key, values in pairs.items()}
    raise _error(call, "body", f"reply is neither JSON nor urlencoded: {text[:80]!r}")


def _status(call: Call, raw: Mapping[str, Any], *, required: bool = True) -> int:
    value = raw.get("StatusCode")
    if value is None:
        if required:
            raise _error(call, "StatusCode", "reply has no 'StatusCode'")
        return StatusCode.OK
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _error(call, "StatusCode", f"'StatusCode' is not a number: {value!r}") from None


def _check_status(call: Call, code: int, raw: Mapping[str, Any]) -> None:
    if code == StatusCode.OK:
        return
    word = _STATUS_WORDS.get(code, "unknown status")
    diag = raw.get("ErrorDiag") or raw.get("errorDialog") or raw.get("message") or ""
    text = f"server answered StatusCode {code} ({word})" + (f": {diag}" if diag else "")
    error = _error(call, "StatusCode", text, retryable=code in _TRANSIENT_CODES)
    error.context["status_code"] = code
    if code not in _TRANSIENT_CODES and code not in _AUTH_CODES:
        error.context["rejected"] = True
    raise error


def _v1_data(call: Call, reply: Any, *, no_jobs_ok: bool = False) -> Any:
    """The ``data`` of a v1 reply; a refusal (``success`` false) raises, naming the server's message."""
    if not isinstance(reply, Mapping):
        raise _error(call, "success", f"reply is a {type(reply).__name__}, not a JSON object")
    if "success" not in reply:
        raise _error(call, "success", "reply has no 'success'")
    success = reply["success"]
    if not isinstance(success, bool):
        raise _error(call, "success", f"'success' is not a boolean: {success!r}")
    message = reply.get("message") or ""
    if not success:
        if no_jobs_ok and NO_JOBS_MESSAGE.lower() in str(message).lower():
            return None
        lowered = str(message).lower()
        transient = any(w in lowered for w in ("timeout", "timed out", "database"))
        error = _error(call, "success", f"server refused: {message or 'no message'}", retryable=transient)
        if not transient and not any(w in lowered for w in _AUTH_WORDS):
            error.context["rejected"] = True
        raise error
    if "data" not in reply:
        raise _error(call, "data", "reply has no 'data'")
    return reply["data"]


def _json_list(call: Call, field: str, value: Any) -> list[Any]:
    """A list that may come JSON-encoded in a string (urlencoded replies)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise _error(call, field, f"'{field}' is not a JSON list") from None
    if not isinstance(value, list):
        raise _error(call, field, f"'{field}' is a {type(value).__name__}, not a list")
    return value


@dataclass(frozen=True, slots=True)
class JobsReply:
    """What ``acquire_jobs`` brought.

    Attributes
    ----------
    jobs
        The job dicts, as sent (parsed by `hpcpilot.model.job.parse_job` later).
    no_jobs
        The server has no job for this queue (StatusCode 20, ``No jobs in PanDA``, or no job at all).
    """

    jobs: tuple[Any, ...]
    no_jobs: bool


def parse_acquire_jobs(api: Api, reply: Any) -> JobsReply:
    """Parse an ``acquire_jobs`` / ``getJob`` reply.

    Accepted shapes: ``{"StatusCode": 0, "jobs": [...]}`` (a bulk reply), a single job dict with
    ``StatusCode`` and ``PandaID``, a bare list of job dicts; v1 wraps any of them in ``data``.

    Raises
    ------
    CommunicatorError
        If the reply is malformed or reports an error; names the call and the field.
    """
    call = Call.ACQUIRE_JOBS
    if api is Api.V1:
        reply = _v1_data(call, reply, no_jobs_ok=True)
        if reply is None:
            return JobsReply((), no_jobs=True)
    if isinstance(reply, list):
        return JobsReply(tuple(reply), no_jobs=not reply)
    if not isinstance(reply, Mapping):
        raise _error(call, "jobs", f"reply is a {type(reply).__name__}, not a JSON object")
    if not reply:
        return JobsReply((), no_jobs=True)
    code = _status(call, reply, required=api is Api.LEGACY)
    if code == StatusCode.NO_JOBS:
        return JobsReply((), no_jobs=True)
    _check_status(call, code, reply)
    if "jobs" in reply:
        jobs = _json_list(call, "jobs", reply["jobs"])
        return JobsReply(tuple(jobs), no_jobs=not jobs)
    if "PandaID" in reply:
        return JobsReply(({k: v for k, v in reply.items() if k != "StatusCode"},), no_jobs=False)
    raise _error(call, "jobs", "reply has neither 'jobs' nor a job ('PandaID')")


@dataclass(frozen=True, slots=True)
class UpdateJobReply:
    """What an ``update_job`` reply said.

    Attributes
    ----------
    commands
        The commands it carried.
    command_text
        The raw ``command`` value (for the log), empty when there was none.
    """

    commands: tuple[ServerCommand, ...]
    command_text: str


def parse_update_job(api: Api, reply: Any) -> UpdateJobReply:
    """Parse an ``update_job`` / ``updateJob`` reply: ``{"StatusCode": 0, "command": ...}``.

    Raises
    ------
    CommunicatorError
        If the reply is malformed or reports an error; names the call and the field.
    """
    call = Call.UPDATE_JOB
    data = _v1_data(call, reply) if api is Api.V1 else reply
    if not isinstance(data, Mapping):
        field = "data" if api is Api.V1 else "StatusCode"
        raise _error(call, field, f"reply data is a {type(data).__name__}, not a JSON object")
    _check_status(call, _status(call, data), data)
    command = data.get("command")
    text = command if isinstance(command, str) and command.upper() != "NULL" else ""
    return UpdateJobReply(parse_command(text), text)


def parse_acquire_event_ranges(api: Api, reply: Any) -> tuple[Any, ...]:
    """Parse an ``acquire_event_ranges`` / ``getEventRanges`` reply into the raw range dicts.

    Both shapes are accepted in both generations: a bare list, or ``{"StatusCode",
    "eventRanges"}`` (``eventRanges`` may be a JSON string in an urlencoded reply). An empty list means
    the job has no more ranges.

    Raises
    ------
    CommunicatorError
        If the reply is malformed or reports an error; names the call and the field.
    """
    call = Call.ACQUIRE_EVENT_RANGES
    data = _v1_data(call, reply) if api is Api.V1 else reply
    if isinstance(data, list):
        return tuple(data)
    if not isinstance(data, Mapping):
        raise _error(call, "eventRanges", f"reply is a {type(data).__name__}, not a list or an object")
    _check_status(call, _status(call, data, required=api is Api.LEGACY), data)
    if "eventRanges" not in data:
        raise _error(call, "eventRanges", "reply has no 'eventRanges'")
    return tuple(_json_list(call, "eventRanges", data["eventRanges"]))


@dataclass(frozen=True, slots=True)
class RangesReply:
    """What an ``update_event_ranges`` reply said.

    Attributes
    ----------
    accepted
        Per range sent, in order, whether the server took the update (``Returns``).
    commands
        ``(PandaID, command)`` pairs the reply carried.
    """

    accepted: tuple[bool, ...]
    commands: tuple[tuple[int, str], ...]


def parse_update_event_ranges(api: Api, reply: Any) -> RangesReply:
    """Parse an ``update_event_ranges`` / ``updateEventRanges`` reply.

    Shapes: ``{"Returns": [...], "Commands": {PandaID: command}}`` (v1, inside ``data``; legacy with
    ``StatusCode`` and ``Command``), or a bare ``Returns`` list.

    Raises
    ------
    CommunicatorError
        If the reply is malformed or reports an error; names the call and the field.
    """
    call = Call.UPDATE_EVENT_RANGES
    data = _v1_data(call, reply) if api is Api.V1 else reply
    if isinstance(data, list):
        return RangesReply(tuple(_accepted(x) for x in data), ())
    if not isinstance(data, Mapping):
        raise _error(call, "Returns", f"reply is a {type(data).__name__}, not a list or an object")
    _check_status(call, _status(call, data, required=api is Api.LEGACY), data)
    if "Returns" not in data:
        raise _error(call, "Returns", "reply has no 'Returns'")
    returns = _json_list(call, "Returns", data["Returns"])
    raw_commands = data.get("Commands", data.get("Command"))
    commands: list[tuple[int, str]] = []
    if isinstance(raw_commands, str) and raw_commands.strip().startswith("{"):
        try:
            raw_commands = json.loads(raw_commands)
        except json.JSONDecodeError:
            raise _error(call, "Commands", "'Commands' is not a JSON object") from None
    if isinstance(raw_commands, Mapping):
        for key, value in raw_commands.items():
            try:
                commands.append((int(key), str(value)))
            except (TypeError, ValueError):
                raise _error(call, "Commands", f"'Commands' key {key!r} is not a PandaID") from None
    return RangesReply(tuple(_accepted(x) for x in returns), tuple(commands))


def _accepted(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value.get("success", value.get("status", False)))
    return value is True or (isinstance(value, str) and value.lower() == "true")


def parse_event_range_count(api: Api, reply: Any) -> int:
    """Parse a ``get_available_event_range_count`` / ``checkEventsAvailability`` reply.

    Raises
    ------
    CommunicatorError
        If the reply is malformed or reports an error; names the call and the field.
    """
    call = Call.GET_AVAILABLE_EVENT_RANGE_COUNT
    data = _v1_data(call, reply) if api is Api.V1 else reply
    if isinstance(data, Mapping):
        _check_status(call, _status(call, data, required=api is Api.LEGACY), data)
        if "nEventRanges" not in data:
            raise _error(call, "nEventRanges", "reply has no 'nEventRanges'")
        data = data["nEventRanges"]
    if isinstance(data, bool):
        raise _error(call, "nEventRanges", f"range count is not a number: {data!r}")
    try:
        return int(data)
    except (TypeError, ValueError):
        raise _error(call, "nEventRanges", f"range count is not a number: {data!r}") from None
