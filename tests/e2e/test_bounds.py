"""Numeric bounds and credentials in whole runs: absurd job numbers fail their job alone (1008), a job
larger than a node gets the whole node, utilisation never exceeds 100 %, a token never goes over http."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot, summary, write_jobs

NO_MPI = {"HPCPILOT_NO_MPI": "1"}


def test_a_job_asking_for_a_million_cores_fails_alone_and_utilisation_stays_under_100(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    million = demo_job(panda_id=31, n_events=20, sleep_per_event=0)
    million["coreCount"] = 1000000  # the reproduction: it ran and printed 14855872.3 %
    larger_es = demo_job(panda_id=32, n_events=40, sleep_per_event=0.01)
    larger_es["coreCount"] = 8  # more than the node's 2 cores, within the bound: the whole node
    larger_plain = {
        "PandaID": 33,
        "transformation": "/bin/sh",
        "jobPars": "-c 'echo $ATHENA_CORE_NUMBER $OMP_NUM_THREADS > cores.txt; sleep 0.5'",
        "coreCount": "8",
    }
    write_jobs(tmp_path, [million, larger_es, larger_plain])
    result = run_pilot(["run", "--workdir", str(tmp_path), "--set", "node.cores=2"], env=NO_MPI)
    assert result.returncode == 3, result.stderr  # one job failed, the run did not
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["31"]["jobStatus"] == "failed" and results["31"]["pilotErrorCode"] == 1008
    assert "'coreCount'" in results["31"]["pilotErrorDiag"]
    assert results["32"]["jobStatus"] == "finished" and results["32"]["nEvents"] == 40
    assert results["33"]["jobStatus"] == "finished"
    assert (tmp_path / "33" / "cores.txt").read_text().split() == ["2", "2"]  # the cores it holds
    assert "asks for 8 cores" in result.stderr and "whole node" in result.stderr
    s = summary(tmp_path)
    assert s["cores"] == 2 and 0 < s["utilisation"] <= 1.0
    assert s["busy_core_s"] <= s["cores"] * s["wall_s"]
    [shown] = re.findall(r"utilisation\s*:\s*([0-9.]+) %", result.stdout)
    assert float(shown) <= 100.0


def test_an_absurd_panda_id_or_event_count_is_refused_naming_the_field(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    good = {"PandaID": 41, "transformation": sys.executable, "jobPars": "-c pass"}
    huge_id = {"PandaID": 10**30, "transformation": sys.executable, "jobPars": "-c pass"}
    many_events = demo_job(panda_id=43, n_events=20, sleep_per_event=0)
    many_events["nEventsPerInputFile"] = 10**12  # was accepted: 10**11 ranges to cut and run
    write_jobs(tmp_path, [good, huge_id, many_events])
    result = run_pilot(["run", "--workdir", str(tmp_path)], env=NO_MPI, timeout=90)
    assert result.returncode == 3, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["41"]["jobStatus"] == "finished"
    assert results["43"]["jobStatus"] == "failed" and results["43"]["pilotErrorCode"] == 1008
    assert "'nEventsPerInputFile'" in results["43"]["pilotErrorDiag"]
    # a PandaID PanDA cannot hold names no job: refused (logged, naming the field), run nowhere
    assert str(10**30) not in results and not (tmp_path / str(10**30)).exists()
    assert "job field 'PandaID' must be <= 99999999999" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_over_plain_http_stops_the_run_at_its_start(run_pilot: RunPilot, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t")
    token.chmod(0o600)
    args = [
        "run",
        "--workdir",
        str(tmp_path),
        "--set",
        "run.communicator=panda",
        "--set",
        "panda.url=http://127.0.0.1:9",
        "--set",
        "panda.site_name=TEST_QUEUE",
        "--set",
        f"panda.token_file={token}",
    ]
    refused = run_pilot(args, env=NO_MPI)
    assert refused.returncode == 2, refused.stderr
    assert "http://127.0.0.1:9" in refused.stderr and "panda.allow_insecure_token" in refused.stderr
    assert "s3cr3t" not in refused.stderr + refused.stdout and "Traceback" not in refused.stderr
