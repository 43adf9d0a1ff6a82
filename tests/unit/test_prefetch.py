"""Range request sizing: what keeps the slots busy for the horizon, within a ceiling (issue 14, part 3).

The numbers are literal: request = S x (1 + P) + rate x max(horizon, 2 x delay), threshold =
S x P + rate x 2 x delay, at most ``request_max`` (docs/communicators/harvester.md, "Range requests").
"""

from __future__ import annotations

import pytest

from hpcpilot.comm.prefetch import MIN_WINDOW_S, RATE_WINDOW_RANGES, RATE_WINDOW_S, RangePrefetch
from hpcpilot.config.schema import EventServiceSettings


def test_six_slots_ask_for_eighteen_not_hundreds() -> None:
    # the run: 6 slots asked Harvester for nRanges=384; the request fills the slots and their
    # prefetch (6 x (1 + 2)), the threshold is the prefetch (6 x 2)
    assert RangePrefetch().sizes(6) == (12, 18)
    assert RangePrefetch(prefetch_per_slot=4).sizes(6) == (24, 30)
    assert RangePrefetch().sizes(0) == (2, 3)  # before any worker said hello: one slot


def test_the_defaults_are_those_of_the_settings() -> None:
    es = EventServiceSettings()
    assert (es.prefetch_per_slot, es.request_horizon_s, es.request_max) == (2, 60.0, 10000)
    default = RangePrefetch()
    assert (default.prefetch_per_slot, default.horizon_s, default.request_max) == (2, 60.0, 10000)


def filled(prefetch: RangePrefetch, now: float) -> RangePrefetch:
    """``prefetch`` of 6 slots after the start's fill was taken at ``now``."""
    prefetch.sizes(6)  # as a communicator asks before its first request
    assert prefetch.fill(6) == 18 + 16  # every slot and its prefetch, and rank 0's queue of at least 16
    prefetch.taken(34, now=now)
    prefetch.taken(0, now=now + 10 * RATE_WINDOW_S)
    assert prefetch.rate == 0.0, "the fill is not a use rate"
    return prefetch


def test_the_fill_at_the_start_is_not_a_use_rate() -> None:
    # the slots, their prefetch and rank 0's queue fill at once: counted as use, 34 ranges in 2 s would
    # have asked for 18 + 17 x 60 = 1038
    prefetch = filled(RangePrefetch(), now=0.0)
    assert prefetch.sizes(6) == (12, 18)
    prefetch.sizes(12)  # more slots: their fill does not count either
    prefetch.taken(prefetch.fill(12) - 34, now=30.0)  # 26 more: 12 x 3 + 12 x 2 in all
    prefetch.taken(0, now=30.0 + RATE_WINDOW_S)
    assert prefetch.rate == 0.0 and prefetch.sizes(12) == (24, 36)


def test_a_fast_run_learns_its_rate_within_a_few_ranges() -> None:
    prefetch = filled(RangePrefetch(), now=10.0)
    prefetch.taken(RATE_WINDOW_RANGES // 2, now=30.0)
    prefetch.taken(RATE_WINDOW_RANGES // 2, now=30.1)  # 160 ranges/s, long before RATE_WINDOW_S
    assert prefetch.rate == pytest.approx(RATE_WINDOW_RANGES / 0.1)
    assert prefetch.sizes(6)[1] == 18 + int(prefetch.rate * 60)
    too_short = filled(RangePrefetch(), now=10.0)
    too_short.taken(RATE_WINDOW_RANGES // 2, now=30.0)
    too_short.taken(RATE_WINDOW_RANGES // 2, now=30.0 + MIN_WINDOW_S / 2)
    assert too_short.rate == 0.0


def test_the_rate_covers_the_horizon_and_two_answer_delays() -> None:
    prefetch = filled(RangePrefetch(), now=0.0)
    prefetch.taken(2, now=100.0)
    prefetch.taken(2, now=100.0 + RATE_WINDOW_S)  # 2 ranges/s
    assert prefetch.rate == 2.0
    prefetch.answered(10.0)  # a quick answer: the 60 s horizon decides the request
    assert prefetch.sizes(6) == (12 + 2 * 2 * 10, 18 + 2 * 60)  # (52, 138)
    prefetch.answered(120.0)  # Harvester took two minutes: two delays (240 s) decide both
    assert prefetch.sizes(6) == (12 + 2 * 240, 18 + 2 * 240)  # (492, 498)
    prefetch.taken(0, now=100.0 + 2 * RATE_WINDOW_S)  # an idle window halves the smoothed rate
    assert prefetch.rate == 1.0


def test_a_longer_horizon_asks_for_more() -> None:
    prefetch = filled(RangePrefetch(horizon_s=300.0), now=0.0)
    prefetch.taken(2, now=100.0)
    prefetch.taken(2, now=100.0 + RATE_WINDOW_S)
    assert prefetch.sizes(6) == (12, 18 + 2 * 300)


def test_no_request_beyond_the_ceiling() -> None:
    prefetch = filled(RangePrefetch(), now=0.0)
    prefetch.taken(1000, now=100.0)
    prefetch.taken(1000, now=100.0 + RATE_WINDOW_S)  # 1000 ranges/s: 60,000 for the horizon
    assert prefetch.sizes(6) == (12, 10000)
    prefetch.answered(100.0)  # the threshold is capped too
    assert prefetch.sizes(6) == (10000, 10000)
    small = RangePrefetch(request_max=50)
    assert small.sizes(100) == (50, 50)


def test_settings_replace_the_derived_sizes_within_the_ceiling() -> None:
    assert RangePrefetch(threshold_setting=10, size_setting=15).sizes(16) == (10, 15)
    assert RangePrefetch(threshold_setting=10, size_setting=15, request_max=12).sizes(16) == (10, 12)


def test_what_the_coordinator_asks_for_does_not_size_the_request() -> None:
    # it used to: the coordinator's whole queue (192 for 3 workers) was the threshold, twice that the
    # request (384 for 6 slots)
    prefetch = RangePrefetch()
    prefetch.taken(24, now=1.0)
    assert prefetch.sizes(6) == (12, 18)
