"""The end of the allocation: how much work may still be handed out, and when running work is cut.

Pure arithmetic on a monotonic clock, no I/O. The coordinator feeds it the measured range durations
and job finishing times; it answers how many more ranges a worker may take so that they finish before
the *cut* time, and when that time has come. The timeline, from the allocation's ``end`` back::

    ... hand out while work fits | running work finishes | cut: kill | finish jobs | exit | end
                                                         ^kill_at   ^-kill_grace ^-finish ^-exit_margin

``kill_at = end - exit_margin - kill_grace - finish``, where ``finish`` is the longest time a job took
to finish so far (merging its outputs, packing its logs, reporting).

At the cut, a range that is expected to end anyway before ``end - exit_margin - finish`` needs no
kill: it is *spared* (`EndPlan.spare_window`, `may_finish`) and killed only if it still runs when
that window closes. A terminating signal's cut spares nothing (the batch system's hard kill is near).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The duration estimate is the mean plus this many standard deviations (capped at the longest seen):
#: a range handed out is expected to finish before the cut unless it is among the slowest few.
SPREAD = 1.5


@dataclass
class DurationStats:
    """Running mean, spread and maximum of durations (Welford's algorithm)."""

    n: int = 0
    mean: float = 0.0
    _m2: float = 0.0
    longest: float = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self.n += 1
        delta = seconds - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (seconds - self.mean)
        self.longest = max(self.longest, seconds)

    def add_many(self, seconds: Sequence[float]) -> None:
        """Record several durations at once (Chan et al.'s merge of two running means and spreads)."""
        n = len(seconds)
        if n == 0:
            return
        mean = math.fsum(seconds) / n
        m2 = math.fsum((s - mean) ** 2 for s in seconds)
        total = self.n + n
        delta = mean - self.mean
        self._m2 += m2 + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.longest = max([self.longest, *seconds])

    @property
    def std(self) -> float:
        """The standard deviation (0 with fewer than two durations)."""
        return math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else 0.0

    def estimate(self) -> float | None:
        """A cautious duration of the next one: mean + `SPREAD` deviations, at most the longest seen."""
        if self.n == 0:
            return None
        return min(self.mean + SPREAD * self.std, self.longest)


class EndPlan:
    """When the run must end and what still fits before then.

    Parameters
    ----------
    end
        The allocation's end on the monotonic clock, or None (no limit known).
    exit_margin_s
        Seconds before ``end`` by which the pilot has exited.
    kill_grace_s
        Seconds a killed payload gets between SIGTERM and SIGKILL.
    """

    def __init__(self, end: float | None, exit_margin_s: float, kill_grace_s: float) -> None:
        self.end = end
        self.exit_margin_s = exit_margin_s
        self.kill_grace_s = kill_grace_s
        self.ranges = DurationStats()
        self.finish_s = 0.0
        self.cut_at: float | None = None  # an earlier cut (a signal asked for it)

    def observe_range(self, wall_s: float) -> None:
        """A range took ``wall_s`` seconds."""
        if wall_s > 0:
            self.ranges.add(wall_s)

    def observe_ranges(self, wall_s: Sequence[float]) -> None:
        """Ranges took ``wall_s`` seconds each (those of 0 s, not measured, are left out)."""
        self.ranges.add_many([w for w in wall_s if w > 0])

    def observe_finish(self, seconds: float) -> None:
        """A job took ``seconds`` to finish (merge, log tarball, report)."""
        self.finish_s = max(self.finish_s, seconds)

    def end_by(self, end: float) -> None:
        """The allocation ends at ``end`` at the latest (a warning signal announced it)."""
        self.end = end if self.end is None else min(self.end, end)

    def cut_by(self, when: float) -> None:
        """Running work is cut at ``when`` at the latest (a terminating signal)."""
        self.cut_at = when if self.cut_at is None else min(self.cut_at, when)

    @property
    def kill_at(self) -> float | None:
        """When running payloads are killed, or None (never, for lack of a limit)."""
        times = [self.cut_at] if self.cut_at is not None else []
        if self.end is not None:
            times.append(self.end - self.exit_margin_s - self.kill_grace_s - self.finish_s)
        return min(times) if times else None

    def fits(self, now: float, seconds: float | None) -> bool:
        """Whether work of ``seconds`` (None: unknown) started now ends before the cut."""
        kill_at = self.kill_at
        return kill_at is None or now + (seconds or 0.0) <= kill_at

    def range_budget(self, now: float, slots: int, in_flight: int) -> int | None:
        """How many more ranges a worker may take: None for no limit, else 0 or more.

        A worker's ``slots`` run its ``in_flight`` ranges (running and queued there) one after the
        other; each slot can complete ``floor(window / duration)`` ranges before the cut (a running
        range counts as a whole one, so the answer errs on the side of finishing).
        """
        kill_at = self.kill_at
        duration = self.ranges.estimate()
        if kill_at is None or duration is None:
            return None if kill_at is None or now < kill_at else 0
        window = kill_at - now
        if window <= 0:
            return 0
        per_slot = math.floor(window / duration)
        return max(slots * per_slot - in_flight, 0)

    def nothing_fits(self, now: float) -> bool:
        """Whether no range can be started any more that would end before the cut."""
        kill_at = self.kill_at
        if kill_at is None:
            return False
        return now + (self.ranges.estimate() or 0.0) > kill_at

    def spare_window(self, now: float) -> float:
        """Seconds from ``now`` within which a range running at the cut may still end (0: none may).

        At the end of the allocation that is ``end - exit_margin - finish``: a range expected to end
        by then needs no kill. After a terminating signal (`cut_by`) nothing is spared.
        """
        if self.end is None or self.cut_at is not None:
            return 0.0
        return max(self.end - self.exit_margin_s - self.finish_s - now, 0.0)

    def due(self, now: float) -> bool:
        """Whether the cut has come."""
        kill_at = self.kill_at
        return kill_at is not None and now >= kill_at


def may_finish(elapsed_s: float, expected_s: float | None, window_s: float) -> bool:
    """Whether a running range may finish at the cut instead of being killed.

    Parameters
    ----------
    elapsed_s
        How long it has run.
    expected_s
        How long a range of its job takes (the mean of its finished ranges; None: none finished).
    window_s
        `EndPlan.spare_window` as the cut came.
    """
    return expected_s is not None and window_s > 0 and expected_s - elapsed_s <= window_s
