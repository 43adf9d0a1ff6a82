"""``hpcpilot report`` and ``hpcpilot status`` on real runs under ``mpiexec -n 3``."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from hpcpilot.demo.jobs import demo_job
from hpcpilot.monitor.plot import HEIGHT_PX, WIDTH_PX
from hpcpilot.monitor.timeseries import read_series
from tests.conftest import REPO, RunPilot, journal, pilot_env, summary, write_jobs

pytestmark = pytest.mark.mpi


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def table(text: str, title: str) -> list[list[str]]:
    """The rows (split into words) of one table of the report, under its title."""
    lines = text.splitlines()
    start = lines.index(title) + 3  # title, headings, dashes
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_report_of_a_real_run(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    job = demo_job(panda_id=61, n_events=300, mode="per_range", sleep_per_event=0.002, fail_events=[55])
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
    result = run_pilot(args, ranks=3)
    assert result.returncode == 0, result.stderr[-3000:]
    png = tmp_path / "x.png"
    report = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "report", str(tmp_path), "--plot", str(png)],
        capture_output=True,
        text=True,
        env=pilot_env(),
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    records = journal(tmp_path)
    finished = Counter(r["rank"] for r in records if r["ev"] == "finished" for _ in r["ids"])
    fatal = [r for r in records if r["ev"] == "fatal"]
    failed = [r for r in records if r["ev"] == "failed"]
    events = sum(n for r in records if r["ev"] == "finished" for n in r["nevents"])
    assert len(fatal) == 1 and len(failed) == 2
    (job_row,) = table(report.stdout, "jobs")
    assert job_row[:7] == ["61", "finished", "0", str(sum(finished.values())), "1", "30", str(events)]
    assert job_row[7] == f"{summary(tmp_path)['jobs'][0]['cpu_s']:.1f}"
    nodes = {int(row[1]): row for row in table(report.stdout, "nodes")}
    assert set(nodes) == {1, 2}
    for rank, row in nodes.items():
        assert int(row[3]) == finished[rank]
    assert sum(int(row[4]) for row in nodes.values()) == len(failed)
    (failure,) = table(report.stdout, "failures by code")
    assert failure[:2] == [str(failed[0]["code"]), "2"]
    data = read_series(tmp_path / "monitor.h5")
    assert data is not None and set(data.nodes) == {1, 2}  # rank 0's rows, without monitor plugins
    assert all(float(t.columns["busy_slots"].max()) >= 1 for t in data.nodes.values())


def status(workdir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "status", str(workdir)],
        capture_output=True,
        text=True,
        env=pilot_env(),
        cwd=REPO,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_status_of_a_run_going_on_and_ended(mpiexec: Path, tmp_path: Path, launcher_tmp: Path) -> None:
    job = demo_job(panda_id=62, n_events=400, mode="per_range", sleep_per_event=0.05)
    write_jobs(tmp_path, [job])
    argv = [str(mpiexec), "-n", "3", sys.executable, "-m", "hpcpilot", "run", "--workdir", str(tmp_path)]
    argv += ["--set", "node.cores=2", "--set", "monitor.write_interval_s=0.5"]
    run = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=pilot_env({"TMPDIR": str(launcher_tmp)}),
        cwd=REPO,
        start_new_session=True,  # its own process group: the only one this test may end
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            records = journal(tmp_path) if (tmp_path / "journal.jsonl").exists() else []
            if any(r["ev"] == "finished" for r in records) and (tmp_path / "monitor.h5").exists():
                break
            assert run.poll() is None, "the run ended before it could be watched"
            time.sleep(0.2)
        going = status(tmp_path)
        assert run.poll() is None, "the run ended while status was read"
        first = going.splitlines()[0]
        assert ": running (" in first or ": active (" in first, going
        done, total = going.split("ranges   : ")[1].split(" ")[0].split("/")
        assert 0 < int(done) <= int(total) <= 40  # ranges come from the source a few at a time
        assert "rank 1" in going and "rank 2" in going
        _, stderr = run.communicate(timeout=150)
        assert run.returncode == 0, stderr[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    ended = status(tmp_path)
    assert ": ended (" in ended.splitlines()[0], ended
    assert "40/40 done (100%)" in ended
