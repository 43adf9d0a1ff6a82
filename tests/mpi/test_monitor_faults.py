"""Fault injection at 4 MPI ranks: payloads that hang, hog memory, write nothing or crash.

Each misbehaving range is retried up to ``eventservice.max_attempts``, failing every time with its
code (1150 looping, 1235 memory, 1165 no output, 1305 crash), then declared fatal; every other range
finishes once and its events are in the merged output.
"""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, finished_ranges, journal, summary, write_jobs

pytestmark = pytest.mark.mpi

SCRIPT = Path(__file__).resolve().parent / "misbehaving_payload.py"
FAULTS = {2: ("hang", 1150), 4: ("hog", 1235), 6: ("nooutput", 1165), 8: ("crash", 1305)}
MONITOR = [
    "monitor.period_s=0.5",
    "monitor.looping_s=6",  # far above a normal range, even on a loaded machine
    "monitor.memory_grace_s=0.5",
    "payload.kill_grace_s=1",
    "eventservice.max_attempts=2",
]


def faulty_job(panda_id: int, n_events: int) -> dict[str, object]:
    job = demo_job(panda_id=panda_id, n_events=n_events, mode="per_range", sleep_per_event=0.005)
    faults = ",".join(f"{k}:{name}" for k, (name, _) in FAULTS.items())
    pars = str(job["jobPars"]).replace(
        "-m hpcpilot.demo.simulate", f"{shlex.quote(str(SCRIPT))} --faults {faults}"
    )
    assert pars != job["jobPars"]
    job["jobPars"] = pars
    job["minRamCount"] = 150  # MB: the simulation needs far less, the hog 400
    return job


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def test_misbehaving_ranges_fail_with_their_codes_then_fatal(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [faulty_job(91, 120)])  # 12 ranges of 10 events
    result = run_pilot(["run", "--workdir", str(tmp_path), *sets(MONITOR)], ranks=4, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = journal(tmp_path)
    codes: dict[str, list[int]] = defaultdict(list)
    for r in records:
        if r["ev"] == "failed":
            codes[r["id"]].append(r["code"])
    expected = {f"42-91-1-{k}-1": [code, code] for k, (_, code) in FAULTS.items()}
    assert dict(codes) == expected  # every attempt failed with its code, two attempts each
    fatal = {r["id"] for r in records if r["ev"] == "fatal"}
    assert fatal == set(expected)
    done = Counter(rid for rid, _ in finished_ranges(records))
    assert len(done) == 8 and set(done.values()) == {1} and not set(done) & fatal
    with h5py.File(tmp_path / "91" / "HITS.demo._000001.h5") as f:
        events = np.asarray(f["events"]["event_number"])
    lost = {e for k in FAULTS for e in range((k - 1) * 10 + 1, k * 10 + 1)}
    assert set(events.tolist()) == set(range(1, 121)) - lost and len(events) == 80
    # the kills were logged on the workers and forwarded to rank 0
    assert "LOOPING_JOB" in result.stderr and "PAYLOAD_EXCEEDED_MAX_MEMORY" in result.stderr
    s = summary(tmp_path)
    assert s["ranges"]["fatal"] == 4 and s["ranges"]["finished"] == 8


def test_no_local_space_on_every_node_drains_the_run_with_1098(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=92, n_events=100, mode="per_range", sleep_per_event=0)])
    low = [f"monitor.min_free_disk_mb={10**9}", "monitor.period_s=0.5", "disk.wait_s=2"]
    result = run_pilot(["run", "--workdir", str(tmp_path), *sets(low)], ranks=4, timeout=120)
    assert result.returncode == 4, result.stderr[-3000:]  # the run ended on a full disk
    for rank in (1, 2, 3):
        assert f"rank {rank} stopped on its own (1098 NO_LOCAL_SPACE)" in result.stderr
    s = summary(tmp_path)
    assert s["drained_by"] == "NO_LOCAL_SPACE"
    [job] = s["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1098
