"""End-to-end runs under mpiexec at 1, 2 and 4 ranks: the acceptance tests of the MPI pilot."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import REPO, RunPilot, finished_ranges, journal, pilot_env, summary, write_jobs

pytestmark = pytest.mark.mpi
RANKS = [1, 2, 4]


def merged_events(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return np.asarray(f["events"]["event_number"])


def range_events(rid: str, per_range: int) -> set[int]:
    k = int(rid.split("-")[3])
    return set(range((k - 1) * per_range + 1, k * per_range + 1))


@pytest.mark.parametrize("ranks", RANKS)
def test_per_range_job_with_failing_ranges(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, ranks: int
) -> None:
    job = demo_job(panda_id=31, n_events=200, mode="per_range", sleep_per_event=0, fail_events=[25, 77])
    write_jobs(tmp_path, [job])
    result = run_pilot(
        ["run", "--workdir", str(tmp_path), "--set", "eventservice.max_attempts=2"], ranks=ranks
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = journal(tmp_path)
    finished = Counter(rid for rid, _ in finished_ranges(records))
    fatal = {r["id"] for r in records if r["ev"] == "fatal"}
    failed = Counter(r["id"] for r in records if r["ev"] == "failed")
    assert set(finished.values()) == {1}, "a range finished more than once"
    assert fatal == {"42-31-1-3-1", "42-31-1-8-1"}  # the ranges holding events 25 and 77
    assert all(failed[rid] == 2 for rid in fatal)  # retried once, then fatal
    assert len(finished) + len(fatal) == 20 and not set(finished) & fatal
    expected = set(range(1, 201)) - range_events("42-31-1-3-1", 10) - range_events("42-31-1-8-1", 10)
    events = merged_events(tmp_path / "31" / "HITS.demo._000001.h5")
    assert len(events) == len(expected) and set(events.tolist()) == expected
    s = summary(tmp_path)
    assert s["workers"] == max(ranks - 1, 1)
    assert s["messages"]["out_by_type"]["Stop"] == max(ranks - 1, 1)  # counted by the transport
    assert s["messages"]["out"] == sum(s["messages"]["out_by_type"].values())
    assert s["ranges"] == {
        "total": 20,
        "finished": 18,
        "fatal": 2,
        "failed_attempts": 4,
        "not_done": 0,
        "cut": 0,
    }
    workers = {r["rank"] for r in records if r["ev"] == "assigned"}
    assert workers == ({0} if ranks == 1 else set(range(1, ranks)))


@pytest.mark.parametrize("ranks", RANKS)
def test_streaming_job_retries_then_finishes(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, ranks: int
) -> None:
    job = demo_job(
        panda_id=32,
        n_events=300,
        mode="streaming",
        sleep_per_event=0,
        fail_events=[5, 150],
        fail_mode="first",
    )
    write_jobs(tmp_path, [job])
    result = run_pilot(["run", "--workdir", str(tmp_path)], ranks=ranks)
    assert result.returncode == 0, result.stderr[-3000:]
    records = journal(tmp_path)
    finished = Counter(rid for rid, _ in finished_ranges(records))
    retried = {r["id"] for r in records if r["ev"] == "failed"}
    assert retried == {"42-32-1-1-1", "42-32-1-15-1"}
    assert len(finished) == 30 and set(finished.values()) == {1}
    events = merged_events(tmp_path / "32" / "HITS.demo._000001.h5")
    assert np.array_equal(np.sort(events), np.arange(1, 301))
    with h5py.File(tmp_path / "32" / "HITS.demo._000001.h5") as f:
        assert sorted(f["ranges"]) == sorted(finished)


@pytest.mark.parametrize("ranks", RANKS)
def test_plain_jobs_are_distributed(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, ranks: int) -> None:
    script = "import os, time; time.sleep(0.5); open('out.txt', 'w').write(os.environ['HPCPILOT_SLOT'])"
    jobs = [
        {
            "PandaID": 100 + i,
            "transformation": sys.executable,
            "jobPars": f'-c "{script}"',
            "coreCount": 1,
            "outFiles": "out.txt,log.tgz",
            "logFile": "log.tgz",
        }
        for i in range(6)
    ]
    jobs.append(
        {
            "PandaID": 199,
            "transformation": sys.executable,
            "jobPars": "-c 'raise SystemExit(4)'",
            "outFiles": "out.txt",
        }
    )
    write_jobs(tmp_path, jobs)
    result = run_pilot(["run", "--workdir", str(tmp_path), "--set", "node.cores=2"], ranks=ranks)
    assert result.returncode == 3, result.stderr[-3000:]  # job 199 fails, the rest finish
    s = summary(tmp_path)
    states = {j["PandaID"]: j for j in s["jobs"]}
    assert all(states[100 + i]["state"] == "finished" for i in range(6))
    assert states[199]["state"] == "failed" and states[199]["error_code"] == 1305
    slots = {(tmp_path / str(100 + i) / "out.txt").read_text() for i in range(6)}
    ranks_used = {slot.split("-")[0] for slot in slots}
    assigned = {r["rank"] for r in journal(tmp_path) if r["ev"] == "assigned"}
    if ranks == 4:
        assert len(assigned) == 3 and len(ranks_used) == 3  # every worker got plain jobs
    else:
        assert assigned == {max(ranks - 1, 0)}
    for i in range(6):
        [out] = states[100 + i]["outputs"]
        assert out["fsize"] == len((tmp_path / str(100 + i) / "out.txt").read_bytes())


@pytest.mark.parametrize("ranks", [2, 4])
def test_worker_exception_aborts_the_job_promptly(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, ranks: int
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=41, n_events=50, sleep_per_event=0)])
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(tmp_path),
            "--set",
            "eventservice.mode=tests.plugins.crashing:CrashingRunner",
        ],
        ranks=ranks,
        timeout=120,  # a run that hangs on the crash instead of aborting fails here
    )
    assert result.returncode != 0
    assert "unexpected RuntimeError on rank" in result.stderr
    assert "injected crash in a worker" in result.stderr


def test_sigterm_drains_and_keeps_every_finished_range(
    mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    proc = _start_and_wait_for_work(mpiexec, tmp_path, launcher_tmp, ranks=3, n_events=2000)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err[-2000:]
    assert "received SIGTERM: draining" in err
    records = journal(tmp_path)
    finished = finished_ranges(records)
    assert finished and all(Path(str(path)).is_file() for _, path in finished)
    s = summary(tmp_path)
    assert s["drained_by"] == "SIGTERM"
    assert s["ranges"]["finished"] == len(finished)
    assert s["ranges"]["finished"] + s["ranges"]["not_done"] == s["ranges"]["total"]
    [job] = s["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1201
    assert "hpcpilot summary" in out


def _journal_so_far(workdir: Path) -> list[dict[str, object]]:
    try:
        return journal(workdir)
    except (FileNotFoundError, ValueError):
        return []


def _rank_process(launcher: subprocess.Popen[str], rank: int) -> psutil.Process:
    """The pilot process of one MPI rank (found by PMI_RANK among the launcher's descendants)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("PMI_RANK") == str(rank) and "hpcpilot" in child.cmdline():
                    return child
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} not found")


def _start_and_wait_for_work(
    mpiexec: Path, workdir: Path, launcher_tmp: Path, ranks: int, n_events: int = 600
) -> subprocess.Popen[str]:
    """Start a run of a demo job with 20 ms events; return once some range has finished."""
    write_jobs(workdir, [demo_job(panda_id=71, n_events=n_events, sleep_per_event=0.02)])
    argv = [
        str(mpiexec),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "hpcpilot",
        "run",
        "--workdir",
        str(workdir),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=pilot_env({"TMPDIR": str(launcher_tmp)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not finished_ranges(_journal_so_far(workdir)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    return proc


def test_a_worker_that_gets_sigterm_hands_its_work_to_the_others(
    mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    proc = _start_and_wait_for_work(mpiexec, tmp_path, launcher_tmp, ranks=3)
    _rank_process(proc, 1).send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "rank 1 stopped on its own" in err
    done = Counter(rid for rid, _ in finished_ranges(journal(tmp_path)))
    assert len(done) == 60 and set(done.values()) == {1}  # everything, exactly once
    events = merged_events(tmp_path / "71" / "HITS.demo._000001.h5")
    assert np.array_equal(np.sort(events), np.arange(1, 601))


def test_the_run_ends_when_its_only_worker_stops(mpiexec: Path, tmp_path: Path, launcher_tmp: Path) -> None:
    proc = _start_and_wait_for_work(mpiexec, tmp_path, launcher_tmp, ranks=2)
    _rank_process(proc, 1).send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # no hang until the walltime
    assert proc.returncode == 3, err[-2000:]
    assert "every worker rank has stopped" in err
    s = summary(tmp_path)
    assert s["drained_by"] == "KILL_SIGNAL" and s["ranges"]["finished"] > 0
    assert s["ranges"]["finished"] + s["ranges"]["not_done"] == 60


@pytest.mark.parametrize("ranks", [1, 4])
def test_mixed_jobs_share_the_nodes(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, ranks: int) -> None:
    streaming = demo_job(panda_id=81, n_events=150, mode="streaming", sleep_per_event=0.001)
    per_range = demo_job(panda_id=82, n_events=100, mode="per_range", sleep_per_event=0)
    per_range["coreCount"] = 2  # two cores per payload: one slot per 2-core worker
    plain = [
        {
            "PandaID": 90 + i,
            "transformation": sys.executable,
            "jobPars": "-c \"open('o.txt', 'w').write('x')\"",
            "outFiles": "o.txt",
        }
        for i in range(3)
    ]
    write_jobs(tmp_path, [streaming, per_range, *plain])
    result = run_pilot(["run", "--workdir", str(tmp_path), "--set", "node.cores=2"], ranks=ranks)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(tmp_path)
    assert all(j["state"] == "finished" for j in s["jobs"]), s["jobs"]
    done = Counter(rid for rid, _ in finished_ranges(journal(tmp_path)))
    assert len(done) == 25 and set(done.values()) == {1}
    assert np.array_equal(np.sort(merged_events(tmp_path / "81" / "HITS.demo._000001.h5")), np.arange(1, 151))
    assert np.array_equal(np.sort(merged_events(tmp_path / "82" / "HITS.demo._000001.h5")), np.arange(1, 101))
    env_dump = (tmp_path / "82" / "logs").glob("*.err")
    assert any("=== range" in p.read_text() for p in env_dump)
