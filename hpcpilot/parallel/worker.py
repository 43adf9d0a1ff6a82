"""The node worker: pulls work from the coordinator, runs it on the node's cores, reports results.

A worker keeps a local queue deep enough (``eventservice.prefetch_per_slot`` ranges per slot) that no
slot waits for a round trip to rank 0, and asks for more when the queue is half empty. Results travel in
batches, piggybacked on requests, or after ``parallel.report_interval_s`` at the latest.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpcpilot.config.schema import Settings
from hpcpilot.data.scratch import copy_to_scratch, remove_job_scratch, scratch_root
from hpcpilot.environment.base import EnvironmentChain, EnvironmentRequest, make_chain, request_for
from hpcpilot.environment.placement import GPU_VARIABLES, NodeSlots, SlotPlacement, cpu_list, gpu_env
from hpcpilot.model.errors import ErrorCode, HpcPilotError
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import PayloadResult, RangeResult
from hpcpilot.monitor.base import Monitor, NodeContext, Verdict, VerdictKind, Watched
from hpcpilot.parallel.diskspace import NodeDisk, may_be_disk_full
from hpcpilot.parallel.messages import (
    Assignment,
    Farewell,
    Kill,
    Message,
    NodeInfo,
    RangeResults,
    RangeWork,
    Stop,
    WorkerBye,
    WorkerUpdate,
)
from hpcpilot.parallel.request import StandingRequest
from hpcpilot.parallel.transport import WorkerTransport
from hpcpilot.parallel.walltime import may_finish
from hpcpilot.payload.base import (
    ItemResult,
    SlotContext,
    SlotRunner,
    WorkItem,
    failed_range,
    has_range_placeholders,
)
from hpcpilot.payload.exitcodes import signal_code
from hpcpilot.plugins import load_plugin

log = logging.getLogger(__name__)

#: Longest a worker waits after its bye for rank 0's `Farewell` before it ends anyway.
FAREWELL_TIMEOUT_S = 60.0


@dataclass
class _Slot:
    """A runner and the cores it holds (the job's ``coreCount``, or the whole node when that is less)."""

    runner: SlotRunner
    panda_id: int
    cores: int
    index: int
    placement: SlotPlacement | None = None
    closing: bool = False
    started: float = 0.0
    output: Path | None = None


@dataclass(frozen=True, slots=True)
class _Range:
    """A range in the worker's queue: its job, its index in the job's ranges, its attempt."""

    panda_id: int
    index: int
    attempt: int
    event_range: EventRange


_Queued = _Range | int  # a range, or the PandaID of a plain job


class Worker:
    """One node's worker: an event loop driven by `step`.

    Parameters
    ----------
    transport
        Its end of the link to the coordinator.
    settings
        The effective settings (as broadcast by rank 0).
    layout
        The work directory.
    node
        This node: rank, host, cores.
    base_env
        The environment payloads start from.
    drain_logs
        Returns the warnings logged since the last call, to forward to rank 0.
    gpus
        GPUs of the node (``node.gpus``, or the allocation's count when that is -1), named ``0 ..
        gpus-1``; ignored when ``gpu_ids`` is given.
    cpu_ids
        The CPUs this process may run on (default: its affinity).
    gpu_ids
        The GPUs it gives slots, as the vendor's variable names them (``hpcpilot.parallel.run``
        passes its share of the node).
    """

    def __init__(
        self,
        transport: WorkerTransport,
        settings: Settings,
        layout: WorkLayout,
        node: NodeInfo,
        base_env: Mapping[str, str],
        drain_logs: Callable[[], tuple[str, ...]] = tuple,
        gpus: int = 0,
        cpu_ids: tuple[int, ...] | None = None,
        gpu_ids: tuple[str, ...] | None = None,
    ) -> None:
        if settings.node.gpu_vendor not in GPU_VARIABLES:  # "auto" where nothing resolved it
            settings = replace(settings, node=replace(settings.node, gpu_vendor="nvidia"))
        self.transport = transport
        self.settings = settings
        self.layout = layout
        self.node = node
        self.base_env = dict(base_env)
        self.drain_logs = drain_logs
        self.jobs: dict[int, Job] = {}
        self.queue: deque[_Queued] = deque()
        self.queued_cores = 0
        self.slots: list[_Slot] = []
        self.range_results: list[tuple[int, RangeResult]] = []  # (index, result)
        self.payload_results: list[PayloadResult] = []
        self.oldest_result = 0.0
        self.request = StandingRequest()
        self.hello_sent = False
        self.stop: Stop | None = None
        self.local_drain = False
        self.done = False
        self.bye_sent = False
        self._farewell_by = 0.0
        self.busy_core_s = 0.0
        self._runner_classes: dict[str, type[SlotRunner]] = {}
        self._inputs: dict[tuple[int, str], str] = {}
        self._kill_at: float | None = None
        self._kill_code = ErrorCode.KILL_SIGNAL
        self._kill_diag = ""
        self._prefetch = settings.eventservice.prefetch_per_slot
        self._batch = settings.parallel.batch_size
        node_settings = settings.node
        self.gpu_ids = gpu_ids if gpu_ids is not None else tuple(str(i) for i in range(gpus))
        self.placer = NodeSlots(
            node.cores,
            cpu_ids or tuple(os.sched_getaffinity(0)),
            len(self.gpu_ids),
            node_settings.gpus_per_slot,
        )
        self._pin = node_settings.bind_cpus and _has_taskset()
        self._chain: EnvironmentChain | None = None
        self._requests: dict[int, EnvironmentRequest | HpcPilotError] = {}
        self._oversized: set[int] = set()  # jobs warned about asking for more cores than the node has
        self._scratch = scratch_root(settings.data.scratch)
        self._monitoring = bool(settings.monitor.plugins)
        self._monitors: list[Monitor] | None = None  # loaded at the first sample
        self._next_sample = 0.0
        self._samples: list[MetricSample] = []
        self._samples_since = 0.0
        self._bye_reason = 0
        disks = {"workdir": layout.root} | ({"scratch": self._scratch} if self._scratch else {})
        self.disk = NodeDisk(settings.disk, settings.monitor, disks)
        self._outputs: dict[tuple[int, str], tuple[int, Path]] = {}  # index, output of each range in flight
        self._cuts: dict[int, RangeCut] = {}  # how each cut job is cut (sent once by rank 0)
        self._out_prefix: dict[int, str] = {}  # where each job's range outputs go, but for the range id

    # --- the loop -----------------------------------------------------------------------------

    def step(self) -> bool:
        """Do everything that can be done now; return whether anything happened."""
        progress = False
        while (message := self.transport.poll()) is not None:
            self._on_message(message)
            progress = True
        if self.bye_sent:
            return self._await_farewell() or progress
        for slot in self.slots:
            results = slot.runner.poll()
            if results:
                self._collect(slot, results)
                progress = True
        progress |= self._reap_closed()
        if self.disk.full and not self._stopping:
            progress |= self._watch_disk()
        if not self._stopping and not self.disk.full:
            progress |= self._start_queued()
        if self._monitoring and time.monotonic() >= self._next_sample:
            progress |= self._observe()
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            self._kill_at = None
            self._kill(None, self._kill_diag, self._kill_code)
            progress = True
        if self._stopping:
            progress |= self._wind_down()
        else:
            progress |= self._maybe_send()
        return progress

    @property
    def request_outstanding(self) -> bool:
        """Whether some of its last request for work has not come yet (it stands at rank 0)."""
        return self.request.outstanding

    def wake_in_s(self) -> float | None:
        """How long the loop may sleep before a running item could end, or None (nothing runs).

        A runner that knows (the in-process sleep payload) says exactly; for a process, the poll
        interval grows with the item's age (2 % of it, 1 ms at least), so detecting the end of an item
        costs at most about 2 % of its duration.
        """
        now = time.monotonic()
        waits = []
        for slot in self.slots:
            if slot.runner.busy:
                known = slot.runner.wake_in_s()
                waits.append(known if known is not None else max(0.001, 0.02 * (now - slot.started)))
        if waits and self._monitoring:
            waits.append(max(self._next_sample - now, 0.0))
        return min(waits) if waits else None

    def request_drain(self, signum: int) -> None:
        """A signal reached this rank.

        SIGUSR1 (the batch system's warning that the end is near) is left to rank 0, which knows
        what still fits. Any other drain signal: start nothing new, give the queue back, and kill
        what runs after ``batch.term_grace_s`` (the batch system's hard kill is not far).
        """
        if signum == signal.SIGUSR1:
            log.info("rank %d: SIGUSR1 received, rank 0 decides what still runs", self.node.rank)
            return
        self.local_drain = True
        code = signal_code(signum)
        when = time.monotonic() + self.settings.batch.term_grace_s
        self._kill_later(when, code, f"{code.name} reached rank {self.node.rank}")

    @property
    def _stopping(self) -> bool:
        return self.stop is not None or self.local_drain

    # --- messages in --------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Farewell):
            self.done = True
        elif self.bye_sent:  # crossed the bye: rank 0 takes back what it had sent (see Farewell)
            log.debug("rank %d drops %s received after its bye", self.node.rank, type(message).__name__)
        elif isinstance(message, Assignment):
            for job in message.jobs:
                self.jobs[job.panda_id] = job
            cores = 0
            for work in message.ranges:
                self.queue.extend(self._ranges_of(work))
                cores += len(work) * self.jobs[work.panda_id].core_count
            self.queue.extend(message.plain)
            cores += sum(self.jobs[p].core_count for p in message.plain)
            self.queued_cores += cores
            self.request.received(cores, time.monotonic())  # the rest of it stands at rank 0
            for panda_id in message.finished_jobs:
                self._close_job(panda_id)
        elif isinstance(message, Stop):
            self.stop = message
            if message.kill:
                self._cut(message)
        elif isinstance(message, Kill):
            for panda_id in message.panda_ids:
                self._kill(panda_id, f"job {panda_id} was killed by the workload manager (tobekilled)")
        else:
            log.warning("rank %d ignores unexpected message %s", self.node.rank, type(message).__name__)

    def _ranges_of(self, work: RangeWork) -> list[_Range]:
        """The ranges of an interval, as queue items (their definitions from ``defs`` or the job's cut)."""
        defs = work.defs
        if isinstance(defs, RangeCut):
            self._cuts[work.panda_id] = defs
        if isinstance(defs, dict):
            ranges = ranges_of_columns(defs)
        else:
            cut = self._cuts[work.panda_id]
            ranges = [cut.event_range(i) for i in range(work.start, work.stop)]
        return [
            _Range(work.panda_id, work.start + k, work.attempt_of(k), rng) for k, rng in enumerate(ranges)
        ]

    def _cut(self, stop: Stop) -> None:
        """Kill what runs, but spare the ranges expected to end within ``stop.spare_s``.

        Spared ranges are killed when ``spare_s`` is over if they still run then.
        """
        code = ErrorCode(stop.code)
        expected = dict(stop.expected_s)
        now = time.monotonic()
        spared = 0
        for slot in self.slots:
            if slot.runner.busy and may_finish(now - slot.started, expected.get(slot.panda_id), stop.spare_s):
                spared += 1
                continue
            slot.runner.kill(code, stop.diag)
        if spared:
            log.info(
                "rank %d: %d range(s) expected to end within %.1f s may finish",
                self.node.rank,
                spared,
                stop.spare_s,
            )
            self._kill_later(now + stop.spare_s, code, stop.diag)

    def _kill_later(self, when: float, code: ErrorCode, diag: str) -> None:
        """Kill whatever still runs at ``when`` (the earliest of such times wins)."""
        if self._kill_at is None or when < self._kill_at:
            self._kill_at, self._kill_code, self._kill_diag = when, code, diag

    def _kill(self, panda_id: int | None, diag: str, code: ErrorCode = ErrorCode.KILLED_BY_PANDA) -> None:
        """Kill the running items of one job, or of all for None; fail a job's queued items.

        For the whole run the queue is not failed: the stopping worker gives it back.
        """
        for slot in self.slots:
            if panda_id is None or slot.panda_id == panda_id:
                slot.runner.kill(code, diag)
        if panda_id is None:
            return
        kept: deque[_Queued] = deque()
        for entry in self.queue:
            if (entry.panda_id if isinstance(entry, _Range) else entry) != panda_id:
                kept.append(entry)
                continue
            self.queued_cores -= self.jobs[panda_id].core_count
            if isinstance(entry, _Range):
                item = WorkItem(self.jobs[panda_id], entry.event_range, None, entry.attempt)
                self.range_results.append((entry.index, failed_range(item, code, diag, time.monotonic())))
            else:
                self.payload_results.append(PayloadResult(panda_id, False, error_code=code, error_diag=diag))
            if len(self.range_results) + len(self.payload_results) == 1:
                self.oldest_result = time.monotonic()
        self.queue = kept

    # --- running work -------------------------------------------------------------------------

    def _start_queued(self) -> bool:
        progress = False
        while self.queue:
            entry = self.queue[0]
            panda_id = entry.panda_id if isinstance(entry, _Range) else entry
            slot = self._slot_for(self.jobs[panda_id])
            if slot is None:
                break
            self.queue.popleft()
            self.queued_cores -= self.jobs[panda_id].core_count
            self._submit(slot, entry)
            progress = True
        return progress

    def _slot_for(self, job: Job) -> _Slot | None:
        """An idle slot for ``job``: an idle runner of it, a new one, or None (after freeing one)."""
        for slot in self.slots:
            reusable = job.event_service and slot.panda_id == job.panda_id
            if reusable and not slot.closing and not slot.runner.busy:
                return slot
        placement = self.placer.take(job.core_count, force=not self.slots)
        if placement is not None:
            return self._new_slot(job, placement)
        for slot in self.slots:  # make room: end an idle runner of another job
            if not slot.closing and not slot.runner.busy:
                slot.closing = True
                slot.runner.close()
                break
        return None

    def _new_slot(self, job: Job, placement: SlotPlacement) -> _Slot:
        used = {s.index for s in self.slots}
        index = next(i for i in range(len(used) + 1) if i not in used)
        cores = len(placement.positions)  # a job larger than the node holds the whole node, no more
        if cores < job.core_count and job.panda_id not in self._oversized:
            self._oversized.add(job.panda_id)
            log.warning(
                "job %d asks for %d cores, node %s has %d: its payloads get the whole node",
                job.panda_id,
                job.core_count,
                self.node.host,
                cores,
            )
        context = SlotContext(
            job=job,
            job_dir=self.layout.job_dir(job.panda_id),
            log_dir=self.layout.payload_log_dir(job.panda_id),
            slot_name=f"r{self.node.rank:04d}-s{index:03d}",
            settings=self.settings.payload,
            base_env=self.base_env,
            slot_env=gpu_env(self.settings.node.gpu_vendor, [self.gpu_ids[g] for g in placement.gpus]),
            cpu_list=cpu_list(placement.cpus) if self._pin else "",
            cores=cores,
        )
        try:
            request = self._environment(job)
            chain = self._chain
            if chain is not None:
                context = replace(context, wrap=lambda command: chain.wrap(command, request))
            runner = self._runner_class(job)(context)
        except HpcPilotError as exc:
            log.warning("job %d: cannot set up its payload: %s", job.panda_id, exc)
            runner = _FailingRunner(context, exc)
        slot = _Slot(runner, job.panda_id, cores, index, placement)
        self.slots.append(slot)
        return slot

    def _environment(self, job: Job) -> EnvironmentRequest:
        """The job's environment on this node, prepared once (modules computed, image checked).

        With the ``plain`` chain nothing is loaded and payloads run in the pilot's environment.

        Raises
        ------
        HpcPilotError
            If it cannot be made (a bad ``container_name``, a missing module or image): every item of
            the job on this node then fails with the error's code (1110).
        """
        known = self._requests.get(job.panda_id)
        if isinstance(known, HpcPilotError):
            raise known
        if known is not None:
            return known
        if self.settings.environment.chain == ("plain",):
            return EnvironmentRequest()  # the pilot's own environment: nothing to load or check
        try:
            if self._chain is None:
                self._chain = make_chain(self.settings.environment)
            binds = [str(self.layout.root)]
            if self._scratch is not None:
                binds.append(str(self._scratch))
            request = request_for(job, self.settings.environment, self.settings.node, binds)
            self._chain.prepare(request, self.base_env)
        except HpcPilotError as exc:
            exc.context.setdefault("PandaID", job.panda_id)
            self._requests[job.panda_id] = exc
            raise
        self._requests[job.panda_id] = request
        return request

    def _runner_class(self, job: Job) -> type[SlotRunner]:
        name = self.settings.payload.plain
        if job.event_service:
            name = self.settings.eventservice.mode
            if name == "auto":
                name = "per_range" if has_range_placeholders(job) else "streaming"
        cls = self._runner_classes.get(name)
        if cls is None:
            cls = self._runner_classes[name] = load_plugin("payloads", name, SlotRunner)
        return cls

    def _submit(self, slot: _Slot, entry: _Queued) -> None:
        job = self.jobs[slot.panda_id]
        if isinstance(entry, _Range):
            rng = entry.event_range
            if rng.lfn and not rng.pfn:
                rng = _with_pfn(rng, self._input_path(job.panda_id, rng.lfn))
            item = WorkItem(job, rng, self.layout.range_output(job, rng), entry.attempt)
            assert item.output is not None
            self._outputs[(job.panda_id, rng.range_id)] = (entry.index, item.output)
        else:
            item = WorkItem(job, None, None)
        slot.started = time.monotonic()
        slot.output = item.output
        slot.runner.submit(item)

    def _input_path(self, panda_id: int, lfn: str) -> str:
        """Where a range's input file is: the job directory, else the top of the work directory.

        With one job per Harvester worker its inputs are linked at the top. Looked up once per file.
        """
        key = (panda_id, lfn)
        path = self._inputs.get(key)
        if path is None:
            in_job_dir = self.layout.job_dir(panda_id) / lfn
            at_top = self.layout.root / lfn
            shared = at_top if not in_job_dir.exists() and at_top.exists() else in_job_dir
            path = str(self._on_scratch(panda_id, shared))
            self._inputs[key] = path
        return path

    def _on_scratch(self, panda_id: int, shared: Path) -> Path:
        """A node-local copy of an input when ``data.scratch`` is set, else the shared file.

        A copy that cannot be made is logged and the shared file is read instead.
        """
        if self._scratch is None or not shared.is_file():
            return shared
        try:
            return copy_to_scratch(shared, self._scratch, panda_id)
        except OSError as exc:
            log.warning("job %d: reading %s from the shared filesystem: %s", panda_id, shared.name, exc)
            return shared

    def _collect(self, slot: _Slot, results: list[ItemResult]) -> None:
        if not self.range_results and not self.payload_results:
            self.oldest_result = time.monotonic()
        for monitor in self._monitors or ():
            monitor.forget(slot.runner.context.slot_name)
        for result in results:
            self.busy_core_s += result.wall_s * slot.cores
            if isinstance(result, RangeResult):
                outcome = self._range_outcome(result)
                if outcome is not None:
                    self.range_results.append(outcome)
            else:
                self.payload_results.append(self._payload_outcome(result))
                slot.closing = True  # a plain job's runner is used once

    def _range_outcome(self, result: RangeResult) -> tuple[int, RangeResult] | None:
        """A range's index and result as reported: 1098 when it failed for lack of space (output removed).

        None for a result of no range in flight (a runner that reported one twice).
        """
        found = self._outputs.pop((result.panda_id, result.range_id), None)
        if found is None:
            log.warning("rank %d: a second result for range %s ignored", self.node.rank, result.range_id)
            return None
        index, output = found
        if result.state is RangeState.FINISHED or not self._for_lack_of_space(result):
            return index, result
        _remove_partial(output)
        return index, replace(result, error_code=ErrorCode.NO_LOCAL_SPACE, error_diag=_full(result))

    def _payload_outcome(self, result: PayloadResult) -> PayloadResult:
        """A plain job's result as reported: 1098 when it failed for lack of space."""
        if result.ok or not self._for_lack_of_space(result):
            return result
        return replace(result, error_code=ErrorCode.NO_LOCAL_SPACE, error_diag=_full(result))

    def _for_lack_of_space(self, result: RangeResult | PayloadResult) -> bool:
        """Whether a failed item failed because a disk is full; if so, start nothing new for a while."""
        if not may_be_disk_full(result.error_code) or not self.disk.explains(result.error_diag):
            return False
        what = f"range {result.range_id}" if isinstance(result, RangeResult) else "the payload"
        self._disk_full(f"{what} of job {result.panda_id} failed: {result.error_diag[-200:]}")
        return True

    def _disk_full(self, why: str) -> None:
        """A disk of this node is full: pause (start nothing new, ask for nothing) until it has space."""
        if self.disk.enter(time.monotonic(), why):
            log.warning(
                "rank %d on %s: disk full (%s): starting nothing new, waiting up to %.0f s for space",
                self.node.rank,
                self.node.host,
                why,
                self.settings.disk.wait_s,
            )

    def _watch_disk(self) -> bool:
        """While paused for a full disk: go on when there is space again, stop when it lasts too long."""
        now = time.monotonic()
        if not self.disk.due(now):
            return False
        if self.disk.has_space():
            lasted = self.disk.leave(now)
            log.warning("rank %d: space is back after %.0f s: taking work again", self.node.rank, lasted)
            return True
        if self.disk.expired(now):
            log.warning(
                "rank %d on %s stops taking work (%d %s): its disk stayed full for %.0f s (%s)",
                self.node.rank,
                self.node.host,
                ErrorCode.NO_LOCAL_SPACE,
                ErrorCode.NO_LOCAL_SPACE.name,
                self.settings.disk.wait_s,
                self.disk.why,
            )
            self.local_drain = True
            self._bye_reason = int(ErrorCode.NO_LOCAL_SPACE)
            return True
        self.disk.not_yet(now)
        return False

    def _reap_closed(self) -> bool:
        kept = []
        for slot in self.slots:
            if slot.closing and not slot.runner.busy and slot.runner.closed:
                if slot.placement is not None:
                    self.placer.give(slot.placement)
            else:
                kept.append(slot)
        reaped = len(kept) != len(self.slots)
        self.slots = kept
        return reaped

    def _close_job(self, panda_id: int) -> None:
        for slot in self.slots:
            if slot.panda_id == panda_id and not slot.closing:
                slot.closing = True
                slot.runner.close()
        self._requests.pop(panda_id, None)
        if self._scratch is not None:
            remove_job_scratch(self._scratch, panda_id)

    # --- reporting ----------------------------------------------------------------------------

    def _load(self) -> tuple[int, int, int]:
        """(cores running items, cores of queued items, items running)."""
        running = [s for s in self.slots if s.runner.busy]
        return sum(s.cores for s in running), self.queued_cores, len(running)

    def _maybe_send(self) -> bool:
        running_cores, queued_cores, busy = self._load()
        total = self.node.cores
        capacity = total * (1 + self._prefetch)
        wants = (
            not self.request_outstanding
            and not self.disk.full
            and queued_cores * 2 <= total * self._prefetch
            and capacity - running_cores - queued_cores > 0
        )
        n_results = len(self.range_results) + len(self.payload_results)
        now = time.monotonic()
        # A worker with nothing left to run reports at once (outputs are reported as soon as they
        # exist), unless the answer to its request is due any moment: then the results go with the
        # next message, one message per range at most. A full batch waits for the next request while
        # one is out; report_interval_s caps it.
        idle = busy == 0 and not self.queue
        answer_due = self.request.answer_due(now)
        due = n_results and (
            (idle and not answer_due)
            or now - self.oldest_result >= self.settings.parallel.report_interval_s
            or (n_results >= self._batch and not self.request_outstanding)
        )
        due = due or self._samples_due()
        if not (wants or due or not self.hello_sent):
            return False
        want = capacity - running_cores - queued_cores if wants else 0
        self.transport.send(self._update(want, total - running_cores - queued_cores, busy))
        if want > 0:  # it stands at rank 0 until all of it came (see the Assignment above)
            self.request.sent(want, now)
        return True

    def _update(self, want: int, free: int, busy: int) -> WorkerUpdate:
        update = WorkerUpdate(
            node=None if self.hello_sent else self.node,
            ranges=self._result_batches(),
            payloads=tuple(self.payload_results),
            want_cores=want,
            free_cores=max(free, 0),
            busy_slots=busy,
            logs=self.drain_logs(),
            samples=tuple(self._samples),
        )
        self._samples = []
        self.hello_sent = True
        self.range_results = []
        self.payload_results = []
        return update

    def _result_batches(self) -> tuple[RangeResults, ...]:
        """The range results since the last update, as columns per job."""
        per_job: dict[int, list[tuple[int, RangeResult]]] = {}
        for index, result in self.range_results:
            per_job.setdefault(result.panda_id, []).append((index, result))
        return tuple(self._columns(panda_id, items) for panda_id, items in per_job.items())

    def _columns(self, panda_id: int, items: list[tuple[int, RangeResult]]) -> RangeResults:
        prefix = self._out_prefix.get(panda_id)
        if prefix is None:
            job = self.jobs[panda_id]
            prefix = self._out_prefix[panda_id] = str(self.layout.range_output(job, EventRange("", 1, 1)))
        odd: list[tuple[int, str]] = []
        errors: list[tuple[int, int, str]] = []
        fsize: list[int] = []
        adler: list[str] = []
        for pos, (_, r) in enumerate(items):
            out = r.output
            fsize.append(out.fsize if out is not None else -1)
            adler.append(out.adler32 if out is not None else "")
            if out is not None and out.path != prefix + r.range_id:
                odd.append((pos, out.path))
            if r.state is not RangeState.FINISHED:
                errors.append((pos, int(r.error_code) if r.error_code is not None else 0, r.error_diag))
        return RangeResults(
            panda_id,
            tuple(i for i, _ in items),
            bytes(r.state is RangeState.FINISHED for _, r in items),
            tuple(r.n_events for _, r in items),
            tuple(fsize),
            tuple(adler),
            tuple(r.wall_s for _, r in items),
            tuple(r.cpu_s for _, r in items),
            prefix,
            tuple(odd),
            tuple(errors),
        )

    def _wind_down(self) -> bool:
        """Stopping: close idle runners; once nothing runs, send the last results and say bye."""
        for slot in self.slots:
            if not slot.closing and not slot.runner.busy:
                slot.closing = True
                slot.runner.close()
        if any(s.runner.busy or not s.runner.closed for s in self.slots):
            return False
        if self._scratch is not None:
            for panda_id in self.jobs:
                remove_job_scratch(self._scratch, panda_id)
        returned = _intervals([e for e in self.queue if isinstance(e, _Range)])
        returned_plain = tuple(e for e in self.queue if isinstance(e, int))
        self.queue.clear()
        self.queued_cores = 0
        _, _, busy = self._load()
        for monitor in self._monitors or ():
            monitor.close()
        bye = WorkerBye(
            self._update(0, 0, busy), returned, returned_plain, self.busy_core_s, self._bye_reason
        )
        self.transport.send(bye)
        self.transport.flush()
        self.bye_sent = True
        self._farewell_by = time.monotonic() + FAREWELL_TIMEOUT_S
        return True

    def _await_farewell(self) -> bool:
        """After the bye: done once rank 0's `Farewell` came (or, should it never come, after a while)."""
        if self.done:
            return True
        if time.monotonic() >= self._farewell_by:
            log.warning(
                "rank %d: no farewell from rank 0 within %.0f s: ending", self.node.rank, FAREWELL_TIMEOUT_S
            )
            self.done = True
            return True
        return False

    # --- monitoring ---------------------------------------------------------------------------

    def _observe(self) -> bool:
        """Call every monitor (``monitor.plugins``) with the running items; carry out their verdicts."""
        now = time.monotonic()
        self._next_sample = now + self.settings.monitor.period_s
        monitors = self._monitors if self._monitors is not None else self._load_monitors()
        if not monitors:
            return False
        running = self._watched()
        verdicts: list[Verdict] = []
        for monitor in list(monitors):
            try:
                observation = monitor.observe(now, running)
            except Exception as exc:  # a plugin's bug must not end the node's work
                log.warning(
                    "rank %d: monitor %s failed and is turned off: %r",
                    self.node.rank,
                    type(monitor).__name__,
                    exc,
                )
                monitors.remove(monitor)
                continue
            if observation.samples and not self._samples:
                self._samples_since = now
            self._samples.extend(observation.samples)
            verdicts.extend(observation.verdicts)
        for verdict in verdicts:
            self._carry_out(verdict)
        return bool(verdicts)

    def _load_monitors(self) -> list[Monitor]:
        """The monitors of ``monitor.plugins``, created once; a plugin that fails to load is logged."""
        context = NodeContext(
            self.node.rank, self.node.host, self.node.cores, self.layout.root, self._scratch
        )
        monitors: list[Monitor] = []
        for name in self.settings.monitor.plugins:
            try:
                monitors.append(load_plugin("monitors", name, Monitor)(self.settings.monitor, context))
            except HpcPilotError as exc:
                log.warning("rank %d: monitor %s not loaded: %s", self.node.rank, name, exc)
        self._monitors = monitors
        return monitors

    def _watched(self) -> list[Watched]:
        """The items running on the node, as monitors see them."""
        running = []
        for slot in self.slots:
            if not slot.runner.busy:
                continue
            runner = slot.runner
            files = runner.log_files() + ((slot.output,) if slot.output is not None else ())
            running.append(
                Watched(
                    runner.context.slot_name,
                    self.jobs[slot.panda_id],
                    runner.pids(),
                    slot.started,
                    runner.context.job_dir,
                    files,
                )
            )
        return running

    def _carry_out(self, verdict: Verdict) -> None:
        """Kill a slot's item (it fails with the verdict's code), or stop taking work on this node.

        Too little disk (1098) pauses the node instead (see `hpcpilot.parallel.diskspace`): it stops
        only if the disk stays full for ``disk.wait_s``.
        """
        if verdict.kind is VerdictKind.STOP_NODE and verdict.code is ErrorCode.NO_LOCAL_SPACE:
            if not self._stopping:
                self._disk_full(verdict.diag)
            return
        if verdict.kind is VerdictKind.STOP_NODE:
            if not self._stopping:
                log.warning(
                    "rank %d on %s stops taking work (%d %s): %s",
                    self.node.rank,
                    self.node.host,
                    verdict.code,
                    verdict.code.name,
                    verdict.diag,
                )
                self.local_drain = True
                self._bye_reason = int(verdict.code)
            return
        for slot in self.slots:
            if slot.runner.busy and slot.runner.context.slot_name == verdict.slot:
                log.warning(
                    "rank %d: killing the payload of %s, job %d (%d %s): %s",
                    self.node.rank,
                    verdict.slot,
                    slot.panda_id,
                    verdict.code,
                    verdict.code.name,
                    verdict.diag,
                )
                slot.runner.kill(verdict.code, verdict.diag)
                return

    def _samples_due(self) -> bool:
        """Samples wait for longer than a period: send them (the worker's heartbeat to rank 0)."""
        return (
            bool(self._samples) and time.monotonic() - self._samples_since >= self.settings.monitor.period_s
        )


def _has_taskset() -> bool:
    found = shutil.which("taskset") is not None
    if not found:
        log.warning("node.bind_cpus is on but taskset is not on PATH: payloads are not pinned")
    return found


def _full(result: RangeResult | PayloadResult) -> str:
    """The diagnosis of an item that failed for lack of space."""
    code = int(result.error_code) if result.error_code is not None else "no code"
    return f"no space left (the payload failed with {code}): {result.error_diag}"[-1000:]


def _remove_partial(output: Path | None) -> None:
    """Remove what a range wrote before the disk was full (its output is incomplete): space back."""
    if output is None:
        return
    try:
        output.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove the partial output %s: %s", output, exc)


def _intervals(ranges: list[_Range]) -> tuple[RangeWork, ...]:
    """Queued ranges as intervals of consecutive indices of a job (to give back)."""
    spans: list[RangeWork] = []
    for r in ranges:
        last = spans[-1] if spans else None
        if last is not None and last.panda_id == r.panda_id and last.stop == r.index:
            spans[-1] = RangeWork(r.panda_id, last.start, r.index + 1)
        else:
            spans.append(RangeWork(r.panda_id, r.index, r.index + 1))
    return tuple(spans)


def ranges_of_columns(columns: Mapping[str, Any]) -> list[EventRange]:
    """The ranges of `hpcpilot.model.ranges.range_columns` output."""
    ids = list(columns["ids"])
    n = len(ids)
    text = [
        list(value) if isinstance(value, list | tuple) else [value] * n
        for value in (columns.get(key, "") for key in ("LFN", "GUID", "scope", "PFN"))
    ]
    return [
        EventRange(rid, start, last, lfn, guid, scope, pfn)
        for rid, start, last, lfn, guid, scope, pfn in zip(
            ids, columns["start"], columns["last"], *text, strict=True
        )
    ]


def _with_pfn(rng: EventRange, pfn: str) -> EventRange:
    return EventRange(rng.range_id, rng.start_event, rng.last_event, rng.lfn, rng.guid, rng.scope, pfn)


class _FailingRunner(SlotRunner):
    """Stands in for a runner that could not be set up: every item fails with the setup error."""

    def __init__(self, context: SlotContext, error: HpcPilotError) -> None:
        super().__init__(context)
        self._error = error
        self._results: list[ItemResult] = []

    @property
    def busy(self) -> bool:
        return bool(self._results)

    def submit(self, item: WorkItem) -> None:
        code = self._error.code
        if item.event_range is not None:
            self._results.append(failed_range(item, code, str(self._error), time.monotonic()))
        else:
            self._results.append(
                PayloadResult(item.job.panda_id, False, error_code=code, error_diag=str(self._error))
            )

    def poll(self) -> list[ItemResult]:
        results, self._results = self._results, []
        return results
