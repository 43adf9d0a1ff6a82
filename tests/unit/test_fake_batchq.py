"""The PBS and LSF plugins driving the fake queue of tests/fakes/batchq (real-format commands on PATH)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.batch.base import BatchSystem
from hpcpilot.batch.lsf import LsfBatchSystem
from hpcpilot.batch.pbs import PbsBatchSystem
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.runtime.commands import CommandResult, run_command
from tests.conftest import REPO
from tests.fakes.batchq import queue_environment

S = BatchJobState
DISCOVER = (
    "import dataclasses, json, os\n"
    "from hpcpilot.batch.select import discover_allocation\n"
    "from hpcpilot.config.schema import BatchSettings\n"
    "a = discover_allocation(BatchSettings(), os.environ)\n"
    "print(json.dumps(dataclasses.asdict(a)))\n"
)


@pytest.fixture
def queue_env(tmp_path: Path) -> dict[str, str]:
    return queue_environment(tmp_path / "queue", REPO)


def runner(env: dict[str, str]) -> Callable[[Sequence[str]], CommandResult]:
    def run(argv: Sequence[str]) -> CommandResult:
        return run_command(argv, timeout_s=30, env=env)

    return run


def script(tmp_path: Path, body: str) -> tuple[Path, Path]:
    workdir = tmp_path / "work dir"
    workdir.mkdir(exist_ok=True)
    path = tmp_path / "job.sh"
    path.write_text(f"#!/bin/sh\necho $$ > pid\n{body}\n")
    return path, workdir


def wait_for(
    batch: BatchSystem, job_id: str, states: set[BatchJobState], timeout: float = 20
) -> BatchJobState:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = batch.poll([job_id]).get(job_id)
        if seen in states:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}; last seen {seen}")


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def allocation(workdir: Path, timeout: float = 20) -> dict[str, Any]:
    path = workdir / "alloc.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        time.sleep(0.1)
    raise AssertionError(f"the job wrote no {path}")


# --- PBS ------------------------------------------------------------------------------------------


def test_pbs_submit_runs_in_the_workdir_and_finishes(tmp_path: Path, queue_env: dict[str, str]) -> None:
    queue_env["FAKE_BATCHQ_DELAY"] = "1.0"
    path, workdir = script(tmp_path, "pwd > where; sleep 0.5")
    pbs = PbsBatchSystem(runner(queue_env), {})
    job_id = pbs.submit(path, workdir)
    assert job_id == "1.fakepbs"
    assert pbs.poll([job_id]) == {job_id: S.SUBMITTED}
    assert wait_for(pbs, job_id, {S.RUNNING, S.FINISHED}) in {S.RUNNING, S.FINISHED}
    # finished jobs leave plain qstat; the plugin finds them in the history (qstat -x)
    assert wait_for(pbs, job_id, {S.FINISHED}) is S.FINISHED
    assert (workdir / "where").read_text().strip() == str(workdir)
    assert (workdir / "job.sh.o1").exists()
    assert pbs.poll(["1", "77.fakepbs"]) == {"1": S.FINISHED}


def test_pbs_options_and_odd_paths_reach_qsub(tmp_path: Path, queue_env: dict[str, str]) -> None:
    path, workdir = script(tmp_path, "echo $PBS_ACCOUNT $PBS_QUEUE > facts")
    odd = tmp_path / "it's $(odd) job.sh"
    path.rename(odd)
    pbs = PbsBatchSystem(runner(queue_env), {})
    job_id = pbs.submit(odd, workdir, ["-A", "proj 1", "-q", "debug"])
    assert wait_for(pbs, job_id, {S.FINISHED}) is S.FINISHED
    assert (workdir / "facts").read_text().split() == ["proj", "1", "debug"]


def test_pbs_cancel_kills_the_job(tmp_path: Path, queue_env: dict[str, str]) -> None:
    path, workdir = script(tmp_path, "sleep 60")
    pbs = PbsBatchSystem(runner(queue_env), {})
    job_id = pbs.submit(path, workdir)
    wait_for(pbs, job_id, {S.RUNNING})
    deadline = time.monotonic() + 10
    while not (workdir / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((workdir / "pid").read_text())
    pbs.cancel(job_id)
    assert gone(pid)
    assert pbs.poll([job_id]) == {job_id: S.FINISHED}  # PBS Pro: F, Exit_status 271


def test_pbs_discovery_inside_the_job(tmp_path: Path, queue_env: dict[str, str]) -> None:
    path, workdir = script(tmp_path, f"'{sys.executable}' -c '{DISCOVER}' > alloc.json")
    before = time.time()
    job_id = PbsBatchSystem(runner(queue_env), {}).submit(path, workdir)
    alloc = allocation(workdir)
    assert alloc["batch_system"] == "pbs"
    assert alloc["job_id"] == job_id
    assert alloc["nodes"] == ["n1", "n2"]
    assert alloc["cores_per_node"] == 4
    assert alloc["queue"] == "workq"
    assert before - 1 + 3600 <= alloc["end_time"] <= time.time() + 3600


# --- LSF ------------------------------------------------------------------------------------------


def test_lsf_submit_done_and_exit(tmp_path: Path, queue_env: dict[str, str]) -> None:
    lsf = LsfBatchSystem(runner(queue_env), {})
    good, workdir = script(tmp_path, "#BSUB -q debug\npwd > where")
    job_id = lsf.submit(good, workdir)
    assert job_id == "1"
    assert wait_for(lsf, job_id, {S.FINISHED}) is S.FINISHED
    assert (workdir / "where").read_text().strip() == str(workdir)
    bad = tmp_path / "bad.sh"
    bad.write_text("exit 3\n")
    bad_id = lsf.submit(bad, workdir)
    assert wait_for(lsf, bad_id, {S.FAILED}) is S.FAILED
    assert lsf.poll([job_id, bad_id, "999"]) == {job_id: S.FINISHED, bad_id: S.FAILED}


def test_lsf_options_reach_bsub(tmp_path: Path, queue_env: dict[str, str]) -> None:
    path, workdir = script(tmp_path, "echo $LSB_PROJECT_NAME $LSB_QUEUE > facts")
    lsf = LsfBatchSystem(runner(queue_env), {})
    job_id = lsf.submit(path, workdir, ["-P", "abc123", "-q", "debug"])
    assert wait_for(lsf, job_id, {S.FINISHED}) is S.FINISHED
    assert (workdir / "facts").read_text().split() == ["abc123", "debug"]


def test_lsf_cancel_kills_the_job(tmp_path: Path, queue_env: dict[str, str]) -> None:
    path, workdir = script(tmp_path, "sleep 60")
    lsf = LsfBatchSystem(runner(queue_env), {})
    job_id = lsf.submit(path, workdir)
    wait_for(lsf, job_id, {S.RUNNING})
    deadline = time.monotonic() + 10
    while not (workdir / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((workdir / "pid").read_text())
    lsf.cancel(job_id)
    assert gone(pid)
    assert lsf.poll([job_id]) == {job_id: S.FAILED}  # EXIT


def test_lsf_discovery_inside_the_job(tmp_path: Path, queue_env: dict[str, str]) -> None:
    queue_env["FAKE_BATCHQ_WALLTIME"] = "5400"
    path, workdir = script(tmp_path, f"'{sys.executable}' -c '{DISCOVER}' > alloc.json")
    before = time.time()
    job_id = LsfBatchSystem(runner(queue_env), {}).submit(path, workdir)
    alloc = allocation(workdir)
    assert alloc["batch_system"] == "lsf"
    assert alloc["job_id"] == job_id
    assert alloc["nodes"] == ["n1", "n2"]
    assert alloc["cores_per_node"] == 4
    assert (alloc["queue"], alloc["account"]) == ("normal", "default")
    # TIME_LEFT has minute precision
    assert before + 5400 - 61 <= alloc["end_time"] <= time.time() + 5400


def test_fake_refuses_unknown_ids(queue_env: dict[str, str]) -> None:
    run = runner(queue_env)
    assert PbsBatchSystem(run, {}).poll(["5.fakepbs"]) == {}
    assert LsfBatchSystem(run, {}).poll(["5"]) == {}
    result = run(["qdel", "5.fakepbs"])
    assert (result.returncode, result.stderr.strip()) == (153, "qdel: Unknown Job Id 5.fakepbs")
