"""The end of the allocation: the plan's arithmetic, and real in-process runs against a deadline."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from hpcpilot.config.schema import BatchSettings, EventServiceSettings, NodeSettings, Settings
from hpcpilot.model.allocation import parse_duration
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.results import RangeResult
from hpcpilot.model.states import JobState
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.walltime import DurationStats, EndPlan, may_finish
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.conftest import journal
from tests.unit.test_coordinator_commands import N_RANGES, Scripted

# --- the plan -----------------------------------------------------------------------------------


def test_duration_estimate_is_cautious_but_not_beyond_the_longest() -> None:
    stats = DurationStats()
    assert stats.estimate() is None
    for seconds in (1.0, 2.0, 3.0):
        stats.add(seconds)
    assert stats.mean == pytest.approx(2.0) and stats.std == pytest.approx(1.0)
    assert stats.estimate() == pytest.approx(3.0)  # mean + 1.5 std = 3.5, capped at the longest
    stats.add(2.0)
    assert 2.0 < (stats.estimate() or 0) <= 3.0


def test_kill_time_leaves_exit_margin_kill_grace_and_job_finishing_time() -> None:
    plan = EndPlan(end=1000.0, exit_margin_s=60, kill_grace_s=10)
    assert plan.kill_at == 930
    plan.observe_finish(5)
    plan.observe_finish(3)
    assert plan.kill_at == 925  # the longest finish seen
    plan.cut_by(500)
    assert plan.kill_at == 500
    assert EndPlan(None, 60, 10).kill_at is None


def test_range_budget_counts_what_each_slot_can_still_complete() -> None:
    plan = EndPlan(end=100.0, exit_margin_s=0, kill_grace_s=0)
    assert plan.range_budget(0, slots=4, in_flight=0) is None  # nothing measured yet: no limit
    plan.observe_range(10)
    assert plan.range_budget(0, slots=4, in_flight=0) == 40
    assert plan.range_budget(75, slots=4, in_flight=3) == 4 * 2 - 3
    assert plan.range_budget(95, slots=4, in_flight=0) == 0
    assert plan.range_budget(101, slots=4, in_flight=0) == 0
    assert not plan.nothing_fits(90) and plan.nothing_fits(90.5)
    assert EndPlan(None, 0, 0).range_budget(1e9, 4, 0) is None


def test_a_warning_only_brings_the_end_forward() -> None:
    plan = EndPlan(end=100.0, exit_margin_s=0, kill_grace_s=0)
    plan.end_by(200)
    assert plan.end == 100
    plan.end_by(50)
    assert plan.end == 50
    assert plan.fits(40, 10) and not plan.fits(41, 10) and plan.fits(49, None)


def test_at_the_end_a_range_may_finish_within_what_is_left_before_the_exit_margin() -> None:
    plan = EndPlan(end=100.0, exit_margin_s=1, kill_grace_s=10)
    assert plan.due(97) and plan.spare_window(97) == 2  # the kill grace alone would cut it now
    plan.observe_finish(0.5)  # finishing the job takes time too
    assert plan.spare_window(97) == 1.5 and plan.spare_window(99) == 0
    assert EndPlan(None, 1, 10).spare_window(0) == 0  # no end known
    plan.cut_by(98)  # a terminating signal: the hard kill is near, nothing is spared
    assert plan.spare_window(97) == 0


@pytest.mark.parametrize(
    ("elapsed", "expected", "window", "spared"),
    [
        (0.5, 1.6, 2.0, True),  # 1.1 s left of 1.6, 2 s to go
        (0.0, 1.6, 1.5, False),  # just started: 1.6 s left, only 1.5 s to go
        (1.0, 1.6, 0.7, True),
        (3.0, 1.6, 0.1, True),  # overdue: given what is left, killed then if still running
        (0.5, None, 60.0, False),  # no range of its job finished yet: nothing to expect
        (0.5, 1.0, 0.0, False),
    ],
)
def test_a_running_range_is_spared_when_its_expected_rest_fits(
    elapsed: float, expected: float | None, window: float, spared: bool
) -> None:
    assert may_finish(elapsed, expected, window) is spared


# --- runs in one process ------------------------------------------------------------------------


class Recording(Scripted):
    """`Scripted`, also recording the ranges reported as cut."""

    def __init__(self, settings: Settings, layout: WorkLayout, payload_s: float) -> None:
        super().__init__(settings, layout, None, 0, payload_s)
        self.cut: list[str] = []

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        super().report_ranges(job, results, fatal, cut)
        self.cut += cut


class SignalAt(SignalFlag):
    """Delivers ``signum`` once, ``after`` seconds into the run."""

    def __init__(self, signum: int, after: float) -> None:
        super().__init__()
        self.signum, self.at = signum, time.monotonic() + after

    def take(self) -> int | None:
        if self.at and time.monotonic() >= self.at:
            self.at = 0.0
            return self.signum
        return None


def run_until(
    tmp_path: Path,
    *,
    payload_s: float,
    end_in: float | None,
    batch: BatchSettings,
    signals: SignalFlag | None = None,
    kill_grace_s: float = 0.2,
) -> tuple[Coordinator, Recording]:
    settings = Settings(
        eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=4), batch=batch
    )
    settings = replace(
        settings,
        parallel=replace(settings.parallel, journal_flush_s=0.01),
        payload=replace(settings.payload, kill_grace_s=kill_grace_s),
    )
    layout = WorkLayout(tmp_path)
    comm = Recording(settings, layout, payload_s)
    link = LocalLink()
    jnl = Journal(layout.journal)
    end = None if end_in is None else time.time() + end_in
    coordinator = Coordinator(link.coordinator, settings, layout, comm, jnl, lambda line: None, end)
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, signals or SignalFlag())
    jnl.close()
    return coordinator, comm


def test_the_end_drains_before_the_deadline_and_loses_nothing(tmp_path: Path) -> None:
    coordinator, comm = run_until(
        tmp_path, payload_s=0.05, end_in=1.5, batch=BatchSettings(exit_margin_s=0.3)
    )
    s = coordinator.summary()
    assert s["drained_by"] == "REACHED_MAX_TIME"  # the plan ended it, before the 5 s all ranges take
    assert 0 < s["ranges"]["finished"] < N_RANGES
    assert s["ranges"]["finished"] + s["ranges"]["not_done"] == s["ranges"]["total"]
    # drained in time: a drain too late for the exit margin ends in the hard kill, which cuts ranges
    assert s["ranges"]["cut"] == 0 and comm.cut == []  # 50 ms ranges: none was still running
    finished = {rid for r in journal(tmp_path) if r["ev"] == "finished" for rid in r["ids"]}
    assert finished == set(comm.reported)  # every finished range reported, nothing else
    final = comm.reports[-1]
    assert final.state is JobState.FAILED and final.error_code == 1213
    assert "not done" in final.error_diag


def test_payloads_running_at_the_cut_are_killed_and_reported_failed(tmp_path: Path) -> None:
    coordinator, comm = run_until(tmp_path, payload_s=60, end_in=1.0, batch=BatchSettings(exit_margin_s=0.2))
    # killed, not waited for: a 60 s payload left to run ends finished, not failed with 1213
    failed = [r for r in journal(tmp_path) if r["ev"] == "failed"]
    assert failed and {r["code"] for r in failed} == {1213}
    assert sorted(comm.cut) == sorted(r["id"] for r in failed)  # reported failed, never lost
    assert coordinator.summary()["ranges"]["cut"] == len(failed) == 4  # one per core
    assert comm.reports[-1].error_code == 1213


def test_sigusr1_announces_the_end(tmp_path: Path) -> None:
    coordinator, comm = run_until(
        tmp_path,
        payload_s=0.05,
        end_in=None,
        batch=BatchSettings(exit_margin_s=0.2, warning_lead_s=1.0),
        signals=SignalAt(signal.SIGUSR1, 0.3),
    )
    s = coordinator.summary()
    assert s["drained_by"] == "REACHED_MAX_TIME" and s["ranges"]["finished"] > 0
    assert s["ranges"]["finished"] < N_RANGES  # no end was known before the signal: it brought one
    assert comm.reports[-1].error_code == 1213


def test_at_the_end_ranges_expected_to_end_before_the_exit_margin_finish(tmp_path: Path) -> None:
    """SIGUSR1 with the end 1.5 s away, ranges of 0.6 s, a kill grace of 5 s: nothing is killed."""
    coordinator, comm = run_until(
        tmp_path,
        payload_s=0.6,
        end_in=None,
        batch=BatchSettings(exit_margin_s=0.2, warning_lead_s=1.5),
        signals=SignalAt(signal.SIGUSR1, 0.9),  # the first 4 ranges took 0.6 s each
        kill_grace_s=5.0,
    )
    s = coordinator.summary()
    assert s["drained_by"] == "REACHED_MAX_TIME" and s["ranges"]["cut"] == 0 and comm.cut == []
    assert not [r for r in journal(tmp_path) if r["ev"] == "failed"]
    assert s["ranges"]["finished"] == 8  # those running at the signal finished too
    assert comm.reports[-1].error_code == 1213


def test_sigterm_kills_what_runs_after_the_grace(tmp_path: Path) -> None:
    coordinator, comm = run_until(
        tmp_path,
        payload_s=60,
        end_in=3600,
        batch=BatchSettings(term_grace_s=0.5),
        signals=SignalAt(signal.SIGTERM, 0.2),
    )
    s = coordinator.summary()
    assert s["drained_by"] == "SIGTERM" and s["ranges"]["cut"] == 4
    assert comm.reports[-1].error_code == 1201
    assert {r["code"] for r in journal(tmp_path) if r["ev"] == "failed"} == {1201}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("01:30:00", 5400),
        ("1-00:00:00", 86400),
        ("1-02:00", 93600),  # Slurm's days-hours:minutes
        ("10:30", 630),  # minutes:seconds
        ("90s", 90),
        ("45m", 2700),
        ("2h", 7200),
        ("1d", 86400),
        ("120", 120),
        ("0.5", 0.5),
    ],
)
def test_walltime_formats(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-5", "5x", "1-"])
def test_bad_walltimes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_added_at_once_give_what_one_by_one_gives() -> None:
    """`DurationStats.add_many` merges a batch: mean, spread and longest as if added one by one."""
    one, many = DurationStats(), DurationStats()
    first, second = [1.0, 2.5, 0.5], [4.0, 3.0, 9.0, 0.25]
    for s in first + second:
        one.add(s)
    many.add_many(first)
    many.add_many(second)
    many.add_many([])
    assert many.n == one.n == 7 and many.longest == one.longest == 9.0
    assert abs(many.mean - one.mean) < 1e-12 and abs(many.std - one.std) < 1e-12
