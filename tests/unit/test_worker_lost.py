"""`Coordinator.worker_lost`: a real coordinator and two real workers in one process; one of them dies.

The dead worker is simply no longer stepped, and the coordinator is told by the message rank 0's MPI
transport makes of a failed process (`WorkerLost`): its ranges go to the other worker and every range
finishes. The MPI side (ULFM) is tested in ``tests/mpi/test_ulfm.py``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path

from hpcpilot.config.schema import EventServiceSettings, NodeSettings, Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.states import JobState
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import Message, WorkerLost
from hpcpilot.parallel.transport import Backoff, MessageCounts
from hpcpilot.runtime.journal import Journal
from tests.conftest import finished_ranges, journal
from tests.unit.test_coordinator_commands import N_RANGES, Scripted


class Hub:
    """In-process links between a coordinator and several workers."""

    def __init__(self, ranks: tuple[int, ...]) -> None:
        self.worker_ranks = ranks
        self.counts = MessageCounts()
        self.inbox: deque[tuple[int, Message]] = deque()
        self.outboxes: dict[int, deque[Message]] = {r: deque() for r in ranks}

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        while self.inbox and len(out) < limit:
            out.append(self.inbox.popleft())
            self.counts.received(out[-1][1])
        return out

    def send(self, rank: int, message: Message) -> None:
        self.counts.sent(message)
        self.outboxes[rank].append(message)

    def flush(self) -> None:
        return None


class WorkerEnd:
    """One worker's end of the hub."""

    def __init__(self, hub: Hub, rank: int) -> None:
        self.hub, self.rank = hub, rank
        self.counts = MessageCounts()

    def poll(self) -> Message | None:
        box = self.hub.outboxes[self.rank]
        return box.popleft() if box else None

    def send(self, message: Message) -> None:
        self.hub.inbox.append((self.rank, message))

    def flush(self) -> None:
        return None


def test_a_lost_worker_s_ranges_finish_on_the_other(tmp_path: Path) -> None:
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=2))
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Scripted(settings, layout, None, 0, 0.002)
    hub = Hub((1, 2))
    jnl = Journal(layout.journal)
    coordinator = Coordinator(hub, settings, layout, comm, jnl, lambda line: None)
    workers = {
        r: par.make_worker(par.World(r, 3, f"node{r}"), WorkerEnd(hub, r), settings, layout, tuple)
        for r in (1, 2)
    }
    backoff = Backoff(0.001, 0.01)
    killed = False
    deadline = time.monotonic() + 120
    while not coordinator.done:
        assert time.monotonic() < deadline, f"the run never ended: {len(comm.reported)} ranges reported"
        progress = coordinator.step()
        for rank, worker in workers.items():
            if not worker.done and not (killed and rank == 1):
                progress |= worker.step()
        if not killed and len(comm.reported) >= 40:
            killed = True  # rank 1 dies: it is stepped no more, MPI tells rank 0
            hub.inbox.append((1, WorkerLost("MPI_ERR_PROC_FAILED: Process Failure")))
        if progress:
            backoff.progress()
        else:
            backoff.idle()
    jnl.close()

    records = journal(tmp_path)
    [lost] = [r for r in records if r["ev"] == "lost"]
    assert lost["rank"] == 1 and lost["host"] == "node1" and "PROC_FAILED" in lost["why"]
    failed = [r for r in records if r["ev"] == "failed"]
    assert failed and all(r["code"] == 1200 and "worker rank 1 (node1) lost" in r["diag"] for r in failed)
    assert all(r["attempt"] == 1 for r in failed)
    finished = Counter(rid for rid, _ in finished_ranges(records))
    assert len(finished) == N_RANGES and set(finished.values()) == {1}
    after = [r for r in records[records.index(lost) :] if r["ev"] == "finished"]
    retried = {r["id"] for r in failed}
    assert retried <= {rid for r in after if r["rank"] == 2 for rid in r["ids"]}
    assert comm.reports[-1].state is JobState.FINISHED
    s = coordinator.summary()
    assert s["ranges"]["finished"] == N_RANGES and s["ranges"]["failed_attempts"] == len(retried)
    assert s["lost_ranks"] == [1]


def test_when_every_worker_is_lost_the_run_ends_with_the_work_not_done(tmp_path: Path) -> None:
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=2))
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Scripted(settings, layout, None, 0, 0.01)
    hub = Hub((1,))
    jnl = Journal(layout.journal)
    coordinator = Coordinator(hub, settings, layout, comm, jnl, lambda line: None)
    worker = par.make_worker(par.World(1, 2, "node1"), WorkerEnd(hub, 1), settings, layout, tuple)
    steps = 0
    while not coordinator.done and steps < 100_000:
        steps += 1
        coordinator.step()
        if len(comm.reported) < 20:
            worker.step()
        elif not coordinator.books.worker(1).lost:
            hub.inbox.append((1, WorkerLost("MPI_ERR_PROC_FAILED: Process Failure")))
    jnl.close()
    assert coordinator.done
    s = coordinator.summary()
    assert s["lost_ranks"] == [1] and s["drained_by"] == "KILL_SIGNAL"
    [job] = s["jobs"]
    assert job["state"] == "failed" and "not done" in job["error_diag"]
    assert 0 < s["ranges"]["not_done"] < N_RANGES and s["ranges"]["finished"] >= 20
