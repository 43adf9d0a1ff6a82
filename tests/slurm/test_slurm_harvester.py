"""Issue 14, 1b on the real Slurm cluster: a OneToOne worker whose job spec Harvester wrote under a site's
``jobSpecFile`` (``pandaJobData.out``), the batch script being ``launchers/slurm.sh`` rendered with
Harvester's values (``hpcpilot submit``), the access point polled by the fake Harvester.

Without Harvester's configuration the job fails 1008 where Harvester reads it and the batch job ends at
once (it used to hold both nodes for ``harvester.job_wait_s``); with ``HPCPILOT_HARVESTER_CONFIG`` in the
job's environment the template passes the configuration on and the job runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, pilot_env
from tests.fakes.harvester import FakeHarvester, HarvesterFiles
from tests.slurm.conftest import Slurm

pytestmark = pytest.mark.slurm
PID = 7001


def plain_job() -> dict[str, Any]:
    return {
        "PandaID": PID,
        "taskID": 77,
        "jobsetID": 5,
        "attemptNr": 1,
        "prodSourceLabel": "managed",
        "transformation": sys.executable,
        "jobPars": "-c \"open('out.txt', 'w').write('done')\"",
        "coreCount": 1,
        "outFiles": f"out.txt,log.{PID}.tgz",
        "logFile": f"log.{PID}.tgz",
        "logGUID": f"1a2b3c4d-0000-0000-0000-{PID:012d}",
    }


def submit(slurm: Slurm, fake: FakeHarvester, env: dict[str, str]) -> str:
    """``hpcpilot submit`` of launchers/slurm.sh for the fake's access point; the job id."""
    env = {
        "HPCPILOT_PYTHON": sys.executable,
        "HPCPILOT_RUN__COMMUNICATOR": "harvester",
        "HPCPILOT_RUN__STATUS_MODE": "lines",
        "HPCPILOT_HARVESTER__POLL_S": "0.2",
        "HPCPILOT_HARVESTER__HEARTBEAT_S": "1",
        "HPCPILOT_HARVESTER__JOB_WAIT_S": "3600",  # far beyond the test's patience
        **env,
    }
    args = ["--nodes", "2", "--cores-per-node", "2", "--walltime", "10m", "--workdir", str(fake.access_point)]
    result = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "submit", *args, "--set", "batch.system=slurm"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env=pilot_env(env),
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split("job ")[-1]
    slurm.submitted.append(job_id)
    return job_id


def output(fake: FakeHarvester, job_id: str) -> str:
    text = "".join(p.read_text() for p in sorted(fake.access_point.glob(f"hpcpilot-*.{job_id}.*")))
    return f"{fake.summary()}\n--- batch job output (tail) ---\n{text[-3000:]}"


@pytest.mark.parametrize("told", [False, True], ids=["not-told", "HPCPILOT_HARVESTER_CONFIG"])
def test_one_to_one_worker_with_a_sites_job_spec_file(slurm: Slurm, tmp_path: Path, told: bool) -> None:
    files = HarvesterFiles(jobSpecFile="pandaJobData.out")
    with FakeHarvester(tmp_path / "ap", [plain_job()], files=files, write_config=True, period_s=0.5) as fake:
        env = {"HPCPILOT_HARVESTER_CONFIG": str(fake.config_path)} if told else {}
        job_id = submit(slurm, fake, env)
        state = slurm.wait(job_id, timeout=240)  # the walltime is 10 min, job_wait_s one hour
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), output(fake, job_id)
    assert fake.violations == [], output(fake, job_id)
    final = fake.final_attributes(PID)
    assert final is not None, output(fake, job_id)
    assert fake.misplaced_reports() == []
    if told:
        assert state == "COMPLETED", output(fake, job_id)
        assert final["jobStatus"] == "finished"
        assert (fake.access_point / str(PID) / "out.txt").read_text() == "done"
    else:
        assert state == "FAILED", output(fake, job_id)  # the pilot's exit code 3: a job failed
        assert final["jobStatus"] == "failed" and final["pilotErrorCode"] == 1008
        assert "pandaJobData.out" in final["pilotErrorDiag"]
