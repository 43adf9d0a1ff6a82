"""Runs under ``mpiexec -n 2`` as ARC starts the pilot for aCT (``run.communicator=act``).

The same checks as ``tests/e2e/test_act_run.py``, with rank 0 coordinating and rank 1 running the
payloads: the fake aCT (``tests/fakes/act.py``) uploads what ``output.list`` names and validates
``heartbeat.json`` as aCT's validator does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcpilot.demo.jobs import DEMO_LOG, DEMO_OUTPUT, demo_job
from tests.conftest import RunPilot
from tests.e2e.test_act_run import act_args, plain_job
from tests.fakes.act import FakeAct, adler32_of

pytestmark = pytest.mark.mpi
RANKS = 2


def test_a_plain_job(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    session, storage = tmp_path / "session", tmp_path / "storage"
    act = FakeAct(session)
    act.submit(plain_job(911, "open('out.txt', 'w').write('y' * 777)"), fmt="json")
    result = run_pilot(act_args(session, storage), ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = act.collect(result.returncode)
    assert outcome.violations == [] and outcome.update is not None
    assert outcome.panda_status == "finished" and outcome.update["state"] == "finished"
    assert (storage / "out.txt").read_text() == "y" * 777
    assert json.loads(act.heartbeat()["xml"])["out.txt"]["surl"] == f"{storage.as_uri()}/out.txt"


def test_an_event_service_job(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    session, storage = tmp_path / "session", tmp_path / "storage"
    act = FakeAct(session)
    act.submit(demo_job(panda_id=913, n_events=60, mode="per_range", sleep_per_event=0))
    result = run_pilot(act_args(session, storage, "--set", "act.events_per_range=10"), ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = act.collect(result.returncode)
    assert outcome.violations == [] and outcome.update is not None
    assert outcome.update["state"] == "finished" and outcome.update["nEvents"] == 60
    assert "finished=6 " in outcome.update["jobMetrics"]
    merged = session / "913" / DEMO_OUTPUT
    xml = json.loads(act.heartbeat()["xml"])
    assert set(xml) == {DEMO_OUTPUT, DEMO_LOG}
    assert xml[DEMO_OUTPUT]["fsize"] == merged.stat().st_size
    assert adler32_of(storage / DEMO_OUTPUT) == adler32_of(merged)
