"""How many event ranges a communicator keeps cached, and asks for at a time.

A request must go out early enough to be answered before the cache is empty: the threshold grows with
the rate ranges are being used times the time the workload manager took to answer the last request
(seconds for the PanDA server, minutes for Harvester). Pure arithmetic; the caller supplies the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The rate is measured over windows of at least this many seconds.
RATE_WINDOW_S = 2.0
#: The threshold covers this many times the last answer's delay at the current rate.
SAFETY = 2.0


@dataclass
class RangePrefetch:
    """Tracks the use rate of ranges and the answer delay of requests.

    Parameters
    ----------
    threshold_setting, size_setting
        The configured threshold and request size (0: derived from the slots).
    """

    threshold_setting: int = 0
    size_setting: int = 0
    rate: float = 0.0
    latency_s: float = 0.0
    demand: int = 0
    _taken: int = 0
    _window_start: float | None = None

    def taken(self, n: int, now: float, wanted: int = 0) -> None:
        """``n`` ranges were handed out at time ``now``, of ``wanted`` asked for by the coordinator."""
        self.demand = max(self.demand, wanted)
        if self._window_start is None:
            self._window_start = now
        self._taken += n
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_S:
            current = self._taken / elapsed
            self.rate = current if not self.rate else 0.5 * (self.rate + current)
            self._taken, self._window_start = 0, now

    def answered(self, latency_s: float) -> None:
        """A request was answered ``latency_s`` seconds after it was made."""
        self.latency_s = latency_s

    def sizes(self, slots: int) -> tuple[int, int]:
        """``(threshold, request size)``: ask when fewer than threshold ranges are cached.

        Threshold: the setting, or 4 per slot, raised to `SAFETY` x rate x last delay and to the most
        the coordinator asked for at once (its own queue's need). Request size: the setting, or 8 per
        slot, and at least twice the threshold.
        """
        slots = max(slots, 1)
        base = self.threshold_setting or 4 * slots
        threshold = max(base, int(self.rate * self.latency_s * SAFETY), self.demand)
        size = max(self.size_setting or 8 * slots, 2 * threshold)
        return threshold, size
