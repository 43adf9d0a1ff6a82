"""The saga batch system against real radical.saga: its ``fork://localhost`` job service.

The fake module of ``test_batch_select.py`` pins the plugin's calls; this one checks that those calls are
the ones radical.saga really has: a pilot script submitted, polled to its end and its output read back,
and a second one cancelled while it runs (and its process gone).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcpilot.batch.saga import SagaBatchSystem
from hpcpilot.batch.select import make_batch_system
from hpcpilot.config.schema import BatchSettings
from hpcpilot.model.allocation import BatchJobState
from tests.conftest import REPO, need
from tests.fakes.batchq import Replay

S = BatchJobState
DEADLINE_S = 120.0


@pytest.fixture
def saga(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SagaBatchSystem]:
    monkeypatch.setenv("RADICAL_LOG_TGT", "null")  # radical.utils logs into files in the current directory
    monkeypatch.chdir(tmp_path)
    need(importlib.util.find_spec("radical.saga") is not None, "radical.saga (the dev extra)")
    system = make_batch_system(BatchSettings(system="saga", saga_url="fork://localhost"), {}, Replay())
    assert isinstance(system, SagaBatchSystem)
    yield system
    system.close()


def _wait_for(saga: SagaBatchSystem, job_id: str, states: set[BatchJobState]) -> BatchJobState:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        state = saga.poll([job_id]).get(job_id)
        if state in states:
            return state
        time.sleep(0.2)
    pytest.fail(f"{job_id} did not reach {sorted(s.value for s in states)} in {DEADLINE_S:.0f} s")


def test_a_pilot_script_runs_through_the_fork_job_service(saga: SagaBatchSystem, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    python = sys.executable
    script = tmp_path / "pilot.sh"
    script.write_text(
        "set -e\n"
        f"export PYTHONPATH={REPO}\n"
        f"{python} -m hpcpilot demo --workdir {work} --setup-only --events 40 --sleep-per-event 0\n"
        f"{python} -m hpcpilot run --workdir {work}\n"
    )
    job_id = saga.submit(script, tmp_path)
    assert job_id.startswith("[fork://localhost]-[")
    assert _wait_for(saga, job_id, {S.FINISHED, S.FAILED, S.CANCELLED}) is S.FINISHED, (
        tmp_path / "hpcpilot-batch.err"
    ).read_text()
    summary = (work / "summary.json").read_text()
    assert '"finished"' in summary
    assert saga.poll(["[fork://localhost]-[999999999]"]) == {}  # a job the service never had


def test_a_running_script_is_cancelled(saga: SagaBatchSystem, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "sleeper.sh"
    script.write_text(f"echo $$ > {pid_file}\nexec sleep 300\n")
    job_id = saga.submit(script, tmp_path)
    assert _wait_for(saga, job_id, {S.RUNNING, S.FINISHED, S.FAILED}) is S.RUNNING
    deadline = time.monotonic() + DEADLINE_S
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    saga.cancel(job_id)
    assert _wait_for(saga, job_id, {S.CANCELLED, S.FAILED, S.FINISHED}) is S.CANCELLED
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} of the cancelled job still runs"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"
