"""Rank 0 reports early when many range outcomes wait, but not again and again while reports fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hpcpilot.config.schema import EventServiceSettings, Settings
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.parallel.coordinator import FLUSH_AT_PENDING, Coordinator
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.runtime.journal import Journal
from tests.unit.test_coordinator_commands import Scripted


class Refusing(Scripted):
    """A workload manager whose range reports fail (an outage), counting the tries."""

    tries = 0

    def report_ranges(
        self, job: Job, results: Sequence[RangeResult], fatal: Sequence[str], cut: Sequence[str] = ()
    ) -> None:
        self.tries += 1
        raise CommunicatorError("server unreachable")


def _add(coordinator: Coordinator, n: int, start: int) -> None:
    for i in range(start, start + n):
        coordinator.reports.add(RangeResult(9, f"1-9-1-{i}-1", RangeState.FINISHED))


def test_a_pile_of_outcomes_is_reported_early_once_not_on_every_step(tmp_path: Path) -> None:
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"))
    layout = WorkLayout(tmp_path)
    comm = Refusing(settings, layout, None, 0, 0.0)
    jnl = Journal(layout.journal)
    link = LocalLink()
    coordinator = Coordinator(link.coordinator, settings, layout, comm, jnl, lambda line: None)
    coordinator.step()  # the job arrives; the first periodic flush is now 1 s away
    coordinator.step()
    tries = comm.tries
    _add(coordinator, FLUSH_AT_PENDING, 1)
    coordinator.step()
    assert comm.tries == tries + 1  # the pile made the report go at once; it failed and is kept
    assert coordinator.reports.pending == FLUSH_AT_PENDING
    for _ in range(20):
        coordinator.step()
    assert comm.tries == tries + 1  # the outcomes it kept back do not make every step try again
    _add(coordinator, FLUSH_AT_PENDING, FLUSH_AT_PENDING + 1)
    coordinator.step()
    assert comm.tries == tries + 2  # a new pile does
    jnl.close()
