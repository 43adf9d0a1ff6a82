"""The same workload on ``mpi4py.futures.MPIPoolExecutor``.

Run as ``mpiexec -n RANKS python -m mpi4py.futures bench/pool_workload.py ...``: rank 0 runs this
script, the other ranks are the pool's workers. ``executor.map(task, range(n), chunksize=batch)`` with
a task that sleeps ``--payload`` seconds (no sleep for 0). Writes the same JSON result as
``bare_dispatcher.py`` to ``--out``; the clock starts once the pool is up (``bootup``). With
``--max-s`` the results taken after that many seconds are counted and the rest is cancelled.
"""

from __future__ import annotations

import argparse
import time
from itertools import repeat

import yardstick
from mpi4py.futures import MPIPoolExecutor


def task(index: int, payload_s: float) -> int:
    """One range: wait ``payload_s`` seconds."""
    if payload_s > 0:
        time.sleep(payload_s)
    return index


def run_map(
    executor: MPIPoolExecutor, n: int, batch: int, payload_s: float, max_s: float
) -> tuple[int, float]:
    """Map ``n`` tasks; return (results taken, seconds from the map call to the last one taken).

    After ``max_s`` seconds (0: no limit) no more results are taken and the rest are cancelled.
    """
    start = last = time.perf_counter()
    done = 0
    buffer = 16 * executor.num_workers  # chunks in flight: submitting all n up front is slow
    for _ in executor.map(task, range(n), repeat(payload_s, n), chunksize=batch, buffersize=buffer):
        done += 1
        last = time.perf_counter()
        if max_s and last - start > max_s:
            executor.shutdown(wait=False, cancel_futures=True)
            break
    return done, last - start


def parse_args() -> argparse.Namespace:
    """The command line."""
    return yardstick.parse_args(
        __doc__, ranges="ranges (tasks)", batch="map's chunksize", stop="stop taking results"
    )


def main() -> None:
    """Map the workload over the pool and write the result."""
    args = parse_args()
    with MPIPoolExecutor() as executor:
        executor.bootup(wait=True)
        workers = executor.num_workers
        done, wall = run_map(executor, args.n, args.batch, args.payload, args.max_s)
    yardstick.emit_result(
        "pool",
        done=done,
        wall=wall,
        workers=workers,
        batch=args.batch,
        payload_s=args.payload,
        out=args.out,
    )


if __name__ == "__main__":
    main()
