"""A real Slurm cluster on localhost (started by ci/slurm/start.sh) and a small helper to drive it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import need

# states in which a job can still change (squeue -o %T); anything else is final
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
UP_NODE_STATES = frozenset({"idle", "alloc", "mix", "comp"})


def run(argv: Sequence[str], *, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command, output as text; on failure the error names the command and its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


class Slurm:
    """The commands the tests need, remembering every job they submit so teardown cancels only those."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.submitted: list[str] = []

    def sbatch(self, script: Path, workdir: Path, *options: str) -> str:
        """Submit ``script`` with ``options`` from ``workdir``; the job id."""
        out = run(["sbatch", "--parsable", f"--chdir={workdir}", *options, str(script)]).stdout.strip()
        job_id = out.split(";", 1)[0]  # --parsable: "ID" or "ID;cluster"
        assert job_id.isdigit(), f"sbatch printed {out!r}"
        self.submitted.append(job_id)
        return job_id

    def state(self, job_id: str) -> str:
        """The job's state: from squeue while it is queued or running, else ``scontrol show job``."""
        out = run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).stdout.strip()
        if out:
            return out
        return self.job_info(job_id).get("JobState", "UNKNOWN")

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job ID`` as a dict (the Key=Value pairs; values without spaces)."""
        proc = run(["scontrol", "show", "job", job_id], check=False)
        return dict(re.findall(r"(\S+?)=(\S*)", proc.stdout))

    def wait(self, job_id: str, timeout: float) -> str:
        """Wait until the job leaves the active states; its final ``JobState``."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state not in ACTIVE_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f}s")
            time.sleep(0.5)

    def cancel_all_started(self) -> None:
        """scancel the jobs these tests submitted (and no other) that have not finished yet."""
        active = [j for j in self.submitted if self.state(j) in ACTIVE_STATES]
        if active:
            run(["scancel", *active], check=False)


def cluster_nodes() -> tuple[list[str], str]:
    """The nodes that are up, and a description of what sinfo showed (for the skip/fail message)."""
    if shutil.which("sinfo") is None:
        return [], "no sinfo on PATH"
    try:
        proc = run(["sinfo", "-h", "-N", "-o", "%N %t"], timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return [], "sinfo timed out"
    if proc.returncode != 0:
        return [], f"sinfo failed: {proc.stderr.strip()}"
    states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    nodes = sorted((n for n, s in states.items() if s in UP_NODE_STATES), key=lambda n: (len(n), n))
    return nodes, f"sinfo shows {states or 'no nodes'}"


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """The local Slurm cluster with at least two nodes up (bash ci/slurm/start.sh starts it)."""
    nodes, seen = cluster_nodes()
    need(len(nodes) >= 2, f"a Slurm cluster with 2 nodes up (bash ci/slurm/start.sh; {seen})")
    helper = Slurm(nodes)
    yield helper
    helper.cancel_all_started()
