"""The command line as a user meets it: config, plugins, bad input, and runs without MPI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

from hpcpilot.demo.jobs import demo_job
from tests.conftest import REPO, RunPilot, finished_ranges, journal, summary, write_jobs

NO_MPI = {"HPCPILOT_NO_MPI": "1"}


def test_config_show_names_each_layer(run_pilot: RunPilot, tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("eventservice:\n  max_attempts: 5\n")
    result = run_pilot(
        ["config", "show", "--site", "local", "--set", "parallel.batch_size=8"],
        env={"HPCPILOT_CONFIG": str(user), "HPCPILOT_NODE__CORES": "3"},
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split("=")[0].strip(): line for line in result.stdout.splitlines() if "=" in line}
    assert "[cli:--set parallel.batch_size]" in lines["parallel.batch_size"]
    assert "5" in lines["eventservice.max_attempts"] and "user:" in lines["eventservice.max_attempts"]
    assert "env:HPCPILOT_NODE__CORES" in lines["node.cores"]
    assert "site:" in lines["payload.kill_grace_s"] and "local.yaml" in lines["payload.kill_grace_s"]
    assert "[default]" in lines["run.max_jobs"]


def test_config_errors_are_clear_and_exit_2(run_pilot: RunPilot, tmp_path: Path) -> None:
    result = run_pilot(["run", "--workdir", str(tmp_path), "--set", "eventservice.max_atempts=3"], env=NO_MPI)
    assert result.returncode == 2
    assert "max_atempts" in result.stderr and "did you mean" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_pilot(["run", "--workdir", str(tmp_path / "nope")], env=NO_MPI)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_config_check_all_site_configs(run_pilot: RunPilot, tmp_path: Path) -> None:
    files = sorted(str(p) for p in (REPO / "hpcpilot" / "site_configs").glob("*.yaml"))
    assert files
    result = run_pilot(["config", "check", *files])
    assert result.returncode == 0, result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("node:\n  corez: 4\n")
    result = run_pilot(["config", "check", str(bad)])
    assert result.returncode == 2 and "corez" in result.stdout and "bad.yaml" in result.stdout
    typo = tmp_path / "typo.yaml"
    typo.write_text("environment:\n  chain: modules,apptainr\ndata:\n  stageout_tools: xrdcp\n")
    result = run_pilot(["config", "check", str(typo)])
    assert result.returncode == 2
    assert "environment.chain: no environments plugin named 'apptainr'" in result.stdout
    assert "stageout_tools" not in result.stdout  # xrdcp is a known copytool


def test_there_is_a_site_config_for_each_supported_machine() -> None:
    names = {p.stem for p in (REPO / "hpcpilot" / "site_configs").glob("*.yaml")}
    assert {"local", "perlmutter", "frontier", "aurora", "polaris", "summit", "slurm-generic"} <= names


def test_plugins_lists_every_family(run_pilot: RunPilot) -> None:
    result = run_pilot(["plugins"])
    assert result.returncode == 0, result.stdout
    for needle in (
        "communicators / local",
        "payloads / per_range",
        "payloads / streaming",
        "payloads / plain",
        "payloads / sleep",
        "mergers / hdf5",
        "environments / modules",
        "environments / apptainer",
        "environments / podman-hpc",
        "copytools / xrdcp",
        "copytools / rucio",
    ):
        assert needle in result.stdout


def test_missing_job_file_is_a_clear_error(run_pilot: RunPilot, tmp_path: Path) -> None:
    result = run_pilot(["run", "--workdir", str(tmp_path)], env=NO_MPI, timeout=60)
    assert result.returncode == 2
    assert "cannot read HPCJobs.json" in result.stderr and "Traceback" not in result.stderr


def test_demo_without_mpi_merges_every_event_once(run_pilot: RunPilot, tmp_path: Path) -> None:
    result = run_pilot(
        ["demo", "--workdir", str(tmp_path), "--events", "120", "--sleep-per-event", "0"],
        env=NO_MPI,
    )
    assert result.returncode == 0, result.stderr
    assert "hpcpilot summary" in result.stdout and "adler32" in result.stdout
    s = summary(tmp_path)
    assert s["workers"] == 1 and s["ranges"]["finished"] == 12
    [job] = s["jobs"]
    merged = Path(job["outputs"][0]["path"])
    with h5py.File(merged) as f:
        events = f["events"]["event_number"]
        assert sorted(events.tolist()) == list(range(1, 121))
        assert len(f["ranges"]) == 12
    rerun = run_pilot(["demo", "--workdir", str(tmp_path)], env=NO_MPI)
    assert rerun.returncode == 2 and "--force" in rerun.stderr


def test_bad_job_fails_alone(run_pilot: RunPilot, tmp_path: Path) -> None:
    good = demo_job(panda_id=11, n_events=20, sleep_per_event=0)
    bad = {"PandaID": 12, "transformation": sys.executable, "coreCount": "lots"}
    no_events = {
        "PandaID": 13,
        "transformation": sys.executable,
        "eventService": "True",
        "outFiles": "x.h5",
    }
    no_command = {"PandaID": 14, "eventService": "True", "nEventsPerInputFile": 20, "outFiles": "y.h5"}
    write_jobs(tmp_path, [good, bad, no_events, no_command])
    result = run_pilot(["run", "--workdir", str(tmp_path)], env=NO_MPI)
    assert result.returncode == 3, result.stderr  # some job failed, the run itself did not
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["11"]["jobStatus"] == "finished" and results["11"]["nEvents"] == 20
    assert results["12"]["jobStatus"] == "failed" and results["12"]["pilotErrorCode"] == 1008
    assert "coreCount" in results["12"]["pilotErrorDiag"]
    assert results["13"]["jobStatus"] == "failed" and results["13"]["pilotErrorCode"] == 1238
    # a payload that cannot be set up fails each range (1110) until they are fatal: the job fails 1228
    assert results["14"]["jobStatus"] == "failed" and results["14"]["pilotErrorCode"] == 1228
    failures = [r for r in journal(tmp_path) if r["ev"] == "failed" and r["job"] == 14]
    assert failures and {r["code"] for r in failures} == {1110}
    assert "Traceback" not in result.stderr


def test_range_feed_file_is_used(run_pilot: RunPilot, tmp_path: Path) -> None:
    job = demo_job(panda_id=21, n_events=1000, sleep_per_event=0)
    write_jobs(tmp_path, [job])
    feed = [
        {
            "eventRangeID": f"42-21-1-{i}-1",
            "startEvent": 5 * i + 1,
            "lastEvent": 5 * i + 5,
            "LFN": "",
            "GUID": "",
            "scope": "",
        }
        for i in range(3)
    ]
    feed.append({"eventRangeID": "42-21-1-9-1", "startEvent": "bad", "lastEvent": 1})
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({"21": feed}))
    result = run_pilot(["run", "--workdir", str(tmp_path)], env=NO_MPI)
    assert result.returncode == 0, result.stderr
    assert "malformed event range" in result.stderr and "startEvent" in result.stderr
    finished = sorted(rid for rid, _ in finished_ranges(journal(tmp_path)))
    assert finished == ["42-21-1-0-1", "42-21-1-1-1", "42-21-1-2-1"]
    with h5py.File(tmp_path / "21" / "HITS.demo._000001.h5") as f:
        assert np.array_equal(np.sort(f["events"]["event_number"]), np.arange(1, 16))


def test_run_without_a_launcher_uses_a_singleton_mpi_world(run_pilot: RunPilot, tmp_path: Path) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=61, n_events=30, sleep_per_event=0)])
    result = run_pilot(["run", "--workdir", str(tmp_path)])  # mpi4py imported, no mpiexec
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hpcpilot on 1 rank(s)" in result.stderr
    assert summary(tmp_path)["ranges"]["finished"] == 3


def test_a_failed_merge_fails_its_job_and_keeps_the_range_outputs(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=71, n_events=30, sleep_per_event=0)])
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(tmp_path),
            "--set",
            "eventservice.merger=tests.plugins.failing_merger:FailingMerger",
        ],
        env=NO_MPI,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    [job] = summary(tmp_path)["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1305
    assert "merge failed" in job["error_diag"] and "injected failure" in job["error_diag"]
    assert job["range_outputs"]["count"] == 3  # the per-range outputs are still there
    assert all(Path(str(p)).is_file() for _, p in finished_ranges(journal(tmp_path)))


def test_communicator_settings_are_checked_before_the_run(run_pilot: RunPilot, tmp_path: Path) -> None:
    panda = run_pilot(["run", "--workdir", str(tmp_path), "--set", "run.communicator=panda"], env=NO_MPI)
    assert panda.returncode == 2 and "panda.url is not set" in panda.stderr
    assert "Traceback" not in panda.stderr
    cfg = tmp_path / "harvester.cfg"
    cfg.write_text("[payload_interaction]\njobSpecFile = ../escape.json\n")
    harvester = run_pilot(
        [
            "run",
            "--workdir",
            str(tmp_path),
            "--set",
            "run.communicator=harvester",
            "--harvester-config",
            str(cfg),
        ]
    )
    assert harvester.returncode == 2 and "jobSpecFile must be a plain file name" in harvester.stderr
    unknown = run_pilot(["run", "--workdir", str(tmp_path), "--set", "run.communicator=harvestr"])
    assert unknown.returncode == 2 and "harvestr" in unknown.stderr


def test_range_fields_never_reach_a_shell_and_bad_ranges_are_refused_alone(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    """Issue 13: a served GUID of ``$(touch pwned)`` ran in the payload's shell."""
    job = {
        "PandaID": 401,
        "taskID": 42,
        "transformation": "/bin/sh",
        "jobPars": "-c 'echo {GUID} {LFN} > {outputFile}'",
        "eventService": "True",
        "outFiles": "out.txt",
    }
    write_jobs(tmp_path, [job])
    lfn, guid = "EVNT.37418906._000001.pool.root.1", "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B"

    def served(i: int, **fields: str) -> dict[str, object]:
        rng = {"eventRangeID": f"42-401-1-{i}-1", "startEvent": i, "lastEvent": i, "LFN": lfn, "GUID": guid}
        return {**rng, "scope": "mc23_13p6TeV", **fields}

    feed = [
        served(1),
        served(2, GUID="$(touch pwned)"),
        served(3, LFN="x;touch pwned"),
        served(4, LFN="../../../../tmp/x"),
        served(5, GUID=guid.lower()),
    ]
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({"401": feed}))
    result = run_pilot(["run", "--workdir", str(tmp_path)], env=NO_MPI)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.rglob("pwned")) and not (REPO / "pwned").exists()
    for i, field in ((2, "GUID"), (3, "LFN"), (4, "LFN")):
        [line] = [ln for ln in result.stderr.splitlines() if f"eventRangeID=42-401-1-{i}-1" in ln]
        assert "refused" in line and "PandaID=401" in line and f"field={field}" in line, line
    finished = dict(finished_ranges(journal(tmp_path)))
    assert sorted(finished) == ["42-401-1-1-1", "42-401-1-5-1"]
    assert Path(str(finished["42-401-1-1-1"])).read_text() == f"{guid} {lfn}\n"
    [report] = summary(tmp_path)["jobs"]
    assert report["state"] == "finished"
