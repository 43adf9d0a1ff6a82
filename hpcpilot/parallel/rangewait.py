"""The bound on waiting for event ranges (``eventservice.range_wait_s``).

An event-service job whose source sends nothing would otherwise keep its slots idle until the
walltime: Harvester's messenger, for one, writes no ranges for a ManyToOne worker and deletes the
request all the same, so the pilot asks again and again. The coordinator tells `RangeWait` on each
step whether each job that may still get ranges has work (ranges queued or running, inputs staging
in); the wait of a job is the time since it last had work or got ranges. It is over after
``range_wait_s``, or when no more work fits before the end of the allocation (whichever comes
first: the walltime never extends it). The coordinator then takes no more ranges for the job; a job
that never had a range fails with 1238 (``ES_NO_EVENTS``). Pure bookkeeping on a monotonic clock
supplied by the caller, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WaitOver:
    """A job whose wait for ranges is over.

    Attributes
    ----------
    panda_id
        The job.
    waited_s
        Seconds it waited with no range to run.
    by_walltime
        True when the end of the allocation ended the wait before ``range_wait_s``.
    """

    panda_id: int
    waited_s: float
    by_walltime: bool

    def diag(self, hint: str = "") -> str:
        """The ``pilotErrorDiag`` of a job that got no range at all (``hint``: why, if known)."""
        text = f"no event ranges arrived in {self.waited_s:.0f} s"
        if self.by_walltime:
            text += " (the end of the allocation ended the wait)"
        return f"{text}; {hint}" if hint else text


class RangeWait:
    """How long each job has waited for ranges with nothing to run.

    Parameters
    ----------
    limit_s
        ``eventservice.range_wait_s``: the longest wait (0: no bound but the walltime).
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[int, float] = {}

    def check(self, panda_id: int, now: float, busy: bool, nothing_fits: bool) -> WaitOver | None:
        """Note a job's state at ``now``; return its `WaitOver` once its wait is over.

        Parameters
        ----------
        panda_id
            A job that may still get ranges.
        now
            The monotonic clock.
        busy
            Whether the job has work now (ranges queued or running, inputs staging in), or just got
            ranges: its wait starts again.
        nothing_fits
            Whether the end of the allocation is so near that no more work fits: a wait in progress
            is over.
        """
        if busy:
            self._since[panda_id] = now
            return None
        since = self._since.setdefault(panda_id, now)
        waited = now - since
        if self.limit_s > 0 and waited >= self.limit_s:
            return self._over(panda_id, waited, by_walltime=False)
        if nothing_fits:
            return self._over(panda_id, waited, by_walltime=True)
        return None

    def forget(self, panda_id: int) -> None:
        """The job takes no more ranges: its wait is no longer watched."""
        self._since.pop(panda_id, None)

    def _over(self, panda_id: int, waited: float, *, by_walltime: bool) -> WaitOver:
        self.forget(panda_id)
        return WaitOver(panda_id, waited, by_walltime)
