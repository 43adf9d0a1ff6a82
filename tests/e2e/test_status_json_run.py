"""``hpcpilot status`` / ``report`` (text and ``--json``) on real runs at world size 1.

A finished run: the documents follow the published schemas and the journal's counts, and ``status``
shows the rate the summary printed (it showed 0.00 or another figure before: issue 15). A run killed
mid-way: its documents parse and follow the schemas too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.cli import main
from hpcpilot.demo.jobs import demo_job
from hpcpilot.monitor.statusjson import report_schema, status_schema
from tests.conftest import REPO, RunPilot, journal, pilot_env, summary, write_jobs
from tests.schema_check import problems

NO_MPI = {"HPCPILOT_NO_MPI": "1"}


def inspect(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def documents(workdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    status = json.loads(inspect(["status", str(workdir), "--json"], capsys))
    report = json.loads(inspect(["report", str(workdir), "--json"], capsys))
    assert problems(status, status_schema()) == []
    assert problems(report, report_schema()) == []
    return status, report


def test_a_finished_run(run_pilot: RunPilot, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = demo_job(panda_id=71, n_events=120, mode="per_range", sleep_per_event=0.002, fail_events=[55])
    write_jobs(tmp_path, [job])
    args = [
        "run",
        "--workdir",
        str(tmp_path),
        "--set",
        "node.cores=2",
        "--set",
        "eventservice.max_attempts=2",
    ]
    result = run_pilot(args, env=NO_MPI)
    assert result.returncode == 0, result.stderr[-3000:]  # one range is fatal, the job finished
    books = summary(tmp_path)
    final = books["ranges"]["finished"] + books["ranges"]["fatal"]
    assert final == 12 and books["ranges"]["fatal"] == 1
    rate = final / books["wall_s"]  # the summary's rule: ranges final over the run's wall time

    # the summary printed it, and `hpcpilot status` of the finished run shows the same
    assert f"rate           : {rate:.2f} ranges/s" in result.stdout
    text = inspect(["status", str(tmp_path)], capsys)
    shown = re.search(r"^rate     : ([0-9.]+) ranges/s", text, re.M)
    assert shown is not None and shown.group(1) == f"{rate:.2f}", text

    # one JSON document on stdout, as a monitor plugin reads it
    done = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "status", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        env=pilot_env(),
        cwd=REPO,
        check=True,
        timeout=120,
    )
    status = json.loads(done.stdout)
    assert problems(status, status_schema()) == []
    assert status["rate"] == {"ranges_per_s": rate, "over": "run", "window_s": None, "source": "summary"}
    assert books["ranges_per_s"] == rate
    assert status["state"] == "ended" and status["eta_s"] is None and status["journal"]["ended"] is True

    records = journal(tmp_path)
    finished = sum(len(r["ids"]) for r in records if r["ev"] == "finished")
    failed = sum(1 for r in records if r["ev"] == "failed")
    counts = {"total": 12, "finished": finished, "fatal": 1, "failed_attempts": failed}
    assert status["ranges"] == counts and failed == 2
    assert status["run"]["pid"] == records[0]["pid"] and status["run"]["ranks"] == 1
    assert [(j["panda_id"], j["state"]) for j in status["jobs"]] == [(71, "finished")]
    (worker,) = status["workers"]
    assert worker["rank"] == 0 and worker["ranges_finished"] == finished and worker["sample_t"] is not None

    _, report = documents(tmp_path, capsys)
    assert report["ranges"] == counts and report["journal"]["records"] == len(records)
    assert report["run"]["ranges_per_s"] == rate and report["run"]["wall_s"] == books["wall_s"]
    (row,) = report["jobs"]
    assert (row["finished"], row["fatal"], row["total"], row["cpu_s"]) == (
        finished,
        1,
        12,
        books["jobs"][0]["cpu_s"],
    )
    assert row["events"] == sum(n for r in records if r["ev"] == "finished" for n in r["nevents"])
    (node,) = report["nodes"]
    assert (node["rank"], node["finished"], node["failures"]) == (0, finished, 2)
    (failure,) = report["failures"]
    assert failure["count"] == 2
    # the text is written from the same view
    tables = inspect(["report", str(tmp_path)], capsys)
    (line,) = [line.split() for line in tables.splitlines() if line.startswith("71 ")]
    assert line[:7] == ["71", "finished", str(row["code"]), str(finished), "1", "12", str(row["events"])]
    assert f"{rate:.2f} ranges/s" in tables


def test_a_run_killed_mid_way(tmp_path: Path, launcher_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = demo_job(panda_id=72, n_events=400, mode="per_range", sleep_per_event=0.05)
    write_jobs(tmp_path, [job])
    argv = [sys.executable, "-m", "hpcpilot", "run", "--workdir", str(tmp_path), "--set", "node.cores=2"]
    run = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=pilot_env({"TMPDIR": str(launcher_tmp), **NO_MPI}),
        cwd=REPO,
        start_new_session=True,  # its own process group: the only one this test may end
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            path = tmp_path / "journal.jsonl"
            if path.exists() and any(r["ev"] == "finished" for r in journal(tmp_path)):
                break
            assert run.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        going, _ = documents(tmp_path, capsys)
        assert going["state"] == "running" and going["rate"]["over"] == "window"
        assert 0 < going["ranges"]["finished"] < 40
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    status, report = documents(tmp_path, capsys)
    assert status["state"] == "dead" and status["journal"]["ended"] is False
    assert status["rate"]["over"] == "window" and status["rate"]["source"] == "journal"
    assert 0 < status["ranges"]["finished"] < 40 and status["ranges"]["total"] <= 40
    assert report["run"] is None and report["journal"]["ended"] is False  # no summary.json
    assert report["jobs"][0]["panda_id"] == 72 and report["jobs"][0]["state"] in ("starting", "running")
    assert "dead" in inspect(["status", str(tmp_path)], capsys).splitlines()[0]
