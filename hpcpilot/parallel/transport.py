"""Moving messages between ranks: over MPI, or in-process when the world has one rank.

Every MPI library here spins a full core in a blocking receive, so nothing here blocks: receivers poll
(``improbe``) and the loops that call them sleep with `Backoff` when there is nothing to do.
Sends are non-blocking (``isend``) and their requests are reaped lazily, so a slow worker never stalls
the coordinator. With fault tolerance (ULFM), rank 0's end turns a worker rank's death into a
`WorkerLost` message instead of letting MPI end the job.

Every end counts what it sends and receives, by message type (`MessageCounts`): the summary's
``messages`` come from rank 0's end, so no send is left out of them.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Protocol

from hpcpilot.parallel.messages import Message, WorkerLost


class MessageCounts:
    """The messages one transport end sent and received, by type.

    Counted where they leave and arrive, so every send counts (a `Stop` as much as an `Assignment`);
    a send to a rank known dead, which never leaves, does not. A `WorkerLost` made up by rank 0's end
    for a dead rank is not a received message.
    """

    __slots__ = ("_received", "_sent")

    def __init__(self) -> None:
        self._sent: dict[type, int] = {}
        self._received: dict[type, int] = {}

    def sent(self, message: Message) -> None:
        """Count one message sent."""
        kind = type(message)
        self._sent[kind] = self._sent.get(kind, 0) + 1

    def received(self, message: Message) -> None:
        """Count one message received."""
        kind = type(message)
        self._received[kind] = self._received.get(kind, 0) + 1

    @property
    def n_sent(self) -> int:
        """How many messages were sent."""
        return sum(self._sent.values())

    @property
    def n_received(self) -> int:
        """How many messages were received."""
        return sum(self._received.values())

    def sent_by_type(self) -> dict[str, int]:
        """Messages sent, by the name of their type (sorted by name)."""
        return {kind.__name__: n for kind, n in sorted(self._sent.items(), key=lambda kv: kv[0].__name__)}

    def received_by_type(self) -> dict[str, int]:
        """Messages received, by the name of their type (sorted by name)."""
        return {kind.__name__: n for kind, n in sorted(self._received.items(), key=lambda kv: kv[0].__name__)}

    def summary(self) -> dict[str, Any]:
        """The summary's ``messages``: ``in`` and ``out`` totals and both by type."""
        return {
            "in": self.n_received,
            "out": self.n_sent,
            "in_by_type": self.received_by_type(),
            "out_by_type": self.sent_by_type(),
        }


class CoordinatorTransport(Protocol):
    """What the coordinator needs of a transport."""

    worker_ranks: tuple[int, ...]
    counts: MessageCounts

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        """Up to ``limit`` messages that have arrived, with their source ranks (never blocks)."""

    def send(self, rank: int, message: Message) -> None:
        """Send to one worker (never blocks)."""

    def flush(self) -> None:
        """Wait until every send has completed."""


class WorkerTransport(Protocol):
    """What a worker needs of a transport."""

    rank: int
    counts: MessageCounts

    def poll(self) -> Message | None:
        """The next message from the coordinator, if one has arrived (never blocks)."""

    def send(self, message: Message) -> None:
        """Send to the coordinator (never blocks)."""

    def flush(self) -> None:
        """Wait until every send has completed."""


class Backoff:
    """Idle strategy: spin, yield while an answer is due, short sleeps, then sleeps to a ceiling.

    * for ``spin_s`` after the last progress: poll without pause;
    * while an answer is expected (a worker waiting for its assignment, rank 0 with work out), for
      ``yield_s`` more: poll, giving the CPU to any other runnable process between polls
      (``sched_yield``), so a round trip costs microseconds, not a sleep;
    * until ``hot_s`` after the last progress: sleeps of at most ``HOT_SLEEP_S`` (two loops that back
      off on their own feed each other's latency: a sleeping worker sends nothing, so rank 0 sleeps
      longer too);
    * after that, sleeps doubling up to ``max_sleep_s``: an idle rank costs almost no CPU.

    Parameters
    ----------
    spin_s
        How long to keep polling without pause after the last progress.
    max_sleep_s
        The longest single sleep.
    hot_s
        How long after the last progress sleeps stay at most ``HOT_SLEEP_S``.
    yield_s
        How long to poll with ``sched_yield`` while an answer is expected.
    """

    MIN_SLEEP_S = 50e-6
    HOT_SLEEP_S = 0.001

    def __init__(self, spin_s: float, max_sleep_s: float, hot_s: float = 0.1, yield_s: float = 0.005) -> None:
        self.spin_s = spin_s
        self.max_sleep_s = max_sleep_s
        self.hot_s = hot_s
        self.yield_s = yield_s
        self._idle_since: float | None = None
        self._sleep = self.MIN_SLEEP_S

    def progress(self) -> None:
        """Something happened: poll eagerly again."""
        self._idle_since = None
        self._sleep = self.MIN_SLEEP_S

    def idle(self, cap_s: float | None = None, *, expecting: bool = False) -> None:
        """Nothing happened: spin, yield or sleep (at most ``cap_s`` when given).

        ``expecting`` says an answer is due soon (see the class description).
        """
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        idle_for = now - self._idle_since
        if idle_for < self.spin_s:
            return
        if expecting and idle_for < self.spin_s + self.yield_s:
            os.sched_yield()
            return
        delay = self._sleep if cap_s is None else min(self._sleep, max(cap_s, 0.0))
        if idle_for < self.hot_s:
            delay = min(delay, self.HOT_SLEEP_S)
        time.sleep(delay)
        self._sleep = min(self._sleep * 2, self.max_sleep_s)


class LocalLink:
    """Both ends of an in-process link, for world size 1: the coordinator's and one worker's."""

    def __init__(self) -> None:
        self.to_worker: deque[Message] = deque()
        self.to_coordinator: deque[Message] = deque()
        self.coordinator = _LocalCoordinatorEnd(self)
        self.worker = _LocalWorkerEnd(self)


class _LocalCoordinatorEnd:
    worker_ranks: tuple[int, ...] = (0,)

    def __init__(self, link: LocalLink) -> None:
        self._link = link
        self.counts = MessageCounts()

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        queue, received = self._link.to_coordinator, self.counts.received
        while queue and len(out) < limit:
            message = queue.popleft()
            received(message)
            out.append((0, message))
        return out

    def send(self, rank: int, message: Message) -> None:
        self.counts.sent(message)
        self._link.to_worker.append(message)

    def flush(self) -> None:
        return None


class _LocalWorkerEnd:
    rank = 0

    def __init__(self, link: LocalLink) -> None:
        self._link = link
        self.counts = MessageCounts()

    def poll(self) -> Message | None:
        queue = self._link.to_worker
        if not queue:
            return None
        message = queue.popleft()
        self.counts.received(message)
        return message

    def send(self, message: Message) -> None:
        self.counts.sent(message)
        self._link.to_coordinator.append(message)

    def flush(self) -> None:
        return None


class _MpiEnd:
    """What both MPI ends share: non-blocking sends, reaped lazily, all waited for by `flush`.

    Parameters
    ----------
    comm
        The MPI communicator (``MPI.COMM_WORLD``).
    reap_at
        How many sends may be pending before the completed ones are reaped.
    """

    def __init__(self, comm: Any, reap_at: int) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        self._sends: list[tuple[int, Any]] = []  # (destination, request)
        self._reap_at = reap_at
        self.counts = MessageCounts()

    def _isend(self, dest: int, message: Message) -> None:
        self._sends.append((dest, self._comm.isend(message, dest=dest, tag=message.TAG)))
        self.counts.sent(message)
        if len(self._sends) >= self._reap_at:
            self._sends = [s for s in self._sends if self._pending(*s)]

    def _pending(self, dest: int, request: Any) -> bool:
        """Whether a send has not completed yet."""
        return not request.Test()

    def flush(self) -> None:
        """Wait for every pending send."""
        self._mpi.Request.Waitall([request for _, request in self._sends])
        self._sends.clear()


class MpiCoordinatorTransport(_MpiEnd):
    """Rank 0's end over MPI.

    With ``fault_tolerant``, MPI errors on the world communicator return instead of aborting the job
    (``MPI_ERRORS_RETURN``), and a failed process reported by MPI (``MPI_ERR_PROC_FAILED``, ULFM) is
    acknowledged and turned into one `WorkerLost` message from that rank; nothing more is received
    from it or sent to it. Any other MPI error still raises.

    Parameters
    ----------
    comm
        The MPI communicator (``MPI.COMM_WORLD``).
    fault_tolerant
        Survive the death of worker ranks (see `hpcpilot.parallel.run.fault_tolerant`).
    """

    def __init__(self, comm: Any, fault_tolerant: bool = False) -> None:
        super().__init__(comm, reap_at=32)
        self._status = self._mpi.Status()
        self.worker_ranks = tuple(range(1, comm.Get_size()))
        self.fault_tolerant = fault_tolerant
        self.failed: set[int] = set()  # ranks MPI reported dead
        self._lost: list[tuple[int, Message]] = []  # their WorkerLost messages, not yet polled
        if fault_tolerant:
            comm.Set_errhandler(self._mpi.ERRORS_RETURN)

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        """Receive what has arrived from any worker (and the news of dead ones)."""
        out: list[tuple[int, Message]] = []
        if not self.fault_tolerant:
            self._receive(limit, out)
            return out
        try:
            self._receive(limit, out)
        except self._mpi.Exception as exc:
            self._on_error(exc)  # what arrived before the news of a death is kept: live ranks sent it
        out = [(rank, m) for rank, m in out if rank not in self.failed]
        if self._lost:
            out[:0], self._lost = self._lost, []
        return out

    def _receive(self, limit: int, out: list[tuple[int, Message]]) -> None:
        """Receive into ``out`` until ``limit`` messages or none is waiting (an MPI error propagates)."""
        mpi, comm, status = self._mpi, self._comm, self._status
        received = self.counts.received
        while len(out) < limit:
            msg = comm.improbe(source=mpi.ANY_SOURCE, tag=mpi.ANY_TAG, status=status)
            if msg is None:
                break
            message = msg.recv()
            received(message)
            out.append((status.Get_source(), message))

    def send(self, rank: int, message: Message) -> None:
        """Start a non-blocking send to one worker (nothing is sent to a dead one)."""
        if not self.fault_tolerant:
            self._isend(rank, message)
            return
        if rank in self.failed:
            return
        try:
            self._isend(rank, message)
        except self._mpi.Exception as exc:
            self._on_error(exc, rank)

    def _pending(self, dest: int, request: Any) -> bool:
        if not self.fault_tolerant:
            return not request.Test()
        if dest in self.failed:
            return False  # abandoned: it can never complete
        try:
            return not request.Test()
        except self._mpi.Exception as exc:
            self._on_error(exc, dest)
            return False

    def flush(self) -> None:
        """Wait for every pending send to a live worker."""
        if not self.fault_tolerant:
            super().flush()
            return
        for dest, request in self._sends:
            if dest in self.failed:
                continue
            try:
                request.Wait()
            except self._mpi.Exception as exc:
                self._on_error(exc, dest)
        self._sends.clear()

    def _on_error(self, exc: Any, dest: int | None = None) -> None:
        """Book the ranks MPI reports dead; re-raise any other error."""
        mpi = self._mpi
        if exc.Get_error_class() not in (mpi.ERR_PROC_FAILED, mpi.ERR_PROC_FAILED_PENDING):
            raise exc
        why = f"{exc.Get_error_string()} (MPI error class {exc.Get_error_class()})"
        self._comm.Ack_failed()  # receives from any source work again
        failed, world = self._comm.Get_failed(), self._comm.Get_group()
        try:
            dead = set(mpi.Group.Translate_ranks(failed, list(range(failed.Get_size())), world))
        finally:
            failed.Free()
            world.Free()
        if dest is not None:
            dead.add(dest)
        for rank in sorted(dead - self.failed - {0}):
            self.failed.add(rank)
            self._lost.append((rank, WorkerLost(why)))


class MpiWorkerTransport(_MpiEnd):
    """A worker's end over MPI.

    Parameters
    ----------
    comm
        The MPI communicator (``MPI.COMM_WORLD``).
    """

    def __init__(self, comm: Any) -> None:
        super().__init__(comm, reap_at=8)
        self.rank: int = comm.Get_rank()

    def poll(self) -> Message | None:
        """Receive the next message from rank 0, if any."""
        msg = self._comm.improbe(source=0, tag=self._mpi.ANY_TAG)
        if msg is None:
            return None
        message: Message = msg.recv()
        self.counts.received(message)
        return message

    def send(self, message: Message) -> None:
        """Start a non-blocking send to rank 0."""
        self._isend(0, message)
