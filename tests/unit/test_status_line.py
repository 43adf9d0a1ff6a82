"""The live status line's content: ranges done/total, rate, ETA, busy slots, failures."""

from __future__ import annotations

from hpcpilot.parallel.status import Progress, RateMeter, format_status


def test_status_line_shows_progress_rate_eta_slots_and_failures() -> None:
    p = Progress(
        elapsed_s=75,
        ranges_done=120,
        ranges_total=200,
        ranges_failed=1,
        jobs_done=0,
        jobs_total=1,
        busy_slots=6,
        total_slots=8,
        failed_attempts=3,
    )
    line = format_status(p, rate=10.0)
    assert line == (
        "[1m15s] | ranges 120/200 (60%) | 10.0/s | ETA 8s | busy 6/8 slots | jobs 0/1 "
        "| failed attempts 3 | fatal 1"
    )


def test_status_line_without_failures_or_rate() -> None:
    p = Progress(0, 0, 10, 0, 0, 1, 0, 4)
    assert format_status(p, rate=0.0) == "[0s] | ranges 0/10 (0%) | 0.0/s | ETA - | busy 0/4 slots | jobs 0/1"


def test_rate_meter_measures_over_its_window() -> None:
    meter = RateMeter(window_s=10)
    assert meter.add(0.0, 0) == 0.0
    assert meter.add(5.0, 50) == 10.0
    assert meter.add(20.0, 80) == 2.0  # the window keeps the points of the last 10 s (and two at least)
