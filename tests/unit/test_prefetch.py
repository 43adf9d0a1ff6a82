"""Range prefetch sizing: deep enough to cover the workload manager's answer delay."""

from __future__ import annotations

from hpcpilot.comm.prefetch import RATE_WINDOW_S, SAFETY, RangePrefetch


def test_defaults_come_from_the_slots_and_settings_win() -> None:
    assert RangePrefetch().sizes(16) == (64, 128)
    assert RangePrefetch().sizes(0) == (4, 8)  # before any worker said hello
    assert RangePrefetch(threshold_setting=10, size_setting=15).sizes(16) == (10, 20)  # size >= 2 x threshold


def test_threshold_covers_the_answer_delay_at_the_use_rate() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(0, now=100.0)
    prefetch.taken(1000, now=100.0 + RATE_WINDOW_S)  # 500 ranges/s
    prefetch.answered(120.0)  # Harvester took two minutes
    threshold, size = prefetch.sizes(16)
    assert threshold == int(500 * 120 * SAFETY)
    assert size == 2 * threshold
    prefetch.taken(0, now=100.0 + 2 * RATE_WINDOW_S)  # an idle window halves the smoothed rate
    assert prefetch.rate == 250.0


def test_threshold_covers_what_the_coordinator_asks_for_at_once() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(24, now=1.0, wanted=192)
    assert prefetch.sizes(3) == (192, 384)
