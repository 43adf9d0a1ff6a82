"""An in-process payload that only waits: for benchmarks of the dispatch machinery and for tests.

Each range "runs" for the number of seconds in the job's ``jobPars`` (``0`` is allowed) and finishes
without writing a file. No process is started, so what is measured is hpcpilot itself.
"""

from __future__ import annotations

import time

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.payload.base import ItemResult, SlotContext, SlotRunner, WorkItem, failed_range


class SleepRunner(SlotRunner):
    """Finishes every range after ``float(jobPars)`` seconds, in process."""

    def __init__(self, context: SlotContext) -> None:
        super().__init__(context)
        try:
            self._duration = float(context.job.job_pars or 0)
        except ValueError:
            raise PayloadError(
                "the sleep payload needs jobPars to be a number of seconds",
                code=ErrorCode.SETUP_FAILURE,
                context={"PandaID": context.job.panda_id, "field": "jobPars"},
            ) from None
        self._item: WorkItem | None = None
        self._started = 0.0
        self._killed: tuple[ErrorCode, str] | None = None

    @property
    def busy(self) -> bool:
        """Whether a range is waiting out its duration."""
        return self._item is not None

    def submit(self, item: WorkItem) -> None:
        """Start the range's wait."""
        self._item = item
        self._started = time.monotonic()

    def kill(self, code: ErrorCode, diag: str) -> None:
        """End the wait now; the range fails with ``code``."""
        if self._item is not None:
            self._killed = (code, diag)

    def poll(self) -> list[ItemResult]:
        """Finish the range once its duration has passed (or fail it at once if it was killed)."""
        if self._item is None:
            return []
        if self._killed is not None:
            item, self._item, (code, diag), self._killed = self._item, None, self._killed, None
            return [failed_range(item, code, diag, self._started)]
        if time.monotonic() - self._started < self._duration:
            return []
        item, self._item = self._item, None
        assert item.event_range is not None
        return [
            RangeResult(
                panda_id=item.job.panda_id,
                range_id=item.event_range.range_id,
                state=RangeState.FINISHED,
                n_events=item.event_range.n_events,
                wall_s=time.monotonic() - self._started,
            )
        ]

    def wake_in_s(self) -> float | None:
        """Seconds until the in-flight range finishes; lets the worker sleep exactly that long."""
        if self._item is None or self._killed is not None:
            return 0.0
        return max(0.0, self._duration - (time.monotonic() - self._started))
