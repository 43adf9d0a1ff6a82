"""The ``panda`` communicator: the PanDA server over HTTPS, spoken by rank 0 alone.

All network I/O happens in one background thread owned by the communicator; the coordinator's calls
only look at what has already arrived, put updates in the outbox and wake the thread, so the
coordinator's loop never waits for the network.

* **Jobs**: the thread asks ``acquire_jobs`` for as many jobs as there are free slots (``set_slots``
  tells how many there are; an open event-service job takes every slot, a plain job ``coreCount``
  slots), never more than ``run.max_jobs`` allows. `fetch_jobs` hands out what has arrived; its batch
  is exhausted once the server has no job (StatusCode 20, ``No jobs in PanDA``, an empty list) and all
  arrived jobs are handed out, or when ``run.max_jobs`` is reached.
* **Ranges**: `fetch_ranges` hands out the job's cached ranges and, when fewer than the threshold
  are left, has the thread ask ``acquire_event_ranges`` for a request's worth: what keeps the slots
  and their prefetch busy for ``eventservice.request_horizon_s`` at the use rate, at most
  ``eventservice.request_max`` (`hpcpilot.comm.prefetch`; ``panda.request_threshold`` and
  ``panda.request_ranges`` replace the two). An empty reply means the job has no more ranges.
* **Updates** go through the durable `hpcpilot.comm.outbox.Outbox` in ``<workdir>/panda_outbox/``:
  `report_job` puts a heartbeat or the final update there, `report_ranges` one batch of range updates
  (finished ranges, and ranges that used all their attempts with status
  ``eventservice.exhausted_status``; a failed attempt that will be retried is not reported). Two lanes
  send them: heartbeats and final updates in order (the job lane), and range updates, all waiting
  batches in one ``update_event_ranges`` call, one attempt per turn with doubling pauses (the range
  lane). A job's final update waits for the job's range updates; once ``update_event_ranges``
  answered HTTP 500 (a current server does so to every call, after applying the updates: a server
  bug, logged once) only until each was sent once (those never sent go at once); when the final
  update is taken, the job's range updates still waiting are dropped. An update leaves the outbox
  once the server took it; while the server cannot be reached, updates wait there (retried with
  back-off, surviving a restart of the pilot).
* **Final update**: what Pilot 3 sends (`hpcpilot.comm.panda_api.job_update`): the job report as
  ``meta_data``, ``exe_error_code``/``exe_error_diag``, ``n_input_files``, ``cpu_conversion_factor``,
  the resource figures and ``job_metrics``, with the file report.
* **Commands** (``tobekilled``, ``softkill``) in the replies to ``update_job`` and
  ``update_event_ranges`` come out of `poll` as `hpcpilot.comm.base.Command`; ``alreadydone`` and
  ``badattemptnr`` abandon the job (``CommandKind.ABANDON``): nothing more is sent for it.
* **Faults**: a call is retried (``panda.retries`` attempts with back-off); requests for jobs and ranges
  are then tried again later, and only after ``panda.give_up_s`` without success (or at once, for an
  error that retrying cannot help) does the error reach the run. With ``panda.api = v1``, a server that
  answers HTTP 404 to a v1 path is spoken to in the legacy API from then on. A legacy call answered
  HTTP 403 (a current server forbids the legacy methods) is a final error naming the server; no
  further legacy call is made.
* `close` lets the thread flush the outbox for up to ``panda.close_wait_s``; what is left stays on disk
  and is sent first by the next run in the same work directory.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hpcpilot.comm.base import BadJob, Command, CommandKind, Communicator, JobBatch, JobReport, RangeBatch
from hpcpilot.comm.http import HttpClient, HttpReply
from hpcpilot.comm.job_report import job_report_document
from hpcpilot.comm.outbox import Outbox, OutboxItem, OutboxKind
from hpcpilot.comm.panda_api import (
    ABANDON_COMMANDS,
    Api,
    Call,
    JobsReply,
    JobUpdate,
    RangesReply,
    RangeUpdate,
    Request,
    ServerCommand,
    UpdateJobReply,
    acquire_event_ranges,
    acquire_jobs,
    decode_reply,
    job_update,
    output_report,
    parse_acquire_event_ranges,
    parse_acquire_jobs,
    parse_command,
    parse_update_event_ranges,
    parse_update_job,
    update_event_ranges,
    update_job,
)
from hpcpilot.comm.prefetch import RangePrefetch
from hpcpilot.comm.wire import batch_id
from hpcpilot.config.schema import Settings
from hpcpilot.model.bounds import is_panda_id
from hpcpilot.model.errors import CommunicatorError, ConfigError, ErrorCode, HpcPilotError, JobDefinitionError
from hpcpilot.model.job import Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState, parse_range
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTBOX_DIR = "panda_outbox"
"""The outbox's directory in the work directory."""

MAX_RANGES_PER_CALL = 1000
"""Most range updates one ``update_event_ranges`` call carries."""

#: Longest the thread sleeps without looking at its work.
_IDLE_WAIT_S = 1.0

#: Jobs are asked for only while the run asks for them (so a draining run acquires none).
_JOB_WANT_S = 10.0


class _Retry:
    """The failure record of one kind of request (jobs, one job's ranges, the outbox)."""

    __slots__ = ("failing_since", "failures", "next_try")

    def __init__(self) -> None:
        self.failures = 0
        self.failing_since: float | None = None
        self.next_try = 0.0

    def succeeded(self) -> bool:
        """Reset; whether it had been failing."""
        was = self.failures > 0
        self.failures = 0
        self.failing_since = None
        self.next_try = 0.0
        return was


class _Feed:
    """The ranges of one event-service job: cached, and what is known about the rest."""

    __slots__ = ("active", "cache", "error", "errors", "exhausted", "job", "retry")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cache: deque[EventRange] = deque()
        self.errors: list[HpcPilotError] = []
        self.exhausted = False
        self.active = True
        self.error: HpcPilotError | None = None
        self.retry = _Retry()

    def wants(self, threshold: int) -> bool:
        return self.active and not self.exhausted and self.error is None and len(self.cache) < threshold


class PandaCommunicator(Communicator):
    """Talks to the PanDA server (see the module's description).

    Parameters
    ----------
    settings
        The effective settings (``panda.*`` above all).
    layout
        The work directory (the outbox lives there).
    env
        The environment for credentials and the batch id (default: ``os.environ``).

    Raises
    ------
    ConfigError
        If ``panda.url`` or ``panda.site_name`` is not set, or the credentials or CA certificates are
        unusable.
    """

    @classmethod
    def check_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        """Check ``panda.url``, ``panda.site_name``, the credentials and CA certificates (no network).

        Raises
        ------
        ConfigError
            Naming the setting that is missing or unusable.
        """
        panda = settings.panda
        if not panda.url:
            raise ConfigError("panda.url is not set: the PanDA server's base URL (https://host:25443)")
        if not panda.site_name:
            raise ConfigError("panda.site_name is not set: the PanDA queue to ask jobs for")
        HttpClient(panda, os.environ if env is None else env)

    def __init__(self, settings: Settings, layout: WorkLayout, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, layout)
        panda = settings.panda
        self.check_settings(settings, env)
        environ = os.environ if env is None else env
        self.heartbeat_s = panda.heartbeat_s
        self._client = HttpClient(panda, environ)
        self._api = Api(panda.api)
        self._node = socket.gethostname()
        self._batch_id = batch_id(environ)
        self._outbox = Outbox(layout.root / OUTBOX_DIR, panda.outbox_max)
        waiting = len(self._outbox)
        if waiting:
            log.info("%d update(s) left by an earlier run go to the PanDA server first", waiting)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._slots = 1
        es = settings.eventservice
        self._prefetch = RangePrefetch(
            panda.request_threshold,
            panda.request_ranges,
            es.prefetch_per_slot,
            es.request_horizon_s,
            es.request_max,
        )
        self._job_cache: deque[Job] = deque()
        self._bad_cache: deque[BadJob] = deque()
        self._no_more_jobs = False
        self._job_error: CommunicatorError | None = None
        self._job_retry = _Retry()
        self._handed = 0
        self._jobs_wanted_until = 0.0
        self._known: dict[int, Job] = {}
        self._open: dict[int, Job] = {}  # jobs handed out and not finally reported
        self._closed: set[int] = set()  # jobs finally reported
        self._feeds: dict[int, _Feed] = {}
        self._commands: deque[Command] = deque()
        self._outbox_retry = _Retry()  # the job lane: heartbeats and final updates
        self._range_retry = _Retry()  # the range lane: update_event_ranges, in the background
        self._range_error_seen = ""  # the range lane's last error logged (the same one is logged once)
        self._range_status: object = None  # the HTTP status of the range lane's last failure
        self._one_try = threading.Event()  # given as `stop` to the client: one attempt, no pauses
        self._one_try.set()
        self._abandoned: set[int] = set()  # jobs the server ended for this pilot: nothing more is sent
        self._legacy_forbidden: CommunicatorError | None = None  # a legacy call was refused (403)
        self._fell_back = False  # v1 answered 404 and the legacy API is used
        self._closing = False
        self._crash: BaseException | None = None
        self._turn = 0
        self._thread = threading.Thread(target=self._run, name="hpcpilot-panda", daemon=True)
        self._thread.start()

    # --- the coordinator's side: never waits for the network ----------------------------------

    def fetch_jobs(self, n: int) -> JobBatch:
        """Hand out up to ``n`` jobs that have arrived; the thread asks for more as slots free up.

        Raises
        ------
        CommunicatorError
            Once, when asking for jobs failed for good (see the module's description).
        """
        with self._lock:
            self._check_crash()
            if self._job_error is not None:
                error, self._job_error = self._job_error, None
                raise error
            limit = self.settings.run.max_jobs
            room = max(0, limit - self._handed) if limit else n
            bad = [self._bad_cache.popleft() for _ in range(min(len(self._bad_cache), n, room))]
            room -= len(bad)
            jobs = [self._job_cache.popleft() for _ in range(min(len(self._job_cache), n - len(bad), room))]
            self._handed += len(jobs) + len(bad)
            for job in jobs:
                self._known[job.panda_id] = job
                self._open[job.panda_id] = job
            limit_reached = bool(limit) and self._handed >= limit
            exhausted = limit_reached or (self._no_more_jobs and not self._job_cache and not self._bad_cache)
            now = time.monotonic()
            was_wanted = now <= self._jobs_wanted_until
            self._jobs_wanted_until = 0.0 if exhausted else now + _JOB_WANT_S
            if jobs or bad or not was_wanted:  # the thread has something new to consider
                self._wake.notify_all()
        return JobBatch(tuple(jobs), tuple(bad), exhausted=exhausted)

    def fetch_ranges(self, job: Job, n: int) -> RangeBatch:
        """Hand out up to ``n`` cached ranges of ``job``; the thread keeps the cache filled.

        Raises
        ------
        HpcPilotError
            When asking for the job's ranges failed for good: the job cannot go on.
        """
        with self._lock:
            self._check_crash()
            if job.panda_id in self._closed:
                return RangeBatch(exhausted=True)
            feed = self._feeds.get(job.panda_id)
            new = feed is None
            if feed is None:
                feed = self._feeds[job.panda_id] = _Feed(job)
                self._known.setdefault(job.panda_id, job)
            if feed.error is not None:
                error, feed.error = feed.error, None
                feed.active = False
                raise error
            ranges = [feed.cache.popleft() for _ in range(min(n, len(feed.cache)))]
            self._prefetch.taken(len(ranges), time.monotonic())
            errors, feed.errors = feed.errors, []
            exhausted = feed.exhausted and not feed.cache
            if (new or ranges) and feed.wants(self._threshold()):
                self._wake.notify_all()
        return RangeBatch(tuple(ranges), exhausted=exhausted, errors=tuple(errors))

    def adopt(self, job: Job, exhausted: bool = False) -> JobState | None:
        """A resumed job: its ranges are asked for and its reports sent as for a job fetched here.

        Returns None: whether the server already has the job's final state is not asked (a final
        update sent twice is answered like the first).
        """
        with self._lock:
            self._known[job.panda_id] = job
            self._open[job.panda_id] = job
            self._wake.notify_all()
        return None

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        """Put one batch of range updates in the outbox.

        Reported: the finished ranges, those that used all their attempts (``fatal``, with status
        ``eventservice.exhausted_status``) and those cut at the end (``cut``, status ``failed``); a
        failed attempt that will be retried is not reported.
        """
        updates = [
            RangeUpdate(r.range_id, "finished", cpu_s=r.cpu_s or None, core_count=job.core_count)
            for r in results
            if r.state is RangeState.FINISHED
        ]
        failures = {r.range_id: r for r in results if r.state is not RangeState.FINISHED}
        status = self.settings.eventservice.exhausted_status
        for range_id in fatal:
            failure = failures.get(range_id)
            code = failure.error_code if failure is not None and failure.error_code else ErrorCode.ES_FATAL
            diag = failure.error_diag if failure is not None and failure.error_diag else "used all attempts"
            updates.append(RangeUpdate(range_id, status, error_code=int(code), error_diag=diag))
        for range_id in cut:
            failure = failures.get(range_id)
            code = (
                failure.error_code
                if failure is not None and failure.error_code
                else ErrorCode.REACHED_MAX_TIME
            )
            diag = failure.error_diag if failure is not None else "cut at the end of the run"
            updates.append(RangeUpdate(range_id, "failed", error_code=int(code), error_diag=diag))
        if not updates or job.panda_id in self._abandoned:
            return
        self._outbox.put(OutboxKind.RANGES, job.panda_id, {"eventRanges": [u.to_wire() for u in updates]})
        ended = len(updates) - len(cut)
        with self._lock:
            self._prefetch.used(ended, time.monotonic())
            self._wake.notify_all()

    def report_job(self, report: JobReport) -> None:
        """Put a heartbeat, or the final update with the output files, in the outbox."""
        final = report.state.is_final
        if report.panda_id in self._abandoned:
            log.debug("job %d: abandoned, its %s report is not sent", report.panda_id, report.state.value)
            return
        job = self._known.get(report.panda_id)
        update = job_update(
            report,
            job,
            node=self._node,
            site_name=self.settings.panda.site_name,
            batch_id=self._batch_id,
            now=time.time(),
            output_report=self._output_report(report, job) if final else "",
            job_report=job_report_document(report) if final else None,
        )
        kind = OutboxKind.FINAL if final else OutboxKind.HEARTBEAT
        self._outbox.put(kind, report.panda_id, update.to_record())
        with self._lock:
            if final:
                self._closed.add(report.panda_id)
                self._open.pop(report.panda_id, None)
                feed = self._feeds.pop(report.panda_id, None)
                if feed is not None:
                    feed.active = False
            self._wake.notify_all()

    def poll(self) -> tuple[Command, ...]:
        """The commands that arrived since the last call (``tobekilled``, ``softkill``).

        Raises
        ------
        RuntimeError
            If the communicator's thread died of an unexpected error.
        """
        if not self._commands and self._crash is None:
            return ()
        with self._lock:
            self._check_crash()
            commands = tuple(self._commands)
            self._commands.clear()
        return commands

    def set_slots(self, slots: int) -> None:
        """Learn how many payload slots the run has: sizes job and range requests."""
        with self._lock:
            self._slots = max(1, slots)
            self._wake.notify_all()

    def close(self) -> None:
        """Let the thread flush the outbox for up to ``panda.close_wait_s``, then stop it.

        What could not be sent stays on disk (a warning says how much) and goes out first with the
        next run in the same work directory.
        """
        deadline = time.monotonic() + self.settings.panda.close_wait_s
        self._give_back_unstarted_jobs()
        with self._lock:
            self._closing = True
            self._outbox_retry.next_try = 0.0
            self._range_retry.next_try = 0.0
            self._wake.notify_all()
            while (
                len(self._outbox)
                and self._thread.is_alive()
                and self._crash is None
                and self._legacy_forbidden is None
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(min(remaining, 0.5))
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        self._thread.join(timeout=self.settings.panda.timeout_s + 5)
        if not self._thread.is_alive():
            self._client.close()  # the pooled keep-alive connections (a thread still in a call keeps them)
        left = len(self._outbox)
        if left:
            log.warning(
                "%d update(s) could not be sent to the PanDA server: they stay in %s and go out with the "
                "next run in this work directory",
                left,
                self._outbox.directory,
            )

    def _give_back_unstarted_jobs(self) -> None:
        """Jobs that arrived but were never handed out are reported failed, so the server retries them."""
        with self._lock:
            jobs = list(self._job_cache)
            self._job_cache.clear()
            self._no_more_jobs = True
            self._closing = True
        self._give_back(jobs)

    def _give_back(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            log.warning("job %d arrived but the run ended before it started: reported failed", job.panda_id)
            self._known[job.panda_id] = job
            now = time.time()
            self.report_job(
                JobReport(
                    job.panda_id,
                    JobState.FAILED,
                    error_code=int(ErrorCode.GENERAL_ERROR),
                    error_diag="the pilot ended before the job could start",
                    start_time=now,
                    end_time=now,
                    core_count=job.core_count,
                )
            )

    # --- helpers of both sides ------------------------------------------------------------------

    def _check_crash(self) -> None:
        if self._crash is not None:
            raise RuntimeError("the PanDA communicator's thread died") from self._crash

    def _threshold(self) -> int:
        return self._prefetch.sizes(self._slots)[0]

    def _request_size(self) -> int:
        return self._prefetch.sizes(self._slots)[1]

    def _output_report(self, report: JobReport, job: Job | None) -> str:
        """The final update's file report: every output, and the log."""
        files: list[tuple[str, str, int, str]] = []
        outputs = {spec.lfn: spec for spec in job.output_files} if job is not None else {}
        for out in report.outputs:
            lfn = Path(str(out.get("path", ""))).name
            spec = outputs.get(lfn)
            guid = spec.guid if spec is not None and spec.guid else str(uuid.uuid4())
            files.append((lfn, guid, _int(out.get("fsize")), str(out.get("adler32", ""))))
        if report.log is not None:
            log_spec = job.log_file if job is not None else None
            lfn = log_spec.lfn if log_spec is not None else Path(str(report.log.get("path", ""))).name
            guid = log_spec.guid if log_spec is not None and log_spec.guid else str(uuid.uuid4())
            files.append((lfn, guid, _int(report.log.get("fsize")), str(report.log.get("adler32", ""))))
        return output_report(files)

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                action = self._next_action()
                if action is None:
                    return
                action()
        except BaseException as exc:
            log.critical("the PanDA communicator's thread died: %r", exc, exc_info=True)
            with self._lock:
                self._crash = exc
                self._wake.notify_all()

    def _next_action(self) -> Callable[[], None] | None:
        """The next call to make, waiting until there is one; None once the thread is to stop."""
        with self._lock:
            while not self._stop.is_set():
                now = time.monotonic()
                wake = now + _IDLE_WAIT_S
                actions: list[Callable[[], None]] = []
                if not self._closing:
                    n_jobs = self._jobs_to_ask()
                    if n_jobs > 0:
                        if now >= self._job_retry.next_try:
                            actions.append(functools.partial(self._ask_jobs, n_jobs))
                        wake = min(wake, self._job_retry.next_try)
                    threshold = self._threshold()
                    for feed in self._feeds.values():
                        if feed.wants(threshold):
                            if now >= feed.retry.next_try:
                                actions.append(functools.partial(self._ask_ranges, feed))
                            wake = min(wake, feed.retry.next_try)
                if self._legacy_forbidden is None:
                    head = self._outbox.head_job(hold=self._hold_finals())
                    if head is not None:
                        if now >= self._outbox_retry.next_try:
                            actions.append(functools.partial(self._send_job_update, head))
                        wake = min(wake, self._outbox_retry.next_try)
                    if self._outbox.count(OutboxKind.RANGES):
                        if now >= self._range_retry.next_try:
                            actions.append(self._send_range_updates)
                        elif self._server_bug() and self._outbox.untried_ranges():
                            actions.append(functools.partial(self._send_range_updates, untried_only=True))
                        wake = min(wake, self._range_retry.next_try)
                if actions:
                    self._turn += 1
                    return actions[self._turn % len(actions)]
                self._wake.wait(max(0.001, wake - now))
        return None

    def _jobs_to_ask(self) -> int:
        """How many jobs to ask for now (0: none); called with the lock held."""
        if self._no_more_jobs or self._job_error is not None or self._job_cache or self._bad_cache:
            return 0
        if time.monotonic() > self._jobs_wanted_until:
            return 0
        limit = self.settings.run.max_jobs
        room = limit - self._handed if limit else self._slots
        busy = sum(self._slots if job.event_service else job.core_count for job in self._open.values())
        return max(0, min(self._slots - busy, room))

    def _call(
        self, build: Callable[[Api], Request], parse: Callable[[Api, Any], T], *, one_try: bool = False
    ) -> T:
        """Make a call (with the client's retries unless ``one_try``).

        A v1 path answered with HTTP 404 makes it fall back to the legacy API; a legacy call the server
        forbids (HTTP 403) fails for good (`_forbid_legacy`).
        """
        api = self._api
        request = build(api)

        def parse_reply(reply: HttpReply) -> T:
            return parse(api, decode_reply(request.call, reply.body))

        if api is Api.LEGACY and self._legacy_forbidden is not None:
            raise self._legacy_forbidden
        stop = self._one_try if one_try else self._stop
        try:
            return self._client.call(request.encode(), parse_reply, stop=stop)
        except CommunicatorError as exc:
            if api is Api.V1 and exc.context.get("status") == 404:
                log.warning(
                    "the PanDA server does not know %s (HTTP 404): using the legacy API from now on",
                    request.path,
                )
                self._api = Api.LEGACY
                self._fell_back = True
                return self._call(build, parse, one_try=one_try)
            if api is Api.LEGACY and exc.context.get("status") == 403:
                raise self._forbid_legacy(request, exc) from None
            raise

    def _forbid_legacy(self, request: Request, exc: CommunicatorError) -> CommunicatorError:
        """The error of a legacy call the server forbids (HTTP 403): final, never retried."""
        how = (
            "its v1 API answered HTTP 404 before (check panda.url: it must be the server's base URL)"
            if self._fell_back
            else "use panda.api = v1"
        )
        error = CommunicatorError(
            f"the PanDA server {self._client.base_url} forbids {request.path} (HTTP 403): the legacy API "
            f"is not available on this server (a current server serves only /api/v1/...); {how}",
            retryable=False,
            context={
                "call": request.call.value,
                "path": request.path,
                "status": 403,
                "legacy_forbidden": True,
            },
        )
        if self._legacy_forbidden is None:
            log.error("%s", error)
            self._legacy_forbidden = error
        return error

    def _failed(self, retry: _Retry, exc: CommunicatorError, what: str) -> bool:
        """Book a failed request for jobs or ranges; whether to give up (lock held)."""
        now = time.monotonic()
        if retry.failing_since is None:
            retry.failing_since = now
        retry.failures += 1
        retry.next_try = now + self._client.backoff(self.settings.panda.retries + retry.failures - 1)
        give_up = not exc.retryable or now - retry.failing_since >= self.settings.panda.give_up_s
        if give_up:
            log.error("%s failed: %s", what, exc)
            retry.failing_since = None
        elif retry.failures == 1:
            log.warning(
                "%s failed, trying again (for up to %g s): %s", what, self.settings.panda.give_up_s, exc
            )
        return give_up

    def _ask_jobs(self, n: int) -> None:
        panda = self.settings.panda

        def build(api: Api) -> Request:
            return acquire_jobs(
                api,
                site_name=panda.site_name,
                n_jobs=n,
                node=self._node,
                computing_element=panda.computing_element,
                prod_source_label=panda.prod_source_label,
                resource_type=panda.resource_type,
                harvester_id=panda.harvester_id,
                worker_id=panda.worker_id,
            )

        try:
            reply: JobsReply = self._call(build, parse_acquire_jobs)
        except CommunicatorError as exc:
            with self._lock:
                if self._failed(self._job_retry, exc, "asking the PanDA server for jobs"):
                    self._job_error = exc
                self._wake.notify_all()
            return
        source = f"{self._client.base_url} {Call.ACQUIRE_JOBS.value}"
        jobs: list[Job] = []
        bad: list[BadJob] = []
        for raw in reply.jobs:
            try:
                jobs.append(parse_job(raw, source=source))
            except JobDefinitionError as exc:
                bad.append(BadJob(_panda_id(raw), exc))
        with self._lock:
            self._job_retry.succeeded()
            late = self._closing
            if not late:
                self._job_cache.extend(jobs)
                self._bad_cache.extend(bad)
            if reply.no_jobs:
                self._no_more_jobs = True
                log.info("the PanDA server has no (more) jobs for %s", panda.site_name)
            else:
                log.info("got %d job(s) from the PanDA server", len(jobs) + len(bad))
            self._wake.notify_all()
        if late:
            self._give_back(jobs)

    def _ask_ranges(self, feed: _Feed) -> None:
        job = feed.job
        with self._lock:
            size = self._request_size()
        asked = time.monotonic()

        def build(api: Api) -> Request:
            return acquire_event_ranges(
                api, panda_id=job.panda_id, jobset_id=job.jobset_id, task_id=job.task_id, n_ranges=size
            )

        try:
            raw_ranges: tuple[Any, ...] = self._call(build, parse_acquire_event_ranges)
        except CommunicatorError as exc:
            with self._lock:
                if self._failed(feed.retry, exc, f"job {job.panda_id}: asking for event ranges"):
                    feed.error = exc
                self._wake.notify_all()
            return
        source = f"{self._client.base_url} {Call.ACQUIRE_EVENT_RANGES.value} PandaID={job.panda_id}"
        ranges: list[EventRange] = []
        errors: list[HpcPilotError] = []
        for raw in raw_ranges:
            try:
                ranges.append(parse_range(raw, source=source, panda_id=job.panda_id))
            except HpcPilotError as exc:
                errors.append(exc)
        with self._lock:
            self._prefetch.answered(time.monotonic() - asked)
            feed.retry.succeeded()
            feed.cache.extend(ranges)
            feed.errors.extend(errors)
            if not raw_ranges:
                feed.exhausted = True
                log.info("job %d: the PanDA server has no more event ranges", job.panda_id)
            self._wake.notify_all()

    def _server_bug(self) -> bool:
        """Whether ``update_event_ranges`` fails with HTTP 500 (lock held): see `_hold_finals`."""
        return bool(self._range_retry.failures) and self._range_status == 500

    def _hold_finals(self) -> str:
        """Which final updates wait for their job's range updates (lock held): an `Outbox.head_job` hold.

        The job's range updates go first, as the server expects: a final update waits for them while
        the range lane works or fails on the way (the server unreachable, a timeout, a 503: the final
        update would not get through either). Once ``update_event_ranges`` answered HTTP 500 (current
        servers do that to every call, after applying the updates: a server bug), it waits only until
        each of them was sent once; they are sent at once, outside the lane's pauses.
        """
        return "untried" if self._server_bug() else "ranges"

    def _send_job_update(self, item: OutboxItem) -> None:
        """Send the oldest heartbeat or final update (the job lane)."""
        if item.panda_id in self._abandoned:
            self._outbox.remove([item])
            return
        try:
            update = JobUpdate.from_record(item.payload)
        except (CommunicatorError, KeyError, TypeError) as exc:
            log.error("outbox item %s is unusable, dropped: %s", item.file_name, exc)
            self._outbox.remove([item])
            return
        try:
            reply: UpdateJobReply = self._call(lambda api: update_job(api, update), parse_update_job)
        except CommunicatorError as exc:
            self._update_failed((item,), exc, self._outbox_retry)
            return
        self._outbox.remove([item])
        if item.kind is OutboxKind.FINAL:
            self._drop_ranges_of_ended(item.panda_id)
        with self._lock:
            if self._outbox_retry.succeeded():
                log.info("the PanDA server takes updates again (%d waiting)", len(self._outbox))
                self._range_retry.next_try = 0.0  # the server is back: the range lane tries now too
            for command in reply.commands:
                self._take_command(update.panda_id, command)
            self._wake.notify_all()

    def _drop_ranges_of_ended(self, panda_id: int) -> None:
        """After a job's final update: its range updates still waiting are dropped, with one warning."""
        n = self._outbox.drop_job(panda_id, [OutboxKind.RANGES])
        if n:
            log.warning(
                "job %d: its final update is taken; %d range update(s) that update_event_ranges did not "
                "confirm are dropped (last error: %s); the server hands out again any range it did not "
                "record",
                panda_id,
                n,
                self._range_error_seen or "none",
            )

    def _send_range_updates(self, untried_only: bool = False) -> None:
        """Send the oldest range updates in one ``update_event_ranges`` call (the range lane).

        One attempt per turn: the lane's own pauses (doubling) space the retries, so that the thread
        goes on with the job lane meanwhile. ``untried_only``: only updates never sent (while the server
        answers 500, they go at once, outside the pauses).
        """
        batch = self._outbox.head_ranges(MAX_RANGES_PER_CALL, untried_only=untried_only)
        if not batch:
            return
        stale = [item for item in batch if item.panda_id in self._abandoned]
        if stale:
            self._outbox.remove(stale)
            return
        try:
            updates = [RangeUpdate.from_wire(u) for item in batch for u in item.payload["eventRanges"]]
        except (CommunicatorError, KeyError, TypeError) as exc:
            log.error("outbox item %s is unusable, dropped: %s", batch[0].file_name, exc)
            self._outbox.remove(batch[:1])
            return
        try:
            reply: RangesReply = self._call(
                lambda api: update_event_ranges(api, updates), parse_update_event_ranges, one_try=True
            )
        except CommunicatorError as exc:
            self._outbox.mark_tried(batch)
            self._update_failed(batch, exc, self._range_retry)
            return
        self._outbox.remove(batch)
        commands = self._range_reply(updates, reply)
        with self._lock:
            if self._range_retry.succeeded():
                log.info(
                    "update_event_ranges works again (%d range update item(s) waiting)",
                    self._outbox.count(OutboxKind.RANGES),
                )
                self._range_error_seen = ""
            for panda_id, command in commands:
                self._take_command(panda_id, command)
            self._wake.notify_all()

    def _update_failed(self, batch: tuple[OutboxItem, ...], exc: CommunicatorError, retry: _Retry) -> None:
        first = batch[0]
        ranges = retry is self._range_retry
        what = f"{first.kind.value} update of job {first.panda_id}"
        if len(batch) > 1:
            what = (
                f"{len(batch)} range updates of job(s) {', '.join(sorted({str(i.panda_id) for i in batch}))}"
            )
        if exc.context.get("legacy_forbidden"):
            with self._lock:  # logged once by _forbid_legacy; the updates stay on disk for a later run
                self._wake.notify_all()
            return
        if exc.context.get("rejected"):
            log.error("the PanDA server refused the %s for good, dropped: %s", what, exc)
            self._outbox.remove(batch)
            with self._lock:
                self._wake.notify_all()
            return
        with self._lock:
            retry.failures += 1
            if ranges:  # one attempt per turn: the pause doubles from the first failure on
                delay = self._client.backoff(retry.failures - 1)
            else:
                delay = self._client.backoff(self.settings.panda.retries + retry.failures - 1)
            retry.next_try = time.monotonic() + delay
            if ranges:
                self._range_status = exc.context.get("status")
                self._range_failed(what, exc, delay)
            elif retry.failures == 1 or not exc.retryable:
                log.warning(
                    "could not send the %s (%d update(s) wait in the outbox; next try in %.1f s): %s",
                    what,
                    len(self._outbox),
                    delay,
                    exc,
                )
            self._wake.notify_all()

    def _range_failed(self, what: str, exc: CommunicatorError, delay: float) -> None:
        """Log a failed ``update_event_ranges``: an error the same as the last one only at debug level."""
        seen = str(exc)
        if seen == self._range_error_seen:
            log.debug("update_event_ranges failed again (next try in %.1f s): %s", delay, exc)
            return
        self._range_error_seen = seen
        why = ""
        if exc.context.get("status") == 500:
            why = (
                " (current PanDA servers answer HTTP 500 to every update_event_ranges: the updates are "
                "applied, then building the reply fails - a server bug)"
            )
        log.warning(
            "could not send the %s: %s%s; range updates are sent again in the background at growing "
            "intervals (next in %.1f s, at most every %g s), final job updates do not wait for them; "
            "the same error again is not logged",
            what,
            exc,
            why,
            delay,
            self.settings.panda.backoff_max_s,
        )

    def _range_reply(
        self, updates: Sequence[RangeUpdate], reply: RangesReply
    ) -> list[tuple[int, ServerCommand]]:
        if len(reply.accepted) != len(updates):
            log.warning(
                "update_event_ranges: %d range(s) sent, %d 'Returns' came back",
                len(updates),
                len(reply.accepted),
            )
        refused = [u.range_id for u, ok in zip(updates, reply.accepted, strict=False) if not ok]
        if refused:
            log.warning(
                "the PanDA server did not take the update of %d range(s): %s%s",
                len(refused),
                ", ".join(refused[:10]),
                " ..." if len(refused) > 10 else "",
            )
        return [(panda_id, c) for panda_id, text in reply.commands for c in parse_command(text)]

    def _abandon(self, panda_id: int, command: ServerCommand, source: str) -> None:
        """``alreadydone`` / ``badattemptnr``: stop the job, send nothing more for it (lock held)."""
        if panda_id in self._abandoned:
            return
        reason = _ABANDON_REASONS[command]
        self._abandoned.add(panda_id)
        dropped = self._outbox.drop_job(panda_id, list(OutboxKind))
        running = panda_id in self._open
        self._open.pop(panda_id, None)
        self._closed.add(panda_id)
        feed = self._feeds.pop(panda_id, None)
        if feed is not None:
            feed.active = False
        log.warning(
            "job %d: %s: %s; nothing more is reported for it%s",
            panda_id,
            reason,
            "its work stops" if running else "it is over here",
            f" ({dropped} waiting range update(s) dropped)" if dropped else "",
        )
        if running:
            self._commands.append(Command(CommandKind.ABANDON, panda_id, source, reason=reason))

    def _take_command(self, panda_id: int, command: ServerCommand) -> None:
        """Turn a server command into a `Command` for the run (lock held)."""
        source = f"{self._client.base_url} (PanDA server)"
        if command in {ServerCommand.DEBUG, ServerCommand.DEBUGOFF}:
            log.info(
                "job %d: the PanDA server sent '%s': debug mode is not supported, ignored",
                panda_id,
                command.value,
            )
            return
        if command in ABANDON_COMMANDS:
            self._abandon(panda_id, command, source)
            return
        if panda_id not in self._open:
            log.info(
                "job %d: '%s' from the PanDA server for a job that is over, ignored", panda_id, command.value
            )
            return
        kind = CommandKind.TOBEKILLED if command is ServerCommand.TOBEKILLED else CommandKind.SOFTKILL
        log.warning("job %d: the PanDA server sent '%s'", panda_id, command.value)
        feed = self._feeds.get(panda_id)
        if feed is not None:
            feed.active = False
        self._commands.append(Command(kind, panda_id, source))


_ABANDON_REASONS: Mapping[ServerCommand, str] = {
    ServerCommand.ALREADYDONE: "the PanDA server has the job done already (alreadydone)",
    ServerCommand.BADATTEMPTNR: (
        "the PanDA server runs another attempt of the job: this one is stale (badattemptnr)"
    ),
}


def _panda_id(raw: object) -> int | None:
    if isinstance(raw, Mapping):
        try:
            number = int(raw.get("PandaID"))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
        return number if is_panda_id(number) else None
    return None


def _int(value: object) -> int:
    if isinstance(value, int | float | str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0
