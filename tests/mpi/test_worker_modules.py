"""What a worker rank has imported by the end of a real run: no h5py, numpy, PyYAML or metadata scan.

`tests/unit/test_worker_imports.py` checks the import path; this checks a whole run under mpiexec,
with what only happens at run time: the settings and messages unpickled, the plugins loaded by name
(the payload mode, the monitors) from rank 0's entry-point table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import REPO, RunPilot, write_jobs

pytestmark = pytest.mark.mpi

HOOK = """\
import atexit, os, sys

def _dump():
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "x"
    with open(os.path.join(os.environ["HPCPILOT_TEST_MODULES"], f"rank-{rank}"), "w") as f:
        f.write("\\n".join(sorted(sys.modules)))

atexit.register(_dump)
"""
HEAVY = ("h5py", "numpy", "yaml", "importlib.metadata", "hpcpilot.monitor.timeseries", "hpcpilot.comm")


@pytest.mark.parametrize("mode", ["streaming", "per_range"])
def test_a_worker_rank_never_imports_the_heavy_modules(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, mode: str
) -> None:
    hook, dumps, work = tmp_path / "hook", tmp_path / "modules", tmp_path / "work"
    for d in (hook, dumps, work):
        d.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    write_jobs(work, [demo_job(panda_id=33, n_events=40, mode=mode, sleep_per_event=0)])
    env = {
        "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
        "HPCPILOT_TEST_MODULES": str(dumps),
    }
    result = run_pilot(["run", "--workdir", str(work)], ranks=2, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = (dumps / "rank-0").read_text().split()
    worker = (dumps / "rank-1").read_text().split()
    assert "numpy" in rank0 and "h5py" in rank0  # rank 0 keeps the time series (monitor.h5)
    assert f"hpcpilot.payload.{mode}" in worker  # the worker ran the payload
    assert [m for m in worker if m.startswith(HEAVY)] == []
