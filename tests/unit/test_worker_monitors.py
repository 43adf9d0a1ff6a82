"""The worker runs the monitors: samples reach rank 0, verdicts kill items or stop the node."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hpcpilot.comm.local import LocalCommunicator
from hpcpilot.config.schema import (
    DiskSettings,
    EventServiceSettings,
    MonitorSettings,
    NodeSettings,
    ParallelSettings,
    PayloadSettings,
    RunSettings,
    Settings,
)
from hpcpilot.demo.jobs import demo_job
from hpcpilot.model import metrics as m
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.monitor.base import Monitor, NodeContext, Observation, Watched
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import Assignment, NodeInfo, RangeWork, WorkerBye, WorkerUpdate
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.worker import Worker
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.conftest import write_jobs
from tests.plugins.extra_metric import OPEN_FDS, OpenFilesMonitor
from tests.ranges import batches_in, fed, ids_of, results_of, returned_ids

SLEEPER = "import sys, time; time.sleep(float(sys.argv[1])); open(sys.argv[2], 'w').write('x')"


def job(seconds: float, **fields: object) -> Job:
    return Job(
        panda_id=5,
        transformation=sys.executable,
        job_pars=f'-c "{SLEEPER}" {seconds} {{outputFile}}',
        event_service=True,
        output_files=(FileSpec("o.dat"),),
        **fields,  # type: ignore[arg-type]
    )


def worker(
    tmp_path: Path, monitor: MonitorSettings, cores: int = 2, disk: DiskSettings | None = None
) -> tuple[Worker, LocalLink]:
    (tmp_path / "5" / "logs").mkdir(parents=True)
    settings = Settings(
        eventservice=EventServiceSettings(mode="per_range"),
        parallel=ParallelSettings(report_interval_s=0.05),
        payload=PayloadSettings(kill_grace_s=0.5),
        monitor=monitor,
        disk=disk or DiskSettings(),
    )
    link = LocalLink()
    return Worker(link.worker, settings, WorkLayout(tmp_path), NodeInfo(1, "n1", cores), os.environ), link


def task(i: int) -> RangeWork:
    """Range ``i`` of job 5 (index ``i - 1`` in its table), fed."""
    return fed(5, [EventRange(f"1-5-1-{i}-1", i, i)], start=i - 1)


IDS = ids_of(task(i) for i in (1, 2, 3))


def run_until(w: Worker, link: LocalLink, done: object, seconds: float = 30.0) -> list[object]:
    """Step the worker (answering its requests with nothing) until ``done(messages)``."""
    seen: list[object] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        w.step()
        while link.to_coordinator:
            message = link.to_coordinator.popleft()
            seen.append(message)
            if isinstance(message, WorkerUpdate) and message.want_cores:
                link.to_worker.append(Assignment((), ()))
        if done(seen):  # type: ignore[operator]
            return seen
        time.sleep(0.005)
    raise AssertionError("the worker never got there")


def results(seen: list[object]) -> list[RangeResult]:
    return results_of(batches_in(seen), IDS)


def test_samples_of_a_user_plugin_reach_rank_0(tmp_path: Path) -> None:
    settings = MonitorSettings(
        plugins=("psutil", "tests.plugins.extra_metric:OpenFilesMonitor"), period_s=0.1
    )
    w, link = worker(tmp_path, settings)
    link.to_worker.append(Assignment((job(1.0),), (task(1),)))
    seen = run_until(w, link, lambda s: len(results(s)) == 1)
    samples = [x for u in seen if isinstance(u, WorkerUpdate) for x in u.samples]
    fds = [x.get(OPEN_FDS) for x in samples if OPEN_FDS in dict(x.values)]
    assert fds and all(x.panda_id == 5 for x in samples if OPEN_FDS in dict(x.values))
    assert max(fds) >= 3  # stdin, stdout, stderr at least
    job_rss = [x.get(m.RSS_KB) for x in samples if x.panda_id == 5 and m.RSS_KB in dict(x.values)]
    assert job_rss and max(job_rss) > 1000  # the psutil monitor sampled the payload too
    assert any(x.panda_id == 0 and x.get(m.BUSY_SLOTS) == 1 for x in samples)
    [result] = results(seen)
    assert result.state is RangeState.FINISHED


def test_samples_go_out_every_period_as_a_heartbeat(tmp_path: Path) -> None:
    w, link = worker(tmp_path, MonitorSettings(period_s=0.1))
    link.to_worker.append(Assignment((job(1.5),), (task(1),)))
    seen = run_until(w, link, lambda s: len(results(s)) == 1)
    with_samples = [u for u in seen if isinstance(u, WorkerUpdate) and u.samples]
    assert len(with_samples) >= 3  # a 1.5 s range, sampled every 0.1 s: updates went out meanwhile


def test_job_wall_time_limit_kills_the_range_with_1213(tmp_path: Path) -> None:
    w, link = worker(tmp_path, MonitorSettings(period_s=0.1))
    link.to_worker.append(Assignment((job(60, max_walltime_s=1),), (task(1),)))
    seen = run_until(w, link, lambda s: len(results(s)) == 1)  # within 30 s: not the payload's 60 s
    [result] = results(seen)
    assert result.state is RangeState.FAILED
    assert result.error_code is ErrorCode.REACHED_MAX_TIME
    assert "wall-time limit" in result.error_diag


def test_low_disk_pauses_the_node_then_stops_it_without_killing(tmp_path: Path) -> None:
    low = MonitorSettings(period_s=0.1, min_free_disk_mb=10**9)
    w, link = worker(tmp_path, low, cores=1, disk=DiskSettings(wait_s=1.0, retry_s=0.1))
    link.to_worker.append(Assignment((job(0.5),), (task(1), task(2), task(3))))
    seen = run_until(w, link, lambda s: any(isinstance(x, WorkerBye) for x in s))
    [bye] = [x for x in seen if isinstance(x, WorkerBye)]
    assert bye.reason == 1098
    done = results(seen)
    assert [r.state for r in done] == [RangeState.FINISHED]
    assert set(returned_ids(bye.returned, IDS)) == {"1-5-1-2-1", "1-5-1-3-1"}


def test_no_monitors_no_samples(tmp_path: Path) -> None:
    w, link = worker(tmp_path, MonitorSettings(plugins=()))
    link.to_worker.append(Assignment((job(0.2),), (task(1),)))
    seen = run_until(w, link, lambda s: len(results(s)) == 1)
    assert all(not u.samples for u in seen if isinstance(u, WorkerUpdate))


class _Recording(Coordinator):
    """Rank 0 that keeps the samples of every update it receives (its own aggregation aside)."""

    received: list[MetricSample]

    def _on_update(self, rank: int, update: WorkerUpdate) -> None:
        self.received.extend(update.samples)
        super()._on_update(rank, update)


def test_user_metric_reaches_rank_0_in_a_single_process_run(tmp_path: Path) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=61, n_events=40, mode="per_range", sleep_per_event=0.05)])
    settings = Settings(
        run=RunSettings(workdir=str(tmp_path)),
        node=NodeSettings(cores=2),
        monitor=MonitorSettings(
            plugins=("psutil", "tests.plugins.extra_metric:OpenFilesMonitor"), period_s=0.1
        ),
    )
    layout = WorkLayout(tmp_path)
    comm = LocalCommunicator(settings, layout)
    link = LocalLink()
    jnl = Journal(layout.journal)
    coordinator = _Recording(link.coordinator, settings, layout, comm, jnl, lambda line: None)
    coordinator.received = []
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, SignalFlag())
    jnl.close()
    assert coordinator.summary()["ranges"]["finished"] == 4
    fds = [s for s in coordinator.received if OPEN_FDS in dict(s.values)]
    assert fds and {s.panda_id for s in fds} == {61} and all(s.get(OPEN_FDS) >= 3 for s in fds)
    assert any(s.panda_id == 61 and s.get(m.CPU_S) > 0 for s in coordinator.received)
    assert any(s.panda_id == 0 and s.get(m.MEM_TOTAL_KB) > 0 for s in coordinator.received)


def test_user_metric_leaves_out_a_payload_that_exited_and_is_not_reaped_yet(tmp_path: Path) -> None:
    """The flake of the run above: a payload sampled as a zombie (not reaped yet) counted 0 open fds."""
    monitor = OpenFilesMonitor(MonitorSettings(), NodeContext(0, "h", 2, tmp_path, None))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.waitid(os.P_PID, ended.pid, os.WEXITED | os.WNOWAIT)  # exited, left a zombie: not reaped
        other = dataclasses.replace(job(0.0), panda_id=6)
        running = [
            Watched("s1", job(0.0), (ended.pid,), 0.0, tmp_path),
            Watched("s2", other, (live.pid, ended.pid), 0.0, tmp_path),
        ]
        samples = monitor.observe(time.monotonic(), running).samples
        assert [(s.panda_id, s.get(OPEN_FDS) >= 3) for s in samples] == [(6, True)]
    finally:
        live.kill()
        live.wait()
        ended.wait()


class Broken(Monitor):
    """A monitor with a bug."""

    def observe(self, now: float, running: Sequence[Watched]) -> Observation:
        raise ZeroDivisionError("bug in a monitor")


def test_a_failing_monitor_is_turned_off_and_the_work_goes_on(tmp_path: Path) -> None:
    plugins = ("tests.unit.test_worker_monitors:Broken", "psutil", "no_such_monitor")
    w, link = worker(tmp_path, MonitorSettings(plugins=plugins, period_s=0.1))
    link.to_worker.append(Assignment((job(0.5),), (task(1),)))
    seen = run_until(w, link, lambda s: len(results(s)) == 1)
    assert [type(x).__name__ for x in w._monitors or ()] == ["PsutilMonitor"]
    assert any(u.samples for u in seen if isinstance(u, WorkerUpdate))
    assert results(seen)[0].state is RangeState.FINISHED
