"""Monitoring end to end: the workers' samples, a user's own metric included, reach the job's report and
``monitor.h5`` in a real MPI run."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, journal, write_jobs

PANDA_ID = 71
USER_PLUGIN = "tests.plugins.extra_metric:OpenFilesMonitor"


def test_samples_and_a_user_metric_reach_the_report_and_the_time_series(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=PANDA_ID, n_events=300, mode="per_range", sleep_per_event=0.02)])
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(tmp_path),
            "--set",
            "node.cores=2",
            "--set",
            f"monitor.plugins=psutil,{USER_PLUGIN}",
            "--set",
            "monitor.period_s=0.2",
            "--set",
            "monitor.write_interval_s=0.5",
        ],
        ranks=3,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / "results.json").read_text())[str(PANDA_ID)]
    assert report["jobStatus"] == "finished"
    assert report["nEvents"] == 300
    # the payloads are Python processes: tens of MB resident, reading their interpreter's files
    assert 5_000 < report["maxRSS"] < 2_000_000  # kB
    assert 0 < report["avgRSS"] <= report["maxRSS"]
    assert 0 < report["maxPSS"] <= report["maxRSS"]
    assert report["totRCHAR"] > 0
    assert report["rateRCHAR"] > 0
    fds = [w for w in report["jobMetrics"].split() if w.startswith("open_fds=")]
    assert len(fds) == 1 and float(fds[0].split("=")[1]) >= 3  # stdin, stdout, stderr at least

    ranks = sorted({r["rank"] for r in journal(tmp_path) if r["ev"] == "worker"})
    assert ranks == [1, 2]
    with h5py.File(tmp_path / "monitor.h5", "r") as f:
        job = f[f"jobs/{PANDA_ID}"]
        rows = len(job["t"])
        assert rows >= 2
        assert set(job) >= {"t", "rank", "rss_kb", "cpu_s", "rchar", "open_fds"}
        assert set(np.unique(job["rank"][:]).astype(int)) <= {1, 2}
        assert round(float(np.nanmax(job["rss_kb"][:]))) == report["maxRSS"]  # the same samples
        assert np.nanmax(job["open_fds"][:]) >= 3
        for rank in ranks:
            node = f[f"nodes/rank-{rank:04d}"]
            assert node.attrs["rank"] == rank
            assert np.nanmax(node["load1"][:]) >= 0
            assert np.nanmin(node["mem_avail_kb"][:]) > 0
