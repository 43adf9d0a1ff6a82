"""Moving messages between ranks: over MPI, or in-process when the world has one rank.

Every MPI library here spins a full core in a blocking receive, so nothing here blocks: receivers poll
(``improbe``) and the loops that call them sleep with `Backoff` when there is nothing to do.
Sends are non-blocking (``isend``) and their requests are reaped lazily, so a slow worker never stalls
the coordinator.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Protocol

from hpcpilot.parallel.messages import Message


class CoordinatorTransport(Protocol):
    """What the coordinator needs of a transport."""

    worker_ranks: tuple[int, ...]

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        """Up to ``limit`` messages that have arrived, with their source ranks (never blocks)."""

    def send(self, rank: int, message: Message) -> None:
        """Send to one worker (never blocks)."""

    def flush(self) -> None:
        """Wait until every send has completed."""


class WorkerTransport(Protocol):
    """What a worker needs of a transport."""

    rank: int

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

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        queue = self._link.to_coordinator
        while queue and len(out) < limit:
            out.append((0, queue.popleft()))
        return out

    def send(self, rank: int, message: Message) -> None:
        self._link.to_worker.append(message)

    def flush(self) -> None:
        return None


class _LocalWorkerEnd:
    rank = 0

    def __init__(self, link: LocalLink) -> None:
        self._link = link

    def poll(self) -> Message | None:
        queue = self._link.to_worker
        return queue.popleft() if queue else None

    def send(self, message: Message) -> None:
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
        self._sends: list[Any] = []
        self._reap_at = reap_at

    def _isend(self, dest: int, message: Message) -> None:
        self._sends.append(self._comm.isend(message, dest=dest, tag=message.TAG))
        if len(self._sends) >= self._reap_at:
            self._sends = [r for r in self._sends if not r.Test()]

    def flush(self) -> None:
        """Wait for every pending send."""
        self._mpi.Request.Waitall(self._sends)
        self._sends.clear()


class MpiCoordinatorTransport(_MpiEnd):
    """Rank 0's end over MPI.

    Parameters
    ----------
    comm
        The MPI communicator (``MPI.COMM_WORLD``).
    """

    def __init__(self, comm: Any) -> None:
        super().__init__(comm, reap_at=32)
        self._status = self._mpi.Status()
        self.worker_ranks = tuple(range(1, comm.Get_size()))

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        """Receive what has arrived from any worker."""
        out: list[tuple[int, Message]] = []
        mpi, comm, status = self._mpi, self._comm, self._status
        while len(out) < limit:
            msg = comm.improbe(source=mpi.ANY_SOURCE, tag=mpi.ANY_TAG, status=status)
            if msg is None:
                break
            out.append((status.Get_source(), msg.recv()))
        return out

    def send(self, rank: int, message: Message) -> None:
        """Start a non-blocking send to one worker."""
        self._isend(rank, message)


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
        return message

    def send(self, message: Message) -> None:
        """Start a non-blocking send to rank 0."""
        self._isend(0, message)
