"""A fake PanDA server: a real HTTP(S) server on 127.0.0.1 that speaks both API generations.

It holds jobs (PanDA job dicts) and, per event-service job, its event ranges; it records every call
(method, path, decoded parameters, headers) and every range status update, and checks what the pilot
sends against PROTOCOLS.md sections 2 and 3 (parameter names the real server knows, their types, valid
states, ranges it served, nothing after a job's final update, ...), recording each violation so that
tests can assert there is none.

Faults to inject: N HTTP errors (500 by default), replies delayed past the client's timeout, slow
replies, malformed JSON, replies missing keys, ``tobekilled``/``softkill``/``alreadydone``/
``badattemptnr`` for a PandaID, and "down for T seconds" (the listening socket and every open
connection are closed: connection refused, then it comes back on the same port).

By default it behaves as a current server (PanDAWMS/panda-server):

* only the v1 API is served; the legacy ``/server/panda/<method>`` paths of the pilot's calls answer
  HTTP 403 ``method <name> is forbidden`` (they are not among the server's allowed methods);
  ``apis=("v1", "legacy")`` serves both, as older servers did, and ``apis=("legacy",)`` is a server
  from before v1 (a v1 path gets 404);
* ``update_event_ranges`` applies the updates, then answers HTTP 500 (``range_update_bug=True``): the
  server's ``pandaserver/api/v1/event_api.py`` builds its reply as a set literal,
  ``{"Returns", result[0], "Commands", result[1]}``, which fails (a list is not hashable) after the
  database update; ``range_update_bug=False`` answers as intended;
* ``update_job`` takes the fields of ``pandaserver/api/v1/pilot_api.py`` ``update_job`` with their
  types (``meta_data`` a string, ``exe_error_code`` and ``n_input_files`` integers,
  ``cpu_conversion_factor`` a float);
* after it sent ``alreadydone`` or ``badattemptnr`` for a job (the server's ``updateJobStatus`` answer
  when the job is done already or the attempt number is not the current one; the update is then not
  applied), any further update of that job is a violation: the pilot must stop reporting it.

Transport, as the real server's Apache (PanDAWMS/panda-server ``templates/panda_server-httpd*.conf``:
``mod_ssl`` with ``SSLVerifyClient optional``, Apache's ``KeepAlive`` on by default): HTTP/1.1 with
keep-alive (an idle connection is closed after ``keepalive_s``, Apache's ``KeepAliveTimeout``), replies
written with ``TCP_NODELAY``, a client certificate asked for and checked against ``client_ca`` when
given (required then: the fake has no anonymous access), and `FakePandaServer.connections` counts the
TCP connections accepted.

In-process use::

    with FakePandaServer() as fake:
        fake.add_job(job_dict, ranges=[...])
        ... point a pilot at fake.url ...
        assert fake.violations == []

As a separate process: ``python -m tests.fakes.panda_server --port 25080 --jobs jobs.json``
(``--record FILE`` writes the calls and updates as JSON when it stops on SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hpcpilot.comm.local import cut_ranges
from hpcpilot.model.job import parse_job

VALID_JOB_STATES = ("starting", "running", "transferring", "holding", "finished", "failed")
FINAL_STATES = ("finished", "failed")
RANGE_STATUSES = ("running", "finished", "failed", "fatal")

#: v1 path -> (call, HTTP method).
V1_ROUTES: Mapping[str, tuple[str, str]] = {
    "/api/v1/pilot/acquire_jobs": ("acquire_jobs", "POST"),
    "/api/v1/pilot/update_job": ("update_job", "POST"),
    "/api/v1/event/acquire_event_ranges": ("acquire_event_ranges", "POST"),
    "/api/v1/event/update_event_ranges": ("update_event_ranges", "POST"),
    "/api/v1/event/get_available_event_range_count": ("get_available_event_range_count", "GET"),
}

#: legacy path -> call (named as in v1).
LEGACY_ROUTES: Mapping[str, str] = {
    "/server/panda/getJob": "acquire_jobs",
    "/server/panda/updateJob": "update_job",
    "/server/panda/getEventRanges": "acquire_event_ranges",
    "/server/panda/updateEventRanges": "update_event_ranges",
    "/server/panda/checkEventsAvailability": "get_available_event_range_count",
}

_METRICS_V1 = [
    "max_rss",
    "max_vmem",
    "max_swap",
    "max_pss",
    "avg_rss",
    "avg_vmem",
    "avg_swap",
    "avg_pss",
    "tot_rchar",
    "tot_wchar",
    "tot_rbytes",
    "tot_wbytes",
    "rate_rchar",
    "rate_wchar",
    "rate_rbytes",
    "rate_wbytes",
]
_METRICS_LEGACY = [
    "maxRSS",
    "maxVMEM",
    "maxSWAP",
    "maxPSS",
    "avgRSS",
    "avgVMEM",
    "avgSWAP",
    "avgPSS",
    "totRCHAR",
    "totWCHAR",
    "totRBYTES",
    "totWBYTES",
    "rateRCHAR",
    "rateWCHAR",
    "rateRBYTES",
    "rateWBYTES",
]

#: The parameters of the real server's signatures (an unknown one fails the call there).
V1_PARAMS: Mapping[str, frozenset[str]] = {
    "acquire_jobs": frozenset(
        [
            "site_name",
            "timeout",
            "memory",
            "disk_space",
            "prod_source_label",
            "node",
            "computing_element",
            "prod_user_id",
            "get_proxy_key",
            "task_id",
            "n_jobs",
            "background",
            "resource_type",
            "harvester_id",
            "worker_id",
            "scheduler_id",
            "job_type",
            "via_topic",
            "remaining_time",
            "target_architecture",
        ]
    ),
    "update_job": frozenset(
        [
            "job_id",
            "job_status",
            "job_output_report",
            "node",
            "cpu_consumption_time",
            "cpu_consumption_unit",
            "scheduler_id",
            "pilot_id",
            "site_name",
            "pilot_log",
            "meta_data",
            "cpu_conversion_factor",
            "trans_exit_code",
            "pilot_error_code",
            "pilot_error_diag",
            "exe_error_code",
            "exe_error_diag",
            "pilot_timing",
            "start_time",
            "end_time",
            "n_events",
            "n_input_files",
            "batch_id",
            "attempt_nr",
            "job_metrics",
            "stdout",
            "job_sub_status",
            "core_count",
            "corrupted_files",
            "mean_core_count",
            "cpu_architecture_level",
            "grid",
            "source_site",
            "destination_site",
            "timeout",
            *_METRICS_V1,
        ]
    ),
    "acquire_event_ranges": frozenset(
        ["job_id", "jobset_id", "task_id", "n_ranges", "timeout", "scattered", "segment_id"]
    ),
    "update_event_ranges": frozenset(["event_ranges", "timeout", "version"]),
    "get_available_event_range_count": frozenset(["job_id", "jobset_id", "task_id", "timeout"]),
}
LEGACY_PARAMS: Mapping[str, frozenset[str]] = {
    "acquire_jobs": frozenset(
        [
            "siteName",
            "token",
            "timeout",
            "cpu",
            "mem",
            "diskSpace",
            "prodSourceLabel",
            "node",
            "computingElement",
            "AtlasRelease",
            "prodUserID",
            "getProxyKey",
            "countryGroup",
            "workingGroup",
            "allowOtherCountry",
            "taskID",
            "nJobs",
            "background",
            "resourceType",
            "harvester_id",
            "worker_id",
            "schedulerID",
            "jobType",
            "viaTopic",
        ]
    ),
    "update_job": frozenset(
        [
            "jobId",
            "state",
            "token",
            "transExitCode",
            "pilotErrorCode",
            "pilotErrorDiag",
            "timestamp",
            "timeout",
            "xml",
            "node",
            "workdir",
            "cpuConsumptionTime",
            "cpuConsumptionUnit",
            "remainingSpace",
            "schedulerID",
            "pilotID",
            "siteName",
            "messageLevel",
            "pilotLog",
            "metaData",
            "cpuConversionFactor",
            "exeErrorCode",
            "exeErrorDiag",
            "pilotTiming",
            "computingElement",
            "startTime",
            "endTime",
            "nEvents",
            "nInputFiles",
            "batchID",
            "attemptNr",
            "jobMetrics",
            "stdout",
            "jobSubStatus",
            "coreCount",
            "corruptedFiles",
            "meanCoreCount",
            "cpu_architecture_level",
            *_METRICS_LEGACY,
        ]
    ),
    "acquire_event_ranges": frozenset(
        ["pandaID", "jobsetID", "taskID", "nRanges", "timeout", "scattered", "segment_id"]
    ),
    "update_event_ranges": frozenset(["eventRanges", "timeout", "version", "pandaID"]),
    "get_available_event_range_count": frozenset(["pandaID", "jobsetID", "taskID", "timeout"]),
}

#: Parameters every request of a call must carry: (v1 names, legacy names).
REQUIRED_PARAMS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "acquire_jobs": (("site_name",), ("siteName",)),
    "update_job": (("job_id", "job_status"), ("jobId", "state")),
    "acquire_event_ranges": (("job_id", "jobset_id"), ("pandaID", "jobsetID")),
    "update_event_ranges": (("event_ranges",), ("eventRanges",)),
    "get_available_event_range_count": (
        ("job_id", "jobset_id", "task_id"),
        ("pandaID", "jobsetID", "taskID"),
    ),
}

#: v1 parameters whose JSON value must be an integer (the server checks isinstance).
_V1_INTS = frozenset(
    [
        "n_jobs",
        "memory",
        "disk_space",
        "worker_id",
        "job_id",
        "trans_exit_code",
        "pilot_error_code",
        "exe_error_code",
        "cpu_consumption_time",
        "n_events",
        "n_input_files",
        "attempt_nr",
        "core_count",
        "jobset_id",
        "task_id",
        "n_ranges",
        "version",
        "timeout",
    ]
)
_V1_NUMBERS = frozenset(_METRICS_V1) | {"mean_core_count"}
#: v1 parameters typed ``float`` in the server's signature (an int fails its isinstance check).
_V1_FLOATS = frozenset(["cpu_conversion_factor"])

#: Commands after which the server takes no more updates of the job from this pilot.
ABANDON_COMMANDS = ("alreadydone", "badattemptnr")

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_ADLER = re.compile(r"^[0-9a-f]{8}$")


@dataclass
class RecordedCall:
    """One request the fake received.

    Attributes
    ----------
    api
        ``v1`` or ``legacy`` (``unknown`` for a path it does not serve).
    call
        The call, named as in v1 (``acquire_jobs``, ...).
    method, path
        The HTTP method and path.
    params
        The decoded parameters (JSON body, form or query string).
    headers
        The request headers.
    status
        The HTTP status the fake answered (0 when it dropped the connection).
    """

    api: str
    call: str
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int = 200


@dataclass
class RangeStatusUpdate:
    """One range status update the fake received and accepted."""

    range_id: str
    status: str
    panda_id: int
    fields: dict[str, Any]


@dataclass
class JobStatusUpdate:
    """One job update the fake received, under PanDA's attribute names (``jobStatus``, ...)."""

    panda_id: int
    state: str
    fields: dict[str, Any]


@dataclass
class _Fault:
    kind: str  # "status", "delay", "malformed", "missing", "drop"
    remaining: int
    call: str | None
    status: int = 500
    seconds: float = 0.0


@dataclass
class _State:
    jobs: list[dict[str, Any]] = field(default_factory=list)
    handed: dict[int, dict[str, Any]] = field(default_factory=dict)
    ranges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # range id -> PandaID
    final: dict[int, str] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)
    abandoned: dict[int, str] = field(default_factory=dict)  # PandaID -> alreadydone/badattemptnr sent
    faults: list[_Fault] = field(default_factory=list)
    slow_s: float = 0.0


class FakePandaServer:
    """The fake server (see the module's description).

    Parameters
    ----------
    port
        The port to listen on (0: an ephemeral one).
    tls
        ``(certificate, key)`` PEM files to serve HTTPS with.
    range_reply_shape
        ``list`` (v1 ``data`` is the bare list) or ``dict`` (``{"StatusCode", "eventRanges"}``) for the
        v1 ``acquire_event_ranges`` reply; legacy always uses the dict.
    apis
        The API generations it serves. A legacy path that is not served gets HTTP 403 ``method ... is
        forbidden`` (a current server); a v1 path that is not served gets 404 (a server from before v1).
    range_update_bug
        ``update_event_ranges`` (v1) applies the updates, then answers HTTP 500, as the current server
        does (see the module's description).
    client_ca
        With ``tls``: a CA file; a client certificate it signed is then required (an X.509 proxy).
    keepalive_s
        How long an idle keep-alive connection stays open.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        tls: tuple[Path, Path] | None = None,
        range_reply_shape: str = "list",
        apis: tuple[str, ...] = ("v1",),
        range_update_bug: bool = True,
        client_ca: Path | None = None,
        keepalive_s: float = 5.0,
    ) -> None:
        self._port = port
        self._tls = tls
        self._client_ca = client_ca
        self.keepalive_s = keepalive_s
        self._accepted = 0
        self.range_reply_shape = range_reply_shape
        self.apis = apis
        self.range_update_bug = range_update_bug
        self._lock = threading.RLock()
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down_until = 0.0
        self.calls: list[RecordedCall] = []
        self.range_updates: list[RangeStatusUpdate] = []
        self.job_updates: list[JobStatusUpdate] = []
        self.violations: list[str] = []

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL to give a pilot (``panda.url``)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def connections(self) -> int:
        """How many TCP connections it has accepted (a keep-alive client needs one for many calls)."""
        with self._lock:
            return self._accepted

    def start(self) -> FakePandaServer:
        """Start serving in a background thread."""
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.fake = self
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            if self._client_ca is not None:
                context.load_verify_locations(cafile=str(self._client_ca))
                context.verify_mode = ssl.CERT_REQUIRED
            server.tls = context
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the port is released)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakePandaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- content --------------------------------------------------------------------------------

    def add_job(self, job: Mapping[str, Any], ranges: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Queue a job dict; ``ranges`` are its event ranges (default for an event-service job: its
        events cut into ranges of 10, as the local communicator would).
        """
        job = dict(job)
        panda_id = int(job["PandaID"])
        if ranges is None and str(job.get("eventService", "")).lower() == "true":
            ranges = cut_job_ranges(job, 10)
        with self._lock:
            self._state.jobs.append(job)
            if ranges is not None:
                self._state.ranges[panda_id] = [dict(r) for r in ranges]

    # --- faults ---------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, call: str | None = None) -> None:
        """Answer the next ``n`` requests (of ``call`` only, if given) with HTTP ``status``."""
        self._fault(_Fault("status", n, call, status=status))

    def delay_next(self, n: int, seconds: float, call: str | None = None) -> None:
        """Delay the next ``n`` replies by ``seconds`` (longer than the client's timeout: a timeout)."""
        self._fault(_Fault("delay", n, call, seconds=seconds))

    def malformed_next(self, n: int, call: str | None = None) -> None:
        """Answer the next ``n`` requests with broken JSON (they are not processed)."""
        self._fault(_Fault("malformed", n, call))

    def missing_keys_next(self, n: int, call: str | None = None) -> None:
        """Answer the next ``n`` requests with a reply that lacks its keys (not processed)."""
        self._fault(_Fault("missing", n, call))

    def drop_next(self, n: int, call: str | None = None) -> None:
        """Close the connection of the next ``n`` requests without a reply (not processed)."""
        self._fault(_Fault("drop", n, call))

    def slow(self, seconds: float) -> None:
        """Delay every reply by ``seconds`` from now on (0: no more)."""
        with self._lock:
            self._state.slow_s = seconds

    def command(self, panda_id: int, command: str) -> None:
        """Send ``command`` (``tobekilled``, ``softkill``, ...) with the next reply about the job."""
        with self._lock:
            self._state.commands[panda_id] = command

    def down_for(self, seconds: float) -> None:
        """Stop listening now (connections are refused) and come back on the same port after
        ``seconds``.
        """
        self._down_until = time.monotonic() + seconds
        self.stop()
        timer = threading.Timer(seconds, self._come_back)
        timer.daemon = True
        timer.start()

    def drop_connections(self) -> None:
        """Close every open connection now, as a server closes idle keep-alive ones; keep listening."""
        server = self._server
        if server is not None:
            server.drop_connections()

    def _come_back(self) -> None:
        for _ in range(100):
            try:
                self.start()
                return
            except OSError:
                time.sleep(0.05)

    def _fault(self, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    def _take_fault(self, call: str) -> _Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.remaining > 0 and (fault.call is None or fault.call == call):
                    fault.remaining -= 1
                    return fault
        return None

    # --- what happened --------------------------------------------------------------------------

    def calls_of(self, call: str) -> list[RecordedCall]:
        """The recorded calls of one kind."""
        with self._lock:
            return [c for c in self.calls if c.call == call]

    def finished_ranges(self) -> Counter[str]:
        """How often each range was reported finished."""
        with self._lock:
            return Counter(u.range_id for u in self.range_updates if u.status == "finished")

    def final_update(self, panda_id: int) -> JobStatusUpdate | None:
        """The job's final update, if it came."""
        with self._lock:
            return next(
                (u for u in self.job_updates if u.panda_id == panda_id and u.state in FINAL_STATES), None
            )

    def states(self, panda_id: int) -> list[str]:
        """The states reported for a job, in order."""
        with self._lock:
            return [u.state for u in self.job_updates if u.panda_id == panda_id]

    def record(self) -> dict[str, Any]:
        """Everything recorded, as JSON-able data."""
        with self._lock:
            return {
                "calls": [asdict(c) for c in self.calls],
                "range_updates": [asdict(u) for u in self.range_updates],
                "job_updates": [asdict(u) for u in self.job_updates],
                "violations": list(self.violations),
            }

    # --- serving --------------------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def handle(self, handler: _Handler) -> None:
        """Serve one request."""
        parts = urllib.parse.urlsplit(handler.path)
        path = parts.path
        headers = {k: v for k, v in handler.headers.items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if handler.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except OSError:
                self._violation(f"{path}: Content-Encoding gzip but the body is not gzip")
                handler.reply(400, b"bad gzip", "text/plain")
                return
        if path in V1_ROUTES and "v1" in self.apis:
            api, (call, expected_method) = "v1", V1_ROUTES[path]
        elif path in LEGACY_ROUTES and "legacy" in self.apis:
            api, call, expected_method = "legacy", LEGACY_ROUTES[path], "POST"
        elif path in LEGACY_ROUTES:
            # a current server: the legacy methods are not among its allowed ones (pandaserver/server)
            self._record(RecordedCall("legacy", LEGACY_ROUTES[path], handler.command, path, {}, headers, 403))
            method = path.rsplit("/", 1)[-1]
            handler.reply(403, f"method {method} is forbidden".encode(), "text/plain")
            return
        else:
            self._record(RecordedCall("unknown", "", handler.command, path, {}, headers, 404))
            if path not in V1_ROUTES:
                self._violation(f"unknown path {path}")
            handler.reply(404, b"not found", "text/plain")
            return
        if handler.command != expected_method:
            self._violation(f"{call}: {handler.command} instead of {expected_method}")
        params = self._params(api, call, handler.command, parts.query, body, headers)
        recorded = RecordedCall(api, call, handler.command, path, params, headers)
        self._record(recorded)
        fault = self._take_fault(call)
        with self._lock:
            slow = self._state.slow_s
        if slow:
            time.sleep(slow)
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.kind == "status":
                recorded.status = fault.status
                handler.reply(fault.status, b"injected error", "text/plain")
                return
            elif fault.kind == "malformed":
                handler.reply(200, b'{"success": tru', "application/json")
                return
            elif fault.kind == "missing":
                handler.reply(200, b"{}" if api == "v1" else b'{"StatusCode": 0}', "application/json")
                return
            elif fault.kind == "drop":
                recorded.status = 0
                handler.close_connection = True
                return
        self._check_params(api, call, params)
        reply = self._dispatch(api, call, params)
        if self.range_update_bug and api == "v1" and call == "update_event_ranges":
            # applied above; building the reply fails: {"Returns", [...], ...} is not hashable
            recorded.status = 500
            handler.reply(500, b"Internal Server Error: TypeError: unhashable type: 'list'", "text/plain")
            return
        wants_json = "application/json" in headers.get("Accept", "")
        if api == "legacy" and not wants_json:
            self._violation(f"{call}: legacy request without 'Accept: application/json'")
            text = urllib.parse.urlencode(
                {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in reply.items()}
            )
            handler.reply(200, text.encode(), "text/plain")
            return
        handler.reply(200, json.dumps(reply).encode(), "application/json")

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _params(
        self, api: str, call: str, method: str, query: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        ctype = headers.get("Content-Type", "")
        if api == "v1" and method == "GET":
            return {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        if api == "v1":
            if "application/json" not in ctype:
                self._violation(f"{call}: v1 POST with Content-Type {ctype!r}, not application/json")
            try:
                data = json.loads(body or b"{}")
            except json.JSONDecodeError:
                self._violation(f"{call}: v1 body is not JSON")
                return {}
            if not isinstance(data, dict):
                self._violation(f"{call}: v1 body is not a JSON object")
                return {}
            return data
        if "application/x-www-form-urlencoded" not in ctype:
            self._violation(f"{call}: legacy POST with Content-Type {ctype!r}, not form-encoded")
        return {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}

    def _check_params(self, api: str, call: str, params: Mapping[str, Any]) -> None:
        known = (V1_PARAMS if api == "v1" else LEGACY_PARAMS)[call]
        for name in params:
            if name not in known:
                self._violation(f"{call} ({api}): unknown parameter {name!r}")
        for name in REQUIRED_PARAMS[call][0 if api == "v1" else 1]:
            if params.get(name) in (None, ""):
                self._violation(f"{call} ({api}): required parameter {name!r} is missing")
        if api != "v1" or call == "get_available_event_range_count":
            return
        for name, value in params.items():
            if name in _V1_INTS and (isinstance(value, bool) or not isinstance(value, int)):
                self._violation(f"{call}: {name} must be an integer, got {value!r}")
            elif name in _V1_NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
                self._violation(f"{call}: {name} must be a number, got {value!r}")
            elif name in _V1_FLOATS and not isinstance(value, float):
                self._violation(f"{call}: {name} must be a float, got {value!r}")
            elif name not in _V1_INTS | _V1_NUMBERS | _V1_FLOATS and not isinstance(value, str):
                self._violation(f"{call}: {name} must be a string, got {value!r}")

    def _dispatch(self, api: str, call: str, params: Mapping[str, Any]) -> dict[str, Any]:
        v1 = api == "v1"

        def name(v1_name: str, legacy_name: str) -> Any:
            return params.get(v1_name if v1 else legacy_name)

        if call == "acquire_jobs":
            return self._acquire_jobs(v1, name("site_name", "siteName"), name("n_jobs", "nJobs"))
        if call == "update_job":
            return self._update_job(v1, params)
        if call == "acquire_event_ranges":
            return self._acquire_ranges(v1, name("job_id", "pandaID"), name("n_ranges", "nRanges"))
        if call == "update_event_ranges":
            return self._update_ranges(v1, name("event_ranges", "eventRanges"), params.get("version"))
        return self._range_count(v1, name("job_id", "pandaID"))

    def _envelope(self, v1: bool, data: Any, *, success: bool = True, message: str = "") -> dict[str, Any]:
        if v1:
            return {"success": success, "message": message, "data": data}
        return dict(data) if isinstance(data, dict) else {"StatusCode": 0, "data": data}

    def _acquire_jobs(self, v1: bool, site: object, n_jobs: object) -> dict[str, Any]:
        if not site:
            self._violation("acquire_jobs: no site name")
        try:
            n = int(n_jobs) if n_jobs is not None else 1  # type: ignore[call-overload]
        except ValueError:
            self._violation(f"acquire_jobs: n_jobs {n_jobs!r} is not a number")
            n = 1
        with self._lock:
            taken, self._state.jobs = self._state.jobs[:n], self._state.jobs[n:]
            for job in taken:
                self._state.handed[int(job["PandaID"])] = job
        if not taken:
            if v1:
                return {"success": False, "message": "No jobs in PanDA", "data": None}
            return {"StatusCode": 20}
        if v1 or n_jobs is not None:
            return self._envelope(v1, {"StatusCode": 0, "jobs": taken})
        return {"StatusCode": 0, **taken[0]}

    def _update_job(self, v1: bool, params: Mapping[str, Any]) -> dict[str, Any]:
        fields = _attribute_names(v1, params)
        try:
            panda_id = int(fields.get("jobId", -1))
        except (TypeError, ValueError):
            panda_id = -1
        state = str(fields.get("jobStatus", ""))
        with self._lock:
            if panda_id in self._state.abandoned:
                self._violation(
                    f"update_job: job {panda_id}: {state} after the server sent "
                    f"'{self._state.abandoned[panda_id]}'"
                )
            if panda_id not in self._state.handed:
                self._violation(f"update_job: job {panda_id} was never handed out")
            if state not in VALID_JOB_STATES:
                self._violation(f"update_job: job {panda_id}: invalid state {state!r}")
            if panda_id in self._state.final:
                self._violation(f"update_job: job {panda_id}: {state} after its final update")
            for key in ("startTime", "endTime"):
                if key in fields and not _TIME.match(str(fields[key])):
                    self._violation(
                        f"update_job: job {panda_id}: {key} {fields[key]!r} is not %Y-%m-%d %H:%M:%S"
                    )
            report = fields.get("xml")
            if report:
                self._check_report(panda_id, report)
            if "metaData" in fields:
                self._check_meta_data(panda_id, fields["metaData"])
            self.job_updates.append(JobStatusUpdate(panda_id, state, fields))
            command = self._state.commands.pop(panda_id, "NULL")
            if command in ABANDON_COMMANDS:
                # updateJobStatus answers so without applying the update (pandaserver/taskbuffer)
                self._state.abandoned.setdefault(panda_id, command)
            elif state in FINAL_STATES:
                self._state.final[panda_id] = state
        return self._envelope(v1, {"StatusCode": 0, "command": command})

    def _check_meta_data(self, panda_id: int, text: object) -> None:
        """``metaData`` is the job report, JSON text, as Pilot 3 sends it (the monitor parses it)."""
        try:
            document = json.loads(str(text))
        except json.JSONDecodeError:
            self._violation(f"update_job: job {panda_id}: meta_data is not JSON")
            return
        if not isinstance(document, dict):
            self._violation(f"update_job: job {panda_id}: meta_data is not a JSON object (a job report)")

    def _check_report(self, panda_id: int, report: object) -> None:
        try:
            files = json.loads(str(report))
        except json.JSONDecodeError:
            self._violation(f"update_job: job {panda_id}: the output report is not JSON")
            return
        if not isinstance(files, dict):
            self._violation(f"update_job: job {panda_id}: the output report is not a JSON object")
            return
        for lfn, info in files.items():
            if not isinstance(info, dict) or not {"guid", "fsize", "adler32"} <= set(info):
                self._violation(f"update_job: job {panda_id}: output {lfn}: needs guid, fsize, adler32")
            elif not isinstance(info["fsize"], int) or not _ADLER.match(str(info["adler32"])):
                self._violation(f"update_job: job {panda_id}: output {lfn}: bad fsize or adler32 {info}")

    def _acquire_ranges(self, v1: bool, job_id: object, n_ranges: object) -> dict[str, Any]:
        try:
            panda_id, n = int(job_id), int(n_ranges)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            self._violation(f"acquire_event_ranges: bad job id or n_ranges {job_id!r} {n_ranges!r}")
            panda_id, n = -1, 0
        with self._lock:
            if panda_id not in self._state.handed:
                self._violation(f"acquire_event_ranges: job {panda_id} was never handed out")
            if panda_id in self._state.final:
                self._violation(
                    f"acquire_event_ranges: job {panda_id} asked for ranges after its final update"
                )
            remaining = self._state.ranges.get(panda_id, [])
            taken, self._state.ranges[panda_id] = remaining[:n], remaining[n:]
            for rng in taken:
                self._state.served[rng["eventRangeID"]] = panda_id
        if v1 and self.range_reply_shape == "list":
            return self._envelope(v1, taken)
        return self._envelope(v1, {"StatusCode": 0, "eventRanges": taken})

    def _update_ranges(self, v1: bool, text: object, version: object) -> dict[str, Any]:
        if str(version) != "0":
            self._violation(f"update_event_ranges: version {version!r}, expected 0")
        try:
            updates = json.loads(str(text))
        except json.JSONDecodeError:
            self._violation("update_event_ranges: event_ranges is not a JSON string")
            updates = []
        if not isinstance(updates, list):
            self._violation("update_event_ranges: event_ranges is not a JSON list")
            updates = []
        returns: list[bool] = []
        commands: dict[str, str] = {}
        with self._lock:
            abandoned = dict(self._state.abandoned)  # as it was before this call
            for update in updates:
                ok = self._range_update(update, abandoned)
                returns.append(ok)
                # with the bug the reply is lost: a command stays for the next update_job reply
                if ok and not (v1 and self.range_update_bug):
                    panda_id = self._state.served[update["eventRangeID"]]
                    if panda_id in self._state.commands:
                        command = commands[str(panda_id)] = self._state.commands.pop(panda_id)
                        if command in ABANDON_COMMANDS:
                            self._state.abandoned.setdefault(panda_id, command)
        if v1:
            return self._envelope(v1, {"Returns": returns, "Commands": commands})
        return {"StatusCode": 0, "Returns": returns, "Command": commands}

    def _range_update(self, update: object, abandoned: Mapping[int, str]) -> bool:
        if not isinstance(update, dict) or "eventRangeID" not in update or "eventStatus" not in update:
            self._violation(f"update_event_ranges: entry {update!r} lacks eventRangeID/eventStatus")
            return False
        range_id, status = str(update["eventRangeID"]), str(update["eventStatus"])
        if status not in RANGE_STATUSES:
            self._violation(f"update_event_ranges: {range_id}: invalid status {status!r}")
            return False
        if range_id not in self._state.served:
            self._violation(f"update_event_ranges: {range_id} was never served")
            return False
        panda_id = self._state.served[range_id]
        if panda_id in abandoned:
            self._violation(
                f"update_event_ranges: {range_id} reported after the server sent "
                f"'{abandoned[panda_id]}' for job {panda_id}"
            )
        if panda_id in self._state.final:
            self._violation(f"update_event_ranges: {range_id} reported after job {panda_id}'s final update")
        self.range_updates.append(RangeStatusUpdate(range_id, status, panda_id, dict(update)))
        return True

    def _range_count(self, v1: bool, job_id: object) -> dict[str, Any]:
        try:
            panda_id = int(job_id)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            panda_id = -1
        with self._lock:
            n = len(self._state.ranges.get(panda_id, []))
        if v1:
            return self._envelope(v1, n)
        return {"StatusCode": 0, "nEventRanges": n}


def _attribute_names(v1: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    """An update's parameters under PanDA's attribute names (``jobId``, ``jobStatus``, ``xml``, ...)."""
    if not v1:
        fields = dict(params)
        fields["jobStatus"] = fields.pop("state", None)
        return fields
    names = {
        "job_id": "jobId",
        "job_status": "jobStatus",
        "job_output_report": "xml",
        "trans_exit_code": "transExitCode",
        "pilot_error_code": "pilotErrorCode",
        "pilot_error_diag": "pilotErrorDiag",
        "cpu_consumption_time": "cpuConsumptionTime",
        "cpu_consumption_unit": "cpuConsumptionUnit",
        "core_count": "coreCount",
        "start_time": "startTime",
        "end_time": "endTime",
        "n_events": "nEvents",
        "attempt_nr": "attemptNr",
        "batch_id": "batchID",
        "site_name": "siteName",
        "meta_data": "metaData",
        "exe_error_code": "exeErrorCode",
        "exe_error_diag": "exeErrorDiag",
        "n_input_files": "nInputFiles",
        "cpu_conversion_factor": "cpuConversionFactor",
        "job_metrics": "jobMetrics",
    }
    names.update(dict(zip(_METRICS_V1, _METRICS_LEGACY, strict=True)))
    return {names.get(k, k): v for k, v in params.items()}


def cut_job_ranges(job: Mapping[str, Any], events_per_range: int) -> list[dict[str, Any]]:
    """An event-service job's ranges, cut as the local communicator would."""
    parsed = parse_job(job, source="fake PanDA server")
    return [r.to_wire() for r in cut_ranges(parsed, events_per_range)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePandaServer
    tls: ssl.SSLContext | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection: count it, no Nagle delay, TLS (its handshake in the handler's thread)."""
        sock, address = self.socket.accept()
        with self.fake._lock:
            self.fake._accepted += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.open_lock:
            self.open.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket and every open (keep-alive) connection: the server is gone."""
        super().server_close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Close every open connection (their handler threads see the end and finish)."""
        with self.open_lock:
            still_open, self.open = list(self.open), set()
        for sock in still_open:
            with contextlib.suppress(OSError):  # closed by its client meanwhile
                # the TCP socket's own shutdown: SSLSocket.shutdown would drop the TLS state under the
                # handler thread that is reading from it
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that go away (TLS refusals, timeouts)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: every reply has a Content-Length

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.fake.keepalive_s)  # an idle keep-alive connection ends
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self.server.fake.handle(self)

    def do_POST(self) -> None:
        self.server.fake.handle(self)

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


def _iter_jobs(path: Path) -> Iterator[dict[str, Any]]:
    data = json.loads(path.read_text())
    yield from (data.values() if isinstance(data, dict) else data)


def main(argv: list[str] | None = None) -> int:
    """Run the fake as a process until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.panda_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jobs", type=Path, help="a JSON list (or {PandaID: job}) of job dicts")
    parser.add_argument("--events-per-range", type=int, default=10)
    parser.add_argument("--range-reply-shape", choices=("list", "dict"), default="list")
    parser.add_argument("--record", type=Path, help="write calls and updates here (JSON) at the end")
    parser.add_argument("--tls", nargs=2, type=Path, metavar=("CERT", "KEY"), help="serve HTTPS")
    parser.add_argument("--client-ca", type=Path, help="with --tls: require a client certificate it signed")
    parser.add_argument(
        "--apis", default="v1", help="API generations served, comma-separated (v1, legacy); default v1"
    )
    parser.add_argument(
        "--no-range-update-bug",
        action="store_true",
        help="update_event_ranges answers as intended (default: HTTP 500 after applying, as today's server)",
    )
    args = parser.parse_args(argv)
    fake = FakePandaServer(
        args.port,
        range_reply_shape=args.range_reply_shape,
        apis=tuple(a.strip() for a in args.apis.split(",") if a.strip()),
        range_update_bug=not args.no_range_update_bug,
        tls=(args.tls[0], args.tls[1]) if args.tls else None,
        client_ca=args.client_ca,
    )
    for job in _iter_jobs(args.jobs) if args.jobs else ():
        es = str(job.get("eventService", "")).lower() == "true"
        fake.add_job(job, cut_job_ranges(job, args.events_per_range) if es else None)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    fake.start()
    print(f"fake PanDA server listening on {fake.url}", flush=True)
    done.wait()
    fake.stop()
    print(f"connections accepted: {fake.connections}", flush=True)
    if args.record:
        args.record.write_text(json.dumps(fake.record(), indent=1))
    if fake.violations:
        print("\n".join(f"violation: {v}" for v in fake.violations), file=sys.stderr)
    return 1 if fake.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
