"""Runs at world size 1 as ARC starts the pilot for aCT (``run.communicator=act``), read by the fake aCT.

The session directory is the work directory; ``act.output_url`` is a ``file://`` directory, so the fake
ARC's upload (``output.list``) and the fake validator's checks of size and adler32 are real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hpcpilot.demo.jobs import DEMO_LOG, DEMO_OUTPUT, demo_job
from tests.conftest import RunPilot
from tests.fakes.act import FakeAct, adler32_of

NO_MPI = {"HPCPILOT_NO_MPI": "1"}


def act_args(session: Path, storage: Path, *extra: str) -> list[str]:
    """``hpcpilot run`` as ARC starts it in the session directory."""
    return [
        "run",
        "--workdir",
        str(session),
        "--set",
        "run.communicator=act",
        "--set",
        f"act.output_url={storage.as_uri()}",
        "--set",
        "act.heartbeat_s=0.2",
        "--set",
        "run.status_mode=lines",
        *extra,
    ]


def plain_job(panda_id: int, script: str) -> dict[str, Any]:
    """A plain job that runs ``script`` with Python and names ``out.txt`` and a log tarball."""
    return {
        "PandaID": panda_id,
        "taskID": 42,
        "attemptNr": 1,
        "transformation": sys.executable,
        "jobPars": f'-c "{script}"',
        "coreCount": 1,
        "prodSourceLabel": "managed",
        "outFiles": f"out.txt,log.{panda_id}.tgz",
        "scopeOut": "mc23,mc23",
        "logFile": f"log.{panda_id}.tgz",
        "scopeLog": "mc23",
    }


def test_a_plain_job_is_validated_by_act(run_pilot: RunPilot, tmp_path: Path) -> None:
    session, storage = tmp_path / "session", tmp_path / "storage"
    act = FakeAct(session)
    act.submit(plain_job(901, "open('out.txt', 'w').write('x' * 5000)"))
    result = run_pilot(act_args(session, storage), env=NO_MPI)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = act.collect(result.returncode)
    assert outcome.violations == []
    assert outcome.panda_status == "finished" and outcome.update is not None
    assert outcome.update["state"] == "finished" and outcome.update["jobId"] == "901"
    xml = json.loads(act.heartbeat()["xml"])
    assert set(xml) == {"out.txt", "log.901.tgz"}
    assert xml["out.txt"]["fsize"] == 5000
    assert (storage / "out.txt").read_text() == "x" * 5000


def test_a_failed_job_exits_0_and_act_forwards_its_error(run_pilot: RunPilot, tmp_path: Path) -> None:
    session, storage = tmp_path / "session", tmp_path / "storage"
    act = FakeAct(session)
    act.submit(plain_job(902, "import sys; sys.exit(7)"))
    result = run_pilot(act_args(session, storage), env=NO_MPI)
    assert result.returncode == 0, result.stderr[-3000:]  # ARC must not see a failed batch job
    outcome = act.collect(result.returncode)
    assert outcome.violations == [] and outcome.update is not None
    assert outcome.update["state"] == "failed" and outcome.update["pilotErrorCode"] != 0
    assert outcome.update["transExitCode"] == 7
    assert set(json.loads(act.heartbeat()["xml"])) == {"log.902.tgz"}  # only the log is uploaded


def test_an_event_service_job_reports_its_merged_output(run_pilot: RunPilot, tmp_path: Path) -> None:
    session, storage = tmp_path / "session", tmp_path / "storage"
    act = FakeAct(session)
    act.submit(demo_job(panda_id=903, n_events=40, mode="per_range", sleep_per_event=0))
    result = run_pilot(act_args(session, storage, "--set", "act.events_per_range=10"), env=NO_MPI)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = act.collect(result.returncode)
    assert outcome.violations == [] and outcome.update is not None
    assert outcome.update["state"] == "finished" and outcome.update["nEvents"] == 40
    merged = session / "903" / DEMO_OUTPUT
    xml = json.loads(act.heartbeat()["xml"])
    assert set(xml) == {DEMO_OUTPUT, DEMO_LOG}
    assert xml[DEMO_OUTPUT]["adler32"] == adler32_of(merged) == adler32_of(storage / DEMO_OUTPUT)


def test_without_an_output_url_the_run_ends_before_it_starts(run_pilot: RunPilot, tmp_path: Path) -> None:
    session = tmp_path / "session"
    FakeAct(session).submit(plain_job(904, "pass"))
    args = ["run", "--workdir", str(session), "--set", "run.communicator=act"]
    result = run_pilot(args, env=NO_MPI)
    assert result.returncode == 2
    assert "act.output_url is required" in result.stderr
    assert not (session / "heartbeat.json").exists()
