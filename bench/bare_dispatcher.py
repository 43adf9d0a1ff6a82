"""The yardstick: a bare, hand-written mpi4py dispatcher of range ids.

Run under ``mpiexec -n RANKS``. Rank 0 holds ``--n`` range ids; every other rank sends a request (the
ids it finished since its last request), rank 0 answers with up to ``--batch`` ids, the worker
"processes" each with ``time.sleep(--payload)`` (no sleep for 0) and asks again. Everything is a
blocking, pickled ``comm.send``/``comm.recv`` (``ANY_SOURCE`` on rank 0). Like hpcpilot, rank 0 holds
back the empty "stop" reply until every range is done, so workers without work wait in ``recv``.
With ``--max-s`` rank 0 stops handing out work after that many seconds (the rate is then measured on
the ranges done).

Rank 0 writes one JSON object to ``--out``: ``n``, ``workers``, ``batch``, ``payload_s``, ``wall_s``
(first dispatch to last result), ``busy_ranks`` (ranks given work), ``rate`` (ranges/s) and
``utilisation`` (payload seconds over ``workers * wall_s``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import yardstick
from mpi4py import MPI


def parse_args() -> argparse.Namespace:
    """The command line."""
    return yardstick.parse_args(
        __doc__, ranges="ranges to dispatch", batch="most ids per reply", stop="stop handing out work"
    )


@dataclass
class Tally:
    """What rank 0 saw: ranges done, first dispatch and last result times, ranks given work."""

    done: int = 0
    first: float = 0.0
    last: float = 0.0
    busy_ranks: set[int] = field(default_factory=set)


def coordinate(comm: Any, n: int, batch: int, max_s: float) -> Tally:
    """Rank 0: hand out ids ``0..n-1`` in batches of up to ``batch``.

    After ``max_s`` seconds of dispatching (0: no limit) nothing more is handed out; what was handed
    out is waited for. Empty replies (stop) go out once every handed-out range is done.
    """
    status = MPI.Status()
    tally = Tally()
    waiting: list[int] = []  # workers whose request waits for the end, the queue being empty
    next_id = 0
    while tally.done < next_id or next_id < n:
        finished = comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        now = time.perf_counter()
        if finished:
            tally.done += len(finished)
            tally.last = now
        if max_s and tally.first and now - tally.first > max_s:
            n = next_id
        source = status.Get_source()
        if next_id >= n:
            waiting.append(source)
            continue
        reply = list(range(next_id, min(next_id + batch, n)))
        next_id += len(reply)
        if not tally.first:
            tally.first = now
        tally.busy_ranks.add(source)
        comm.send(reply, dest=source)
    _stop_all(comm, waiting)
    return tally


def _stop_all(comm: Any, waiting: list[int]) -> None:
    """Send the empty reply to every worker: those waiting, then the rest as they ask."""
    status = MPI.Status()
    for source in waiting:
        comm.send([], dest=source)
    for _ in range(comm.Get_size() - 1 - len(waiting)):
        comm.recv(source=MPI.ANY_SOURCE, status=status)
        comm.send([], dest=status.Get_source())


def work(comm: Any, payload_s: float) -> None:
    """A worker rank: request, process, report with the next request, until an empty reply."""
    finished: list[int] = []
    while True:
        comm.send(finished, dest=0)
        batch: list[int] = comm.recv(source=0)
        if not batch:
            return
        if payload_s > 0:
            for _ in batch:
                time.sleep(payload_s)
        finished = batch


def main() -> None:
    """Run this rank's role; rank 0 writes the result."""
    args = parse_args()
    comm = MPI.COMM_WORLD
    if comm.Get_rank() != 0:
        work(comm, args.payload)
        return
    workers = comm.Get_size() - 1
    tally = coordinate(comm, args.n, args.batch, args.max_s)
    wall, done = tally.last - tally.first, tally.done
    yardstick.emit_result(
        "bare",
        done=done,
        wall=wall,
        workers=workers,
        batch=args.batch,
        payload_s=args.payload,
        out=args.out,
        busy_ranks=sorted(tally.busy_ranks),
    )


if __name__ == "__main__":
    main()
