"""How many event ranges a communicator keeps cached, and asks for at a time.

A request asks for what keeps the run's slots busy for a while, and no more: every range the
workload manager hands to this pilot is withheld from every other worker of the task until it is
reported (and stranded until the server's timeout if the pilot is killed). With ``S`` slots,
``P`` = ``eventservice.prefetch_per_slot``, ``r`` the measured use rate (ranges/s) and ``d`` the time
the workload manager took to answer the last request (seconds for the PanDA server, minutes for
Harvester)::

    request   = S x (1 + P) + r x max(eventservice.request_horizon_s, 2 x d)
    threshold = S x P       + r x 2 x d          (ask again when fewer are cached)

``S x (1 + P)`` fills every slot and its prefetch; the rate term covers the horizon (default 60 s),
and at least two answer delays, so that the next request is answered before the cache runs dry. The
rate counts the ranges that ended (reported finished or failed for good), not those handed out: the
ranges that fill the slots, their prefetch and rank 0's queue at the start are not use. It is
measured over windows of 2 s, or of 16 ranges in a fast run. A
request never asks for more than ``eventservice.request_max`` (default 10000). Before any rate is
known, 6 slots with the default prefetch of 2 ask for 18 ranges when fewer than 12 are cached.
The ``request_threshold`` and ``request_ranges`` settings of a communicator replace the threshold and
the request when set (not 0); the ceiling holds for them too. Pure arithmetic; the caller supplies
the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The rate is measured over windows of at least this many seconds ...
RATE_WINDOW_S = 2.0
#: ... or of this many ranges, once `MIN_WINDOW_S` have passed (a fast run learns its rate at once).
RATE_WINDOW_RANGES = 16
MIN_WINDOW_S = 0.05
#: The threshold covers this many times the last answer's delay at the current rate.
SAFETY = 2.0


@dataclass
class RangePrefetch:
    """Tracks the use rate of ranges and the answer delay of requests.

    Parameters
    ----------
    threshold_setting, size_setting
        The configured threshold and request size (0: derived from the slots and the rate).
    prefetch_per_slot
        Ranges queued per slot on the workers (``eventservice.prefetch_per_slot``).
    horizon_s
        How long a request keeps the slots busy at the use rate (``eventservice.request_horizon_s``).
    request_max
        The most ranges one request asks for (``eventservice.request_max``).
    """

    threshold_setting: int = 0
    size_setting: int = 0
    prefetch_per_slot: int = 2
    horizon_s: float = 60.0
    request_max: int = 10000
    rate: float = 0.0
    latency_s: float = 0.0
    _used: int = 0
    _window_start: float | None = None

    def taken(self, n: int, now: float) -> None:
        """``n`` ranges were handed out at time ``now``: the first ones start the use rate's clock."""
        if n and self._window_start is None:
            self._window_start = now

    def used(self, n: int, now: float) -> None:
        """``n`` ranges ended (finished, or failed for good) and were reported at time ``now``.

        The use rate counts ranges that ended, not ranges handed out: those that fill the slots,
        their prefetch and rank 0's queue at the start are not use. A window ends after
        `RATE_WINDOW_S`, or after `RATE_WINDOW_RANGES` ranges and at least `MIN_WINDOW_S`; its
        rate is averaged with the rate so far.
        """
        if self._window_start is None:
            self._window_start = now
        self._used += n
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_S or (elapsed >= MIN_WINDOW_S and self._used >= RATE_WINDOW_RANGES):
            current = self._used / elapsed
            self.rate = current if not self.rate else 0.5 * (self.rate + current)
            self._used, self._window_start = 0, now

    def answered(self, latency_s: float) -> None:
        """A request was answered ``latency_s`` seconds after it was made."""
        self.latency_s = latency_s

    def sizes(self, slots: int) -> tuple[int, int]:
        """``(threshold, request size)`` for ``slots`` slots: ask when fewer than threshold are cached.

        See the module's description for the formulas. Both are at least 1 and at most
        `request_max`.
        """
        slots = max(slots, 1)
        per_slot = max(self.prefetch_per_slot, 0)
        delay = max(self.latency_s, 0.0)
        threshold = self.threshold_setting or slots * per_slot + int(self.rate * SAFETY * delay)
        use = int(self.rate * max(self.horizon_s, SAFETY * delay))
        size = self.size_setting or slots * (1 + per_slot) + use
        ceiling = max(self.request_max, 1)
        return min(max(threshold, 1), ceiling), min(max(size, 1), ceiling)
