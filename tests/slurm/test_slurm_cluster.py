"""Smoke tests of the local Slurm cluster the batch and launcher plugins are tested against.

They check what the plugins rely on: srun starts an MPI world across pseudo-nodes, a ``B:`` warning
signal reaches the batch shell before the time limit, and a job past its limit ends in TIMEOUT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.slurm.conftest import Slurm

pytestmark = pytest.mark.slurm

HELLO = (
    "import os; from mpi4py import MPI; c = MPI.COMM_WORLD; "
    "print('hello', c.rank, c.size, os.environ['SLURMD_NODENAME'], flush=True)"
)

# the batch shell records when it starts and when USR1 (the warning) and TERM (the limit) reach it; a
# foreground `sleep` would hold the traps back until it ends, `wait` returns at once on a signal
TRAPPING_JOB = textwrap.dedent(
    """\
    #!/bin/bash
    now() { date +%s.%N; }
    echo "start $(now) $SLURM_JOB_NUM_NODES" >> events.txt
    trap 'echo "usr1 $(now)" >> events.txt' USR1
    trap 'echo "term $(now)" >> events.txt; exit 0' TERM
    while :; do sleep 1 & wait $!; done
    """
)
LIMIT_S = 60  # --time=1
# --signal=B:USR1@50: slurmctld checks limits every 30 s and sends the warning at the first check that is
# within 50 + 30 s of the end, so here at its first check after the start (seen 6-27 s after it)
WARN_S = 50


def job_env(tmp: Path) -> dict[str, str]:
    """The test's environment without an enclosing allocation's SLURM_*; MPICH's hwloc files in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["TMPDIR"] = str(tmp)
    return env


def test_srun_mpi_world_spans_two_nodes(slurm: Slurm, tmp_path: Path) -> None:
    proc = subprocess.run(
        ["srun", "-N", "2", "-n", "2", "--mpi=pmi2", "--time=1", sys.executable, "-c", HELLO],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
        env=job_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line.split() for line in proc.stdout.splitlines() if line.startswith("hello "))
    assert [(rank, size) for _, rank, size, _ in lines] == [("0", "2"), ("1", "2")], proc.stdout
    assert len({node for *_, node in lines}) == 2, proc.stdout


def test_sbatch_completed_and_failed(slurm: Slurm, tmp_path: Path) -> None:
    ok, bad = tmp_path / "ok.sh", tmp_path / "bad.sh"
    ok.write_text("#!/bin/bash\necho done-$SLURM_JOB_ID\n")
    bad.write_text("#!/bin/bash\nexit 3\n")
    ok_id = slurm.sbatch(ok, tmp_path, "-N", "1", "--time=1", "-o", "ok.out")
    bad_id = slurm.sbatch(bad, tmp_path, "-N", "1", "--time=1", "-o", "bad.out")
    assert slurm.wait(ok_id, 60) == "COMPLETED"
    assert slurm.wait(bad_id, 60) == "FAILED"
    assert slurm.job_info(ok_id)["ExitCode"] == "0:0"
    assert slurm.job_info(bad_id)["ExitCode"] == "3:0"
    assert (tmp_path / "ok.out").read_text().strip() == f"done-{ok_id}"


@dataclass
class TimedJob:
    """What the trapping job left behind."""

    job_id: str
    final: str
    info: dict[str, str]
    end_while_running: str  # squeue -h -j ID -o %e
    events: dict[str, list[float]]
    nodes: int


@pytest.fixture(scope="module")
def timed_job(slurm: Slurm, tmp_path_factory: pytest.TempPathFactory) -> TimedJob:
    """One 2-node job with --time=1 --signal=B:USR1@50 that runs past its limit (about 70-95 s)."""
    workdir = tmp_path_factory.mktemp("timed-job")
    script = workdir / "job.sh"
    script.write_text(TRAPPING_JOB)
    options = ["-N", "2", "--time=1", f"--signal=B:USR1@{WARN_S}", "-o", "job.out", "-J", "hpcpilot-timeout"]
    job_id = slurm.sbatch(script, workdir, *options)
    deadline = time.monotonic() + 30
    while slurm.state(job_id) == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    end = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True, check=False
    ).stdout.strip()
    final = slurm.wait(job_id, LIMIT_S + 90)
    events: dict[str, list[float]] = {}
    nodes = 0
    for line in (workdir / "events.txt").read_text().splitlines():
        name, stamp, *rest = line.split()
        events.setdefault(name, []).append(float(stamp))
        if name == "start":
            nodes = int(rest[0])
    return TimedJob(job_id, final, slurm.job_info(job_id), end, events, nodes)


def test_warning_signal_reaches_batch_shell_before_limit(timed_job: TimedJob) -> None:
    assert timed_job.nodes == 2
    [start] = timed_job.events["start"]
    assert timed_job.events.get("usr1"), f"USR1 never reached the batch shell: {timed_job.events}"
    first = timed_job.events["usr1"][0] - start
    assert 0 <= first < LIMIT_S - 5, f"USR1 {first:.1f}s after the start"
    for term in timed_job.events.get("term", []):
        assert term > timed_job.events["usr1"][0]


def test_time_limit_ends_in_timeout(timed_job: TimedJob) -> None:
    assert timed_job.final == "TIMEOUT"
    assert timed_job.info["JobState"] == "TIMEOUT"
    assert timed_job.info["Reason"] == "TimeLimit"
    assert timed_job.info["TimeLimit"] == "00:01:00"
    assert timed_job.info["NumNodes"] == "2"
    # while it ran, squeue's %e was the start plus the limit (an ISO timestamp, not N/A or NONE)
    assert timed_job.end_while_running.startswith("20"), timed_job.end_while_running
