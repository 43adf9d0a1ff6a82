"""A run that stages inputs in and outputs and logs out, with the failures a site meets.

Storage is a directory here (the ``cp`` copytool over a "shared filesystem"); the same paths through
xrootd are in ``tests/data_movement``.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from hpcpilot.demo.jobs import DEMO_OUTPUT, demo_job
from tests.conftest import RunPilot, summary, write_jobs

NO_MPI = {"HPCPILOT_NO_MPI": "1"}


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def plain_job(panda_id: int, inputs: dict[str, bytes | str], script: str) -> dict[str, Any]:
    """A plain job reading ``inputs`` (name -> content, or a wrong checksum as str) and writing out."""
    sums = [v if isinstance(v, str) else f"ad:{adler32(v)}" for v in inputs.values()]
    return {
        "PandaID": panda_id,
        "transformation": "sh",
        "jobPars": f"-c '{script}'",
        "inFiles": ",".join(inputs),
        "scopeIn": ",".join("mc23" for _ in inputs),
        "checksum": ",".join(sums),
        "outFiles": f"out{panda_id}.dat,log{panda_id}.tgz",
        "scopeOut": "mc23,mc23",
        "logFile": f"log{panda_id}.tgz",
        "scopeLog": "logs",
    }


def test_inputs_in_outputs_and_logs_out_and_bad_files_fail_only_their_job(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    work, storage, dest = tmp_path / "work", tmp_path / "storage", tmp_path / "dest"
    (storage / "mc23").mkdir(parents=True)
    good, bad = b"input one\n" * 1000, b"input two\n"
    (storage / "mc23" / "in1.dat").write_bytes(good)
    (storage / "mc23" / "in2.dat").write_bytes(bad)
    linked = tmp_path / "harvester-staged" / "in3.dat"
    linked.parent.mkdir()
    linked.write_bytes(b"linked by harvester\n")
    (work / "103").mkdir(parents=True)
    os.symlink(linked, work / "103" / "in3.dat")  # Harvester links inputs into the job directory
    jobs = [
        plain_job(101, {"in1.dat": good}, "cat in1.dat > out101.dat"),
        plain_job(102, {"in2.dat": "ad:0badc0de"}, "touch ran; cat in2.dat > out102.dat"),
        plain_job(103, {"in3.dat": b"linked by harvester\n"}, "cat in3.dat > out103.dat"),
        plain_job(104, {"nowhere.dat": b"x"}, "touch ran; cat nowhere.dat > out104.dat"),
    ]
    write_jobs(work, jobs)
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(work),
            "--set",
            f"data.stagein_source={storage}/{{scope}}/{{lfn}}",
            "--set",
            f"data.stageout_destination={dest}/{{scope}}/{{lfn}}",
            "--set",
            "data.retries=0",
        ],
        env=NO_MPI,
    )
    assert result.returncode == 3, result.stderr  # some jobs failed, the run itself did not
    states = {j["PandaID"]: j for j in summary(work)["jobs"]}
    assert states[101]["state"] == "finished" and states[103]["state"] == "finished"
    assert (work / "101" / "in1.dat").read_bytes() == good  # staged in, checksum verified
    assert (dest / "mc23" / "out101.dat").read_bytes() == good  # staged out
    assert (dest / "mc23" / "out103.dat").read_bytes() == linked.read_bytes()
    assert (work / "103" / "in3.dat").is_symlink()  # Harvester's link was used, not replaced
    assert (dest / "logs" / "log101.tgz").is_file()
    assert states[102]["state"] == "failed" and states[102]["error_code"] == 1171
    assert "in2.dat" in states[102]["error_diag"]
    assert not (work / "102" / "ran").exists() and not (work / "102" / "in2.dat").exists()
    assert (dest / "logs" / "log102.tgz").is_file()  # a failed job's log still leaves
    assert states[104]["state"] == "failed" and states[104]["error_code"] == 1103
    assert "nowhere.dat" in states[104]["error_diag"] and not (work / "104" / "ran").exists()


def test_a_failed_stage_out_fails_the_job_and_keeps_its_output(run_pilot: RunPilot, tmp_path: Path) -> None:
    work = tmp_path / "work"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the destination directory should be\n")
    write_jobs(work, [plain_job(201, {}, "echo result > out201.dat")])
    result = run_pilot(
        [
            "run",
            "--workdir",
            str(work),
            "--set",
            f"data.stageout_destination={blocker}/{{lfn}}",
            "--set",
            "data.retries=0",
        ],
        env=NO_MPI,
    )
    assert result.returncode == 3, result.stderr
    [job] = summary(work)["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1137, job
    assert "out201.dat" in job["error_diag"]
    assert (work / "201" / "out201.dat").read_text() == "result\n"


def test_hostile_scopes_fail_their_job_and_nothing_outside_the_destination_is_touched(
    run_pilot: RunPilot, tmp_path: Path
) -> None:
    """Issue 13: a scopeOut of ``../../../victim`` overwrote a file outside the destination."""
    work, se = tmp_path / "work", tmp_path / "se" / "a" / "b"
    victim = tmp_path / "victim" / DEMO_OUTPUT
    victim.parent.mkdir()
    victim.write_bytes(b"a file the job must not touch\n")
    foreign = se / "demo" / DEMO_OUTPUT  # already at a good job's destination, written by someone else
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"another job's output\n")
    jobs = [
        {**demo_job(panda_id=301, n_events=10, sleep_per_event=0), "scopeOut": "../../../victim,demo"},
        {**demo_job(panda_id=302, n_events=10, sleep_per_event=0), "scopeOut": "$(touch x),demo"},
        demo_job(panda_id=303, n_events=10, sleep_per_event=0),
        {
            **demo_job(panda_id=304, n_events=10, sleep_per_event=0),
            "scopeOut": "user.jdoe,user.jdoe",
            "scopeLog": "user.jdoe",
        },
    ]
    write_jobs(work, jobs)
    result = run_pilot(
        ["run", "--workdir", str(work), "--set", f"data.stageout_destination={se}/{{scope}}"],
        env=NO_MPI,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    for panda_id in ("301", "302"):
        assert results[panda_id]["jobStatus"] == "failed" and results[panda_id]["pilotErrorCode"] == 1008
        assert "'scopeOut'" in results[panda_id]["pilotErrorDiag"]
    assert "../../../victim" in results["301"]["pilotErrorDiag"]
    assert victim.read_bytes() == b"a file the job must not touch\n"
    assert not list(tmp_path.rglob("*touch*")) and not list(tmp_path.rglob("x"))
    assert not (work / "301").exists() or not any((work / "301").iterdir())
    # a file the job did not write is left alone: the stage-out fails (1137), the output stays local
    assert results["303"]["jobStatus"] == "failed" and results["303"]["pilotErrorCode"] == 1137
    assert "already exists" in results["303"]["pilotErrorDiag"]
    assert foreign.read_bytes() == b"another job's output\n"
    assert (work / "303" / DEMO_OUTPUT).is_file()
    # the other jobs are not affected
    assert results["304"]["jobStatus"] == "finished", results["304"]
    assert (se / "user.jdoe" / DEMO_OUTPUT).read_bytes() == (work / "304" / DEMO_OUTPUT).read_bytes()
    assert sorted(p.name for p in (tmp_path / "se").rglob("*") if p.is_dir()) == [
        "a",
        "b",
        "demo",
        "user.jdoe",
    ]
