"""hpcpilot on the real Slurm cluster: the packaged slurm.sh template over several nodes, discovery, plugin,
and a time limit that cuts the run without losing anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcpilot.batch.hostlist import expand_hostlist
from hpcpilot.batch.slurm import SlurmBatchSystem
from hpcpilot.demo.jobs import DEMO_OUTPUT, DEMO_PANDA_ID
from hpcpilot.model.allocation import BatchJobState
from tests.conftest import REPO, check_cut_by_the_end, journal, pilot_env, summary
from tests.slurm.conftest import Slurm

pytestmark = pytest.mark.slurm


def hpcpilot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpcpilot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env=pilot_env(env),
    )


def submit_pilot(slurm: Slurm, workdir: Path, nodes: int, walltime: str, env: dict[str, str]) -> str:
    """``hpcpilot submit`` of hpcpilot/launchers/slurm.sh (the job runs the venv's Python); the job id."""
    env = {"HPCPILOT_PYTHON": sys.executable, **env}
    args = ["--nodes", str(nodes), "--cores-per-node", "2", "--walltime", walltime, "--workdir", str(workdir)]
    result = hpcpilot("submit", *args, "--set", "batch.system=slurm", env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split("job ")[-1]
    slurm.submitted.append(job_id)
    return job_id


def job_output(workdir: Path, job_id: str) -> str:
    return "".join(p.read_text() for p in sorted(workdir.glob(f"hpcpilot-*.{job_id}.*")))


def test_the_template_runs_the_pilot_over_three_nodes(slurm: Slurm, tmp_path: Path) -> None:
    setup = hpcpilot("demo", "--workdir", str(tmp_path), "--events", "600", "--setup-only")
    assert setup.returncode == 0, setup.stderr
    job_id = submit_pilot(slurm, tmp_path, 3, "10m", {})
    state = slurm.wait(job_id, timeout=240)
    output = job_output(tmp_path, job_id)
    assert state == "COMPLETED", output[-3000:]
    assert f"slurm allocation {job_id}: 3 node(s)" in output  # discovered by rank 0, inside the job
    assert "hpcpilot launch: exec srun" in output
    s = summary(tmp_path)
    assert s["workers"] == 2 and [j["state"] for j in s["jobs"]] == ["finished"]
    assert s["ranges"]["finished"] == s["ranges"]["total"] == 60
    hosts = {r["rank"] for r in journal(tmp_path) if r["ev"] == "assigned"}
    assert hosts == {1, 2}  # both workers got work
    assert (tmp_path / str(DEMO_PANDA_ID) / DEMO_OUTPUT).is_file()


def test_allocation_discovery_inside_a_job(slurm: Slurm, tmp_path: Path) -> None:
    script = tmp_path / "discover.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"exec {sys.executable} -c 'import json, os; from hpcpilot.batch.select import discover_allocation; "
        "from hpcpilot.config.schema import BatchSettings; "
        "a = discover_allocation(BatchSettings(), os.environ); print(json.dumps(a.__dict__))' > alloc.json\n"
    )
    started = time.time()
    job_id = slurm.sbatch(
        script, tmp_path, "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=3", "--time=7"
    )
    assert slurm.wait(job_id, timeout=60) == "COMPLETED"
    found = json.loads((tmp_path / "alloc.json").read_text())
    info = slurm.job_info(job_id)
    assert found["batch_system"] == "slurm" and found["job_id"] == job_id
    assert found["nodes"] == list(expand_hostlist(info["NodeList"])) and len(found["nodes"]) == 2
    assert found["cores_per_node"] == 3 and found["queue"] == "debug"
    assert started + 7 * 60 - 30 < found["end_time"] < started + 7 * 60 + 30  # %e: start + limit


def test_submit_poll_cancel_through_the_plugin(slurm: Slurm, tmp_path: Path) -> None:
    script = tmp_path / "sleep.sh"
    script.write_text("#!/bin/bash\nsleep 300\n")
    plugin = SlurmBatchSystem()
    job_id = plugin.submit(script, tmp_path, ["--time=5", "--nodes=1"])
    slurm.submitted.append(job_id)
    assert plugin.poll([job_id])[job_id] in (BatchJobState.SUBMITTED, BatchJobState.RUNNING)
    plugin.cancel(job_id)
    deadline = time.monotonic() + 30
    while (state := plugin.poll([job_id]).get(job_id)) is not BatchJobState.CANCELLED:
        assert time.monotonic() < deadline, f"still {state}"
        time.sleep(0.5)
    assert slurm.job_info(job_id)["JobState"] == "CANCELLED"


def test_a_short_time_limit_cuts_the_run_and_loses_nothing(slurm: Slurm, tmp_path: Path) -> None:
    """A one-minute job whose work would take much longer: the pilot drains and exits before Slurm's
    limit, every range that finished is reported with its output, the rest is returned."""
    setup = hpcpilot(
        "demo", "--workdir", str(tmp_path), "--events", "20000", "--sleep-per-event", "0.2", "--setup-only"
    )
    assert setup.returncode == 0, setup.stderr
    env = {"HPCPILOT_BATCH__EXIT_MARGIN_S": "15", "HPCPILOT_PAYLOAD__KILL_GRACE_S": "2"}
    job_id = submit_pilot(slurm, tmp_path, 2, "1m", env)
    state = slurm.wait(job_id, timeout=150)
    output = job_output(tmp_path, job_id)
    assert state == "COMPLETED", output[-3000:]  # the pilot ended first: not TIMEOUT
    assert "no more work fits, draining" in output
    check_cut_by_the_end(tmp_path, DEMO_PANDA_ID, DEMO_OUTPUT)
