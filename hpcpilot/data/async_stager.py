"""Background staging on rank 0: batches of transfers run in a bounded thread pool.

Rank 0 must keep dispatching work while files move. `AsyncStager` runs each submitted batch (one job's
inputs or outputs) with its `StagingClient` in one of ``workers`` threads (``data.async_workers``);
`AsyncStager.poll` never blocks and returns the batches that finished since the last call. Copies run
in subprocesses or in system calls and checksums in `zlib`/`hashlib`, which release the GIL, so the
threads do not slow the dispatcher down. An unexpected exception inside a batch (a bug) becomes failed
results for its files: no batch is ever lost.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from hpcpilot.data.transfer import Transfer, TransferResult

if TYPE_CHECKING:
    from hpcpilot.data.staging import StagingClient

log = logging.getLogger(__name__)

_WHAT = {"in": "stage-in", "out": "stage-out"}


class AsyncStager:
    """A bounded pool of staging threads.

    Parameters
    ----------
    workers
        Batches that run at once (at least 1).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"AsyncStager needs at least one worker, got {workers}")
        self.workers = workers
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="hpcpilot-stager", initializer=_lower_priority
        )
        # insertion-ordered: finished batches come back in the order they were submitted
        self._batches: dict[Future[list[TransferResult]], tuple[Hashable, tuple[Transfer, ...]]] = {}
        self._closed = False

    def submit(self, key: Hashable, client: StagingClient, transfers: Sequence[Transfer]) -> None:
        """Start moving ``transfers`` with ``client`` in the background; `poll` returns them under ``key``.

        Raises
        ------
        RuntimeError
            If the stager is closed.
        """
        if self._closed:
            raise RuntimeError("AsyncStager is closed")
        batch = tuple(transfers)
        self._batches[self._pool.submit(client.transfer, batch)] = (key, batch)

    def poll(self) -> list[tuple[Hashable, list[TransferResult]]]:
        """The batches that finished since the last call, as ``(key, results)``; never blocks."""
        finished = []
        for future in [f for f in self._batches if f.done()]:
            key, batch = self._batches.pop(future)
            try:
                results = future.result()
            except BaseException as exc:  # a bug, or a batch cancelled by close(wait=False)
                log.error("staging batch %r failed: %r", key, exc)
                results = [_failed(t, exc) for t in batch]
            finished.append((key, results))
        return finished

    @property
    def pending(self) -> int:
        """Batches submitted and not yet returned by `poll` (running, queued, or finished unpolled)."""
        return len(self._batches)

    def close(self, wait: bool = True) -> None:
        """Stop taking batches; with ``wait`` let the queued ones finish, else cancel those not started."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


#: How much lower than rank 0's dispatching thread staging threads (and the copy commands they run) are
#: scheduled: on a node whose cores are all busy, dispatch gets the CPU first.
STAGER_NICE = 10


def _lower_priority() -> None:
    """Run this staging thread (and the commands it starts) at a lower priority (Linux: per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STAGER_NICE)
    except OSError as exc:  # not permitted, or not Linux: staging then competes on equal terms
        log.debug("cannot lower the staging thread's priority: %s", exc)


def _failed(transfer: Transfer, exc: BaseException) -> TransferResult:
    what = _WHAT.get(transfer.direction.value, "transfer")
    return TransferResult(
        transfer,
        ok=False,
        error_code=transfer.direction.failed_code,
        error_diag=f"{what} of {transfer.lfn} failed: the stager lost it: {exc!r}",
    )
