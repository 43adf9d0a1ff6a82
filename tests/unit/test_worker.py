"""The worker loop, driven in process through a LocalLink."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hpcpilot.config.schema import EventServiceSettings, ParallelSettings, Settings
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.parallel.messages import (
    Assignment,
    Farewell,
    NodeInfo,
    RangeWork,
    Stop,
    WorkerBye,
    WorkerUpdate,
)
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.worker import Worker
from tests.ranges import batches_in, fed, ids_of, results_of

JOB = Job(
    panda_id=5, transformation="sleep", job_pars="0", event_service=True, output_files=(FileSpec("o.dat"),)
)


def worker(tmp_path: Path, batch: int = 64) -> tuple[Worker, LocalLink]:
    (tmp_path / "5" / "logs").mkdir(parents=True)
    settings = Settings(
        eventservice=EventServiceSettings(mode="sleep"),
        parallel=ParallelSettings(batch_size=batch, report_interval_s=30.0),
    )
    link = LocalLink()
    return Worker(link.worker, settings, WorkLayout(tmp_path), NodeInfo(1, "n1", 2), os.environ), link


def updates(link: LocalLink) -> list[WorkerUpdate]:
    out = [m for m in link.to_coordinator if isinstance(m, WorkerUpdate)]
    link.to_coordinator.clear()
    return out


def run_steps(w: Worker, seconds: float = 0.2) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        w.step()


def task(i: int, panda_id: int = 5) -> RangeWork:
    """Range ``i`` of a job (index ``i - 1`` in its table), fed."""
    return fed(panda_id, [EventRange(f"1-{panda_id}-1-{i}-1", i, i)], start=i - 1)


IDS = ids_of([task(1), task(1, panda_id=6)])


def test_first_update_says_hello_and_asks_for_prefetch(tmp_path: Path) -> None:
    w, link = worker(tmp_path)
    w.step()
    [hello] = updates(link)
    assert hello.node == NodeInfo(1, "n1", 2)
    assert hello.want_cores == 2 * (1 + 2)  # cores x (1 + prefetch_per_slot)
    assert w.request_outstanding


def test_an_idle_worker_reports_at_once_even_with_a_request_out(tmp_path: Path) -> None:
    w, link = worker(tmp_path)
    w.step()
    updates(link)
    link.to_worker.append(Assignment((JOB,), (task(1),)))
    run_steps(w)
    finished = results_of(batches_in(updates(link)), IDS)
    assert [r.range_id for r in finished] == ["1-5-1-1-1"]
    assert finished[0].state is RangeState.FINISHED
    assert w.request_outstanding  # it asked for more while the range ran, and got no answer yet


def test_a_busy_worker_holds_results_until_it_asks_again(tmp_path: Path) -> None:
    w, link = worker(tmp_path, batch=1)
    w.step()
    updates(link)
    long_job = Job(
        panda_id=5,
        transformation="sleep",
        job_pars="30",
        event_service=True,
        output_files=(FileSpec("o.dat"),),
    )
    quick = Job(
        panda_id=6,
        transformation="sleep",
        job_pars="0",
        event_service=True,
        output_files=(FileSpec("o.dat"),),
    )
    (tmp_path / "6" / "logs").mkdir(parents=True)
    link.to_worker.append(Assignment((long_job, quick), (task(1), task(1, panda_id=6))))
    run_steps(w)
    held = batches_in(updates(link))
    assert held == []  # one slot still busy, a request out: the finished range waits for it
    assert w.request_outstanding  # 2 of the 6 cores asked for came: the rest stands at rank 0
    rest = fed(5, [EventRange(f"1-5-1-{i}-1", i, i) for i in (2, 3, 4, 5)], start=1)
    link.to_worker.append(Assignment((), (rest,)))  # the answer: the rest of its request (long ranges)
    run_steps(w)
    assert [r.range_id for r in results_of(batches_in(updates(link)), IDS)] == ["1-6-1-1-1"]
    assert not w.request_outstanding


def test_inputs_are_found_in_the_job_directory_or_at_the_top(tmp_path: Path) -> None:
    w, _ = worker(tmp_path)
    (tmp_path / "top.root").write_text("x")  # one job per Harvester worker: linked at the top
    (tmp_path / "5" / "both.root").write_text("x")
    (tmp_path / "both.root").write_text("x")
    assert w._input_path(5, "top.root") == str(tmp_path / "top.root")
    assert w._input_path(5, "both.root") == str(tmp_path / "5" / "both.root")
    assert w._input_path(5, "nowhere.root") == str(tmp_path / "5" / "nowhere.root")


def test_after_its_bye_a_worker_drops_what_crossed_it_and_ends_at_the_farewell(tmp_path: Path) -> None:
    w, link = worker(tmp_path)
    link.to_worker.append(Stop(drain=False))
    run_steps(w, 0.05)
    assert any(isinstance(m, WorkerBye) for m in link.to_coordinator)
    assert w.bye_sent and not w.done  # it waits for rank 0's last word
    link.to_coordinator.clear()
    link.to_worker.append(Assignment((JOB,), (task(1),)))  # sent by rank 0 before it had the bye
    link.to_worker.append(Stop(drain=True, kill=True))
    run_steps(w, 0.05)
    assert not w.done and not link.to_coordinator and not w.queue  # dropped, nothing started or sent
    link.to_worker.append(Farewell(1))
    w.step()
    assert w.done


def _sleeping(seconds: float, panda_id: int = 5) -> Job:
    return Job(
        panda_id=panda_id,
        transformation="sleep",
        job_pars=str(seconds),
        event_service=True,
        output_files=(FileSpec("o.dat"),),
    )


def test_at_the_cut_a_range_that_fits_finishes_and_one_that_overruns_is_killed_later(
    tmp_path: Path,
) -> None:
    (tmp_path / "6" / "logs").mkdir(parents=True)
    w, link = worker(tmp_path)
    w.step()
    updates(link)
    quick, stuck = _sleeping(0.3), _sleeping(30, panda_id=6)
    link.to_worker.append(Assignment((quick, stuck), (task(1), task(1, panda_id=6))))
    run_steps(w, 0.05)
    # each job's ranges took 0.3 s so far: both are expected to end within the 0.5 s left
    expected = ((5, 0.3), (6, 0.3))
    link.to_worker.append(Stop(True, True, 1213, "cut at the end", spare_s=0.5, expected_s=expected))
    run_steps(w, 0.35)
    assert not w.bye_sent  # the stuck one is spared too, and still runs
    run_steps(w, 0.4)
    [bye] = [m for m in link.to_coordinator if isinstance(m, WorkerBye)]
    results = {r.range_id: r for r in results_of(batches_in([bye]), IDS)}
    assert results["1-5-1-1-1"].state is RangeState.FINISHED  # spared, and it made it
    assert results["1-6-1-1-1"].error_code == 1213  # killed when the 0.5 s were over


def test_at_the_cut_a_range_of_a_job_without_a_finished_one_is_killed_at_once(tmp_path: Path) -> None:
    w, link = worker(tmp_path)
    w.step()
    updates(link)
    link.to_worker.append(Assignment((_sleeping(30),), (task(1),)))
    run_steps(w, 0.05)
    link.to_worker.append(Stop(True, True, 1213, "cut", spare_s=60.0, expected_s=()))
    run_steps(w, 0.1)
    [bye] = [m for m in link.to_coordinator if isinstance(m, WorkerBye)]
    assert [r.error_code for r in results_of(batches_in([bye]), IDS)] == [1213]
