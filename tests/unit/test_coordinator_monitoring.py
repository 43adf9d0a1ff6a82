"""Rank 0's monitoring through a real coordinator and worker: samples reach reports and monitor.h5."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hpcpilot.config.schema import EventServiceSettings, MonitorSettings, NodeSettings, Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.states import JobState
from hpcpilot.monitor.timeseries import read_series
from hpcpilot.parallel import monitoring
from hpcpilot.parallel import run as par
from hpcpilot.parallel.books import WorkerBook
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import Message, NodeInfo, WorkerBye, WorkerUpdate
from hpcpilot.parallel.monitoring import RunMonitor
from hpcpilot.parallel.transport import LocalLink, MessageCounts
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.unit.test_coordinator_commands import Scripted


class Sampling:
    """The coordinator's end of a local link that adds synthetic samples to every worker update.

    Job 9 gets an RSS growing by 100 kB an update, a cumulative ``rchar`` and a user metric
    ``gpu_util``; the node gets a load.
    """

    worker_ranks = (0,)

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.n = 0
        self.counts: MessageCounts = inner.counts  # type: ignore[attr-defined]

    def _samples(self) -> tuple[MetricSample, ...]:
        self.n += 1
        now = time.time()
        job = (("rss_kb", 100.0 * self.n), ("rchar", 1000.0 * self.n), ("gpu_util", self.n / 1000))
        return (MetricSample(now, 9, job), MetricSample(now, 0, (("load1", 1.5),)))

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        for rank, message in self.inner.poll(limit):  # type: ignore[attr-defined]
            sampled = message
            if isinstance(message, WorkerUpdate):
                sampled = replace(message, samples=self._samples())
            elif isinstance(message, WorkerBye):
                sampled = replace(message, update=replace(message.update, samples=self._samples()))
            out.append((rank, sampled))
        return out

    def send(self, rank: int, message: Message) -> None:
        self.inner.send(rank, message)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.inner.flush()  # type: ignore[attr-defined]


def test_samples_reach_reports_and_the_time_series(tmp_path: Path) -> None:
    settings = Settings(
        eventservice=EventServiceSettings(mode="sleep"),
        node=NodeSettings(cores=2),
        monitor=MonitorSettings(write_interval_s=0.05),
    )
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Scripted(settings, layout, None, 0, 0.01)
    link = LocalLink()
    sampling = Sampling(link.coordinator)
    jnl = Journal(layout.journal)
    coordinator = Coordinator(sampling, settings, layout, comm, jnl, lambda line: None)  # type: ignore[arg-type]
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, SignalFlag())
    jnl.close()
    final = comm.reports[-1]
    assert final.state is JobState.FINISHED
    k = round(final.metrics["maxRSS"] / 100)  # updates folded before the final report
    assert 1 < k <= sampling.n
    assert final.metrics["avgRSS"] == round(100 * (k + 1) / 2)  # one node: mean of its samples
    assert final.metrics["totRCHAR"] == 1000 * k  # its last cumulative value
    assert final.job_metrics == f"gpu_util={k / 1000:g}"
    n = sampling.n
    heartbeats = [r for r in comm.reports if r.state is JobState.RUNNING and r.metrics]
    assert heartbeats and heartbeats[0].metrics["maxRSS"] <= final.metrics["maxRSS"]
    data = read_series(tmp_path / "monitor.h5")
    assert data is not None
    job = data.jobs[9]
    assert len(job) == n and job.columns["rss_kb"].max() == 100 * n
    node = data.nodes[0]
    assert node.attrs["host"] == "h"
    loads = node.columns["load1"]
    assert (loads[loads == loads] == 1.5).all() and (loads == 1.5).sum() == n
    busy = node.columns["busy_slots"]
    slots = node.columns["slots"]
    assert np.nanmax(busy) == 2 and np.nanmax(slots) == 2  # rank 0's own rows, no plugin needed
    assert busy[-1] == 0  # the worker's goodbye


def test_silent_worker_is_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monitor = RunMonitor(MonitorSettings(silent_worker_s=0.01, write_interval_s=3600), tmp_path)
    worker = WorkerBook(3, node=NodeInfo(3, "nid003", 4), in_flight=5)
    with caplog.at_level(logging.WARNING):
        monitor.tick([worker])  # first seen now
        time.sleep(0.05)
        monitor.tick([worker])
        monitor.tick([worker])
    warnings = [r.getMessage() for r in caplog.records if "not been heard from" in r.getMessage()]
    assert len(warnings) == 1 and "rank 3 (nid003)" in warnings[0] and "5 range(s)" in warnings[0]
    monitor.fold(worker, ())
    assert "heard from again" in caplog.text
    monitor.on_update(worker, 4)  # rank 0's row of the update
    assert not (tmp_path / "monitor.h5").exists()  # not due yet
    monitor.close()
    assert (tmp_path / "monitor.h5").exists()


def test_no_warning_when_disabled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monitor = RunMonitor(MonitorSettings(silent_worker_s=0, write_interval_s=3600), tmp_path)
    worker = WorkerBook(1)
    monitor.tick([worker])
    time.sleep(0.02)
    monitor.tick([worker])
    assert "not been heard" not in caplog.text


def test_rank0_rows_are_thinned_but_the_latest_state_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitoring, "NODE_ROW_MIN_S", 0.05)
    monitor = RunMonitor(MonitorSettings(write_interval_s=3600), tmp_path)
    worker = WorkerBook(2, node=NodeInfo(2, "nid002", 4))
    for busy in (2, 1, 0):  # three updates in a burst: the first is written, the last is held
        worker.busy_slots = busy
        monitor.on_update(worker, 4)
    time.sleep(0.1)
    monitor.tick([worker])  # the held row goes out once its time has come
    for busy in (3, 4):  # soon after that row: held, the latest kept until the end
        worker.busy_slots = busy
        monitor.on_update(worker, 4)
    monitor.close()
    data = read_series(tmp_path / "monitor.h5")
    assert data is not None
    assert data.nodes[2].columns["busy_slots"].tolist() == [2.0, 0.0, 4.0]
