"""A worker rank killed mid-flight under Open MPI with ULFM (``mpiexec --with-ft ulfm``), at 4 ranks.

The run finishes on the other ranks, and its merged output equals that of an undisturbed run.

Needs the Open MPI virtualenv beside the project's (``make ompi-venv``: ``.venv-ompi``, or the one
named by ``HPCPILOT_OMPI_VENV``); skipped without it on a developer's machine, a failure in CI.
"""

from __future__ import annotations

import json
import os
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

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.demo.jobs import demo_job
from hpcpilot.runtime.journal import plain
from tests.conftest import REPO, finished_ranges, journal, need, pilot_env, summary, write_jobs

pytestmark = pytest.mark.mpi

VICTIM = 2
N_RANGES = 30


@pytest.fixture(scope="module")
def ompi_venv() -> Path:
    """The Open MPI virtualenv (``make ompi-venv``)."""
    venv = Path(os.environ.get("HPCPILOT_OMPI_VENV", REPO / ".venv-ompi"))
    need((venv / "bin" / "mpiexec").exists(), f"the Open MPI virtualenv {venv} (make ompi-venv)")
    return venv


def finished_count(workdir: Path) -> int:
    """Ranges the journal records as finished so far (its last line may be torn)."""
    path = workdir / "journal.jsonl"
    count = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = plain(json.loads(line))
        except ValueError:
            continue
        if record.get("ev") == "finished":
            count += len(record["ids"])
    return count


def rank_process(mpiexec: psutil.Process, rank: int) -> psutil.Process | None:
    """The pilot process of one MPI rank under ``mpiexec``."""
    for proc in mpiexec.children(recursive=True):
        try:
            if proc.environ().get("OMPI_COMM_WORLD_RANK") == str(rank) and "hpcpilot" in proc.cmdline():
                return proc
        except psutil.Error:
            continue
    return None


def undisturbed(workdir: Path, job: dict[str, object]) -> str:
    """The adler32 of the merged output of the same job run in one process, undisturbed."""
    write_jobs(workdir, [job])
    argv = [sys.executable, "-m", "hpcpilot", "run", "--workdir", str(workdir), "--set", "node.cores=2"]
    env = pilot_env({"HPCPILOT_NO_MPI": "1"})
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=REPO, timeout=180)
    return adler32_of_file(workdir / "61" / "HITS.demo._000001.h5")


def test_a_killed_worker_rank_s_ranges_finish_on_the_others(ompi_venv: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    job = demo_job(panda_id=61, n_events=10 * N_RANGES, mode="per_range", sleep_per_event=0.02)
    write_jobs(workdir, [job])
    argv = [str(ompi_venv / "bin" / "mpiexec"), "--with-ft", "ulfm", "-n", "4"]
    argv += [str(ompi_venv / "bin" / "python"), "-m", "hpcpilot", "run", "--workdir", str(workdir)]
    argv += ["--set", "node.cores=2", "--set", "parallel.journal_flush_s=0.05"]
    env = pilot_env({"PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe", "TMPDIR": str(tmp_path)})
    with (tmp_path / "out.txt").open("w") as out:
        launcher = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
    orphans: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while finished_count(workdir) < 5 and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = rank_process(psutil.Process(launcher.pid), VICTIM)
        assert victim is not None and finished_count(workdir) < N_RANGES, "no rank to kill mid-flight"
        orphans = victim.children(recursive=True)  # its payloads, in sessions of their own
        victim.send_signal(signal.SIGKILL)
        returncode = launcher.wait(timeout=180)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        for proc in orphans:  # started by the killed rank, so by this test: end them if they outlive it
            if proc.is_running():
                proc.kill()
    output = (tmp_path / "out.txt").read_text()
    assert returncode == 0, output[-3000:]

    records = journal(workdir)
    [lost] = [r for r in records if r["ev"] == "lost"]
    assert lost["rank"] == VICTIM and "PROC_FAILED" in lost["why"]
    taken_back = [r for r in records if r["ev"] == "failed"]
    assert taken_back and all(r["code"] == 1200 for r in taken_back)  # it had ranges in flight
    finished = finished_ranges(records)
    assert Counter(rid for rid, _ in finished) == Counter({rid: 1 for rid, _ in finished})
    assert len(finished) == N_RANGES
    after = records[records.index(lost) :]
    assert all(r["rank"] != VICTIM for r in after if r["ev"] in ("assigned", "finished"))
    adlers = {
        rid: a
        for r in records
        if r["ev"] == "finished"
        for rid, a in zip(r["ids"], r["adler32"], strict=True)
    }
    assert all(adler32_of_file(Path(path)) == adlers[rid] for rid, path in finished if path)
    with h5py.File(workdir / "61" / "HITS.demo._000001.h5") as f:
        events = np.sort(np.asarray(f["events"]["event_number"]))
    assert np.array_equal(events, np.arange(1, 10 * N_RANGES + 1))
    reference = undisturbed(tmp_path / "reference", job)
    assert adler32_of_file(workdir / "61" / "HITS.demo._000001.h5") == reference
    s = summary(workdir)
    assert s["lost_ranks"] == [VICTIM] and s["jobs"][0]["state"] == "finished"
    assert s["ranges"]["finished"] == N_RANGES and s["ranges"]["failed_attempts"] == len(taken_back)
    assert f"worker rank {VICTIM} (" in output and "lost" in output  # rank 0's log names it
    rank0_log = (workdir / "logs" / "rank-0000.log").read_text()
    assert f"worker rank {VICTIM}" in rank0_log
