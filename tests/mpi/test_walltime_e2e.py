"""The end of the allocation under mpiexec: drain before the deadline, nothing lost, a clean exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, check_cut_by_the_end, write_jobs

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("mode", ["streaming", "per_range"])
def test_walltime_cuts_the_run_and_loses_nothing(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, mode: str
) -> None:
    # 0.5 s ranges, far more than fit in the allocation: 3 workers x 2 cores for about 4 s
    write_jobs(tmp_path, [demo_job(panda_id=61, n_events=4000, mode=mode, sleep_per_event=0.05)])
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(tmp_path),
            "--walltime",
            "8s",
            "--set",
            "node.cores=2",
            "--set",
            "batch.exit_margin_s=3",
            "--set",
            "payload.kill_grace_s=1",
            "--set",
            "eventservice.merger=none",
        ],
        ranks=4,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # the end of the allocation is no failure
    s = check_cut_by_the_end(tmp_path, 61, "HITS.demo._000001.h5")
    assert s["ranges"]["finished"] < 400  # the 400 ranges need about 33 s: the end stopped it
    assert "no more work fits, draining" in result.stderr
