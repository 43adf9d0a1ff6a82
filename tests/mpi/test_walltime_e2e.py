"""The end of the allocation under mpiexec: drain before the deadline, nothing lost, a clean exit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, journal, summary, write_jobs

pytestmark = pytest.mark.mpi


def _outputs_on_disk(workdir: Path, panda_id: int) -> dict[str, Path]:
    """Range id -> the range output files the payloads left (``<lfn>.<rangeID>``)."""
    found = {}
    for path in (workdir / str(panda_id)).glob("HITS.demo._000001.h5.*"):
        found[path.name.removeprefix("HITS.demo._000001.h5.")] = path
    return found


@pytest.mark.parametrize("mode", ["streaming", "per_range"])
def test_walltime_cuts_the_run_and_loses_nothing(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, mode: str
) -> None:
    # 0.5 s ranges, far more than fit in the allocation: 3 workers x 2 cores for about 4 s
    write_jobs(tmp_path, [demo_job(panda_id=61, n_events=4000, mode=mode, sleep_per_event=0.05)])
    started = time.monotonic()
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
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]  # the end of the allocation is no failure
    assert wall < 8 + 5  # the walltime runs from rank 0's start; mpiexec and imports come on top
    s = summary(tmp_path)
    assert s["drained_by"] == "REACHED_MAX_TIME"
    [job] = s["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1213
    records = journal(tmp_path)
    done = [r for r in records if r["ev"] == "finished"]
    finished = {rid: path for r in done for rid, path in zip(r["ids"], r["paths"], strict=True)}
    cut = {r["id"] for r in records if r["ev"] == "failed" and r["code"] == 1213}
    assert finished and len(finished) == s["ranges"]["finished"] < 400
    # every output a payload left is either a finished (journalled, checksummed) range or a cut one
    on_disk = _outputs_on_disk(tmp_path, 61)
    assert set(finished) <= set(on_disk)
    assert set(on_disk) - set(finished) <= cut
    adlers = {rid: a for r in done for rid, a in zip(r["ids"], r["adler32"], strict=True)}
    assert all(adler32_of_file(on_disk[rid]) == adlers[rid] for rid in finished)
    assert s["ranges"]["cut"] == len(cut)
    assert "no more work fits, draining" in result.stderr
