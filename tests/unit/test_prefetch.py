"""Range request sizing: what keeps the slots busy for the horizon, within a ceiling (issue 14, part 3).

The numbers are literal: request = S x (1 + P) + rate x max(horizon, 2 x delay), threshold =
S x P + rate x 2 x delay, at most ``request_max`` (docs/communicators/harvester.md, "Range requests").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcpilot.comm.prefetch import MIN_WINDOW_S, RATE_WINDOW_RANGES, RATE_WINDOW_S, RangePrefetch
from hpcpilot.config.schema import EventServiceSettings
from tests.unit.test_harvester_comm import PID, job_dict, make, rng, scan


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


def test_ranges_handed_out_are_not_use_ranges_that_ended_are() -> None:
    # the slots, their prefetch and rank 0's queue fill at once at the start: counted as use, 192
    # ranges in 2 s would have asked for 18 + 96 x 60
    prefetch = RangePrefetch()
    prefetch.taken(192, now=0.0)
    prefetch.taken(0, now=RATE_WINDOW_S)
    assert prefetch.rate == 0.0 and prefetch.sizes(6) == (12, 18)
    prefetch.used(12, now=RATE_WINDOW_S)  # 12 ranges ended since the first was handed out: 6 per s
    assert prefetch.rate == 6.0
    assert prefetch.sizes(6) == (12, 18 + 6 * 60)


def test_a_fast_run_learns_its_rate_within_a_few_ranges() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(9, now=10.0)
    prefetch.used(RATE_WINDOW_RANGES, now=10.1)  # 160 ranges/s, long before RATE_WINDOW_S
    assert prefetch.rate == pytest.approx(RATE_WINDOW_RANGES / 0.1)
    too_short = RangePrefetch()
    too_short.taken(9, now=10.0)
    too_short.used(RATE_WINDOW_RANGES, now=10.0 + MIN_WINDOW_S / 2)
    assert too_short.rate == 0.0
    few = RangePrefetch()
    few.taken(9, now=10.0)
    few.used(RATE_WINDOW_RANGES - 1, now=11.0)  # too few ranges: the window goes on to RATE_WINDOW_S
    assert few.rate == 0.0
    few.used(1, now=10.0 + RATE_WINDOW_S)
    assert few.rate == RATE_WINDOW_RANGES / RATE_WINDOW_S


def test_the_rate_covers_the_horizon_and_two_answer_delays() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(18, now=100.0)
    prefetch.used(4, now=100.0 + RATE_WINDOW_S)  # 2 ranges/s
    assert prefetch.rate == 2.0
    prefetch.answered(10.0)  # a quick answer: the 60 s horizon decides the request
    assert prefetch.sizes(6) == (12 + 2 * 2 * 10, 18 + 2 * 60)  # (52, 138)
    prefetch.answered(120.0)  # Harvester took two minutes: two delays (240 s) decide both
    assert prefetch.sizes(6) == (12 + 2 * 240, 18 + 2 * 240)  # (492, 498)
    prefetch.used(0, now=100.0 + 2 * RATE_WINDOW_S)  # an idle window halves the smoothed rate
    assert prefetch.rate == 1.0


def test_a_longer_horizon_asks_for_more() -> None:
    prefetch = RangePrefetch(horizon_s=300.0)
    prefetch.taken(18, now=100.0)
    prefetch.used(4, now=100.0 + RATE_WINDOW_S)
    assert prefetch.sizes(6) == (12, 18 + 2 * 300)


def test_no_request_beyond_the_ceiling() -> None:
    prefetch = RangePrefetch()
    prefetch.taken(18, now=100.0)
    prefetch.used(2000, now=100.0 + RATE_WINDOW_S)  # 1000 ranges/s: 60,000 for the horizon
    assert prefetch.sizes(6) == (12, 10000)
    prefetch.answered(100.0)  # the threshold is capped too
    assert prefetch.sizes(6) == (10000, 10000)
    small = RangePrefetch(request_max=50)
    assert small.sizes(100) == (50, 50)


def test_settings_replace_the_derived_sizes_within_the_ceiling() -> None:
    assert RangePrefetch(threshold_setting=10, size_setting=15).sizes(16) == (10, 15)
    assert RangePrefetch(threshold_setting=10, size_setting=15, request_max=12).sizes(16) == (10, 12)


def test_harvester_asks_six_slots_worth_while_rank_0_fills_its_queue(tmp_path: Path) -> None:
    # the issue's run: 6 slots, rank 0's queue asking for 192 at once; Harvester was asked for
    # nRanges=384 (the coordinator's demand, doubled); now 6 x (1 + 2)
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(PID): job_dict()}))
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({str(PID): [rng(i) for i in range(1, 19)]}))
    comm = make(tmp_path)
    comm.set_slots(6)
    (job,) = comm.fetch_jobs(5).jobs
    for k in range(1, 4):
        assert len(comm.fetch_ranges(job, 192).ranges) <= 18  # rank 0 takes all it is given
        scan(comm)
        request = tmp_path / "worker_requestevents.json"
        assert json.loads(request.read_text())[str(PID)]["nRanges"] == 18
        request.unlink()  # Harvester answers with 18 more
        more = [rng(i) for i in range(18 * k + 1, 18 * k + 19)]
        (tmp_path / "JobsEventRanges.json").write_text(json.dumps({str(PID): more}))
        scan(comm)
