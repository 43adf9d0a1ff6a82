"""A full disk in the work directory: the run waits for space, drains with 1098, and loses nothing.

Each test mounts a small tmpfs as the work directory (skipped where mounting is not allowed, failed
under ``CI=true``). The payload writes a 3 MB output per range through a ``.part`` file, which a range
that fails halfway leaves behind: the disk stays full until the test gives space back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.errors import ExitCode
from hpcpilot.runtime.journal import plain
from tests.conftest import REPO, RunPilot, finished_ranges, pilot_env, summary, write_jobs
from tests.tmpfs import fill, resize, tmpfs

PANDA_ID = 77
OUTPUT_MB = 3
FAST = [
    "monitor.period_s=0.5",
    "monitor.min_free_disk_mb=5",
    "disk.retry_s=0.2",
    "disk.reserve_mb=2",
    "parallel.journal_flush_s=0.2",
]


def filler_job(n_ranges: int) -> dict[str, Any]:
    """An event-service job of ``n_ranges`` ranges; each range writes ``OUTPUT_MB`` MB."""
    part = "{outputFile}.part"
    write = f"head -c {OUTPUT_MB * 10**6} /dev/zero > {part} && mv {part} {{outputFile}}"
    return {
        "PandaID": PANDA_ID,
        "taskID": 42,
        "jobsetID": 7,
        "attemptNr": 1,
        "prodSourceLabel": "managed",
        "transformation": "/bin/sh",
        "jobPars": f"-c '{write}'",
        "eventService": "True",
        "coreCount": 1,
        "minRamCount": 100,
        "nEventsPerInputFile": n_ranges * 10,
        "inFiles": "",
        "outFiles": "fill.dat,log.fill.tgz",
        "scopeOut": "demo,demo",
        "realDatasets": "demo.fill,demo.log",
        "logFile": "log.fill.tgz",
        "logGUID": "5e1f8a7c-3b1d-4c2e-9f0a-000000000077",
        "scopeLog": "demo",
    }


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def journal_lines(workdir: Path) -> list[dict[str, Any]]:
    """Every line of the journal, each of which must be a whole JSON record (no torn line)."""
    return [plain(json.loads(line)) for line in (workdir / "journal.jsonl").read_text().splitlines()]


def check_outputs(records: list[dict[str, Any]]) -> None:
    """Every range journaled finished has its output, with the journaled adler32."""
    for r in records:
        if r["ev"] == "finished":
            for path, adler in zip(r["paths"], r["adler32"], strict=True):
                assert adler32_of_file(Path(path)) == adler


@pytest.mark.parametrize("ranks", [None, 3], ids=["one-process", "mpiexec-3"])
def test_a_full_disk_drains_with_1098_then_resume_finishes_every_range(
    run_pilot: RunPilot, tmp_path: Path, ranks: int | None
) -> None:
    n_ranges = 12  # 36 MB of outputs on a 30 MB disk
    env = {"HPCPILOT_NO_MPI": "1"} if ranks is None else {}
    if ranks is not None:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        if not mpiexec.exists():
            pytest.skip("no mpiexec next to the test interpreter")
    with tmpfs(tmp_path / "work", "30m") as work:
        write_jobs(work, [filler_job(n_ranges)])
        args = ["run", "--workdir", str(work), *sets([*FAST, "disk.wait_s=3", "node.cores=2"])]
        first = run_pilot(args, ranks=ranks, env=env, timeout=60)
        assert first.returncode == ExitCode.DISK_FULL, first.stderr[-3000:]
        s = summary(work)
        assert s["drained_by"] == "NO_LOCAL_SPACE"
        assert s["disk"]["state"] == "disk full" and s["disk"]["error_code"] == 1098
        [job] = s["jobs"]
        assert job["state"] == "failed" and job["error_code"] == 1098 and "disk full" in job["error_diag"]
        assert s["ranges"]["fatal"] == 0 and 0 < s["ranges"]["finished"] < n_ranges
        records = journal_lines(work)
        assert not any(r["ev"] == "fatal" for r in records)
        assert {r["code"] for r in records if r["ev"] == "failed"} == {1098}
        check_outputs(records)
        before = {rid for rid, _ in finished_ranges(records)}
        assert len(before) == s["ranges"]["finished"]

        resize(work, "100m")  # space is back
        second = run_pilot([*args, "--resume"], ranks=ranks, env=env, timeout=60)
        assert second.returncode == ExitCode.OK, second.stderr[-3000:]
        s = summary(work)
        [job] = s["jobs"]
        assert job["state"] == "finished" and job["error_code"] == 0
        assert job["ranges"] == {"total": n_ranges, "finished": n_ranges, "fatal": 0, "failed_attempts": 0}
        records = journal_lines(work)
        done = Counter(rid for rid, _ in finished_ranges(records))
        assert len(done) == n_ranges and set(done.values()) == {1}  # none lost, none run twice
        check_outputs(records)
        assert not (work / ".hpcpilot-reserve").exists()


def test_space_that_comes_back_within_the_wait_lets_the_run_finish(tmp_path: Path) -> None:
    n_ranges = 6  # 18 MB of outputs; the ballast leaves about 6 MB
    with tmpfs(tmp_path / "work", "30m") as work:
        write_jobs(work, [filler_job(n_ranges)])
        ballast = work / "ballast"
        fill(ballast, 22 * 2**20)
        args = ["run", "--workdir", str(work), *sets([*FAST, "disk.wait_s=60", "node.cores=2"])]
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcpilot", *args],
            cwd=REPO,
            env=pilot_env({"HPCPILOT_NO_MPI": "1"}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        full = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "disk full (1098 NO_LOCAL_SPACE)" in line:
                    full.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert full.wait(30), "".join(lines)[-3000:]
            ballast.unlink()  # space comes back while the run waits
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(5)
        err = "".join(lines)
        assert proc.returncode == ExitCode.OK, err[-3000:]
        assert "space is back after" in err
        s = summary(work)
        assert s["disk"]["state"] == "space came back" and s["disk"]["ranges_requeued"] >= 1
        [job] = s["jobs"]
        assert job["state"] == "finished" and job["ranges"]["finished"] == n_ranges
        assert job["ranges"]["failed_attempts"] == 0  # failing for lack of space spent no attempt
        records = journal_lines(work)
        assert any(r["ev"] == "failed" and r["code"] == 1098 for r in records)
        check_outputs(records)
