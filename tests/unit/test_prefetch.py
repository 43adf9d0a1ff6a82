"""Range request sizing: what keeps the slots busy for the horizon, within a ceiling (issue 14, part 3).

The numbers are literal: request = S x (1 + P) + rate x max(horizon, 2 x delay), threshold =
S x P + rate x 2 x delay, at most ``request_max`` (docs/communicators/harvester.md, "Range requests").
"""

from __future__ import annotations

from hpcpilot.comm.prefetch import RATE_WINDOW_S, RangePrefetch
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


def test_the_rate_covers_the_horizon_and_two_answer_delays() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(0, now=100.0)
    prefetch.taken(4, now=100.0 + RATE_WINDOW_S)  # 2 ranges/s
    assert prefetch.rate == 2.0
    prefetch.answered(10.0)  # a quick answer: the 60 s horizon decides the request
    assert prefetch.sizes(6) == (12 + 2 * 2 * 10, 18 + 2 * 60)  # (52, 138)
    prefetch.answered(120.0)  # Harvester took two minutes: two delays (240 s) decide both
    assert prefetch.sizes(6) == (12 + 2 * 240, 18 + 2 * 240)  # (492, 498)
    prefetch.taken(0, now=100.0 + 2 * RATE_WINDOW_S)  # an idle window halves the smoothed rate
    assert prefetch.rate == 1.0


def test_a_longer_horizon_asks_for_more() -> None:
    prefetch = RangePrefetch(horizon_s=300.0)
    prefetch.taken(0, now=0.0)
    prefetch.taken(4, now=RATE_WINDOW_S)
    assert prefetch.sizes(6) == (12, 18 + 2 * 300)


def test_no_request_beyond_the_ceiling() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(0, now=0.0)
    prefetch.taken(2000, now=RATE_WINDOW_S)  # 1000 ranges/s: 60,000 for the horizon
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
