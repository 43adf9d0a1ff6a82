"""Worker ranks that share a node divide its cores instead of each taking all of them (issue 15).

Under ``mpiexec -n 4`` on this one machine, rank 0 coordinates and three workers share the host. The
machine has few CPUs, so ``node.cores=16`` stands in for a 16-core node: together the workers must own
at most those 16 cores (before, each took all 16: 48 slots on 16 cores), and the uneven division
(16 over 3) is logged as a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, journal, summary, write_jobs

pytestmark = pytest.mark.mpi


def test_workers_on_one_host_share_its_cores(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=61, n_events=40, sleep_per_event=0)])
    result = run_pilot(
        ["run", "--workdir", str(tmp_path), "--set", "node.cores=16", "--set", "node.gpus=0"], ranks=4
    )
    assert result.returncode == 0, result.stderr[-3000:]
    workers = {r["rank"]: r for r in journal(tmp_path) if r["ev"] == "worker"}
    assert set(workers) == {1, 2, 3}
    assert sum(w["cores"] for w in workers.values()) == 16  # not 3 x 16
    assert sorted(w["cores"] for w in workers.values()) == [5, 5, 6]
    assert all(w["peers"] == 3 for w in workers.values())
    assert summary(tmp_path)["cores"] == 16
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*")) if p.is_file())
    assert "node.cores=16 on " in logs  # the uneven division is a warning
    assert "does not divide evenly among 3 worker ranks" in logs
    assert "shared with 2 other worker rank(s) on the node" in logs
