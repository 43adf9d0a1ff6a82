"""``node.gpus`` auto at world size 1: a one-GPU node found by ``nvidia-smi -L`` (issue 15).

Measured on a real one-H200 node before this change: with only ``node.gpus_per_slot=1`` set, four jobs
ran on the one GPU at once, with no ``CUDA_VISIBLE_DEVICES``. No GPU machine is available to the tests:
a stand-in ``nvidia-smi`` on ``PATH`` prints the recorded output of that node
(``tests/data/gpus/nvidia_smi_L_h200.txt``). Each payload holds a lock file named after its device
for its whole run, so two jobs on one device at once would fail the second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, RunPilot, pilot_env, write_jobs

NO_MPI = {"HPCPILOT_NO_MPI": "1"}
H200 = REPO / "tests" / "data" / "gpus" / "nvidia_smi_L_h200.txt"


def gpu_job(panda_id: int, workdir: Path) -> dict[str, object]:
    lock = f"os.path.join('{workdir}', 'gpu-' + d + '.lock')"
    script = (
        "import os, time; d = os.environ.get('CUDA_VISIBLE_DEVICES', 'none'); "
        f"fd = os.open({lock}, os.O_CREAT | os.O_EXCL | os.O_WRONLY); "
        f"open('out.txt', 'w').write(d); time.sleep(0.4); os.close(fd); os.remove({lock})"
    )
    return {
        "PandaID": panda_id,
        "transformation": sys.executable,
        "jobPars": f'-c "{script}"',
        "coreCount": 1,
        "outFiles": "out.txt",
    }


def test_auto_gpus_bind_each_job_to_the_nodes_one_gpu(
    run_pilot: RunPilot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, workdir = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 2\ncat '{H200}'\n")
    tool.chmod(0o755)
    for name in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"):
        monkeypatch.delenv(name, raising=False)
    write_jobs(workdir, [gpu_job(i, workdir) for i in (71, 72, 73, 74)])
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    result = run_pilot(
        ["run", "--workdir", str(workdir), "--set", "node.gpus_per_slot=1", "--set", "node.cores=4"],
        env={**NO_MPI, "PATH": path},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert {results[str(i)]["jobStatus"] for i in (71, 72, 73, 74)} == {"finished"}, results
    assert [(workdir / str(i) / "out.txt").read_text() for i in (71, 72, 73, 74)] == ["0"] * 4
    log = (workdir / "logs" / "rank-0000.log").read_text()
    assert "1 nvidia GPU(s) [0] from nvidia-smi -L" in log
    report = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "report", str(workdir)],
        capture_output=True, text=True, check=False, env=pilot_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    row = next(line for line in report.stdout.splitlines() if line.startswith("rank 0"))
    assert row.endswith(" 1  nvidia from nvidia-smi -L"), row
    as_json = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "report", str(workdir), "--json"],
        capture_output=True, text=True, check=False, env=pilot_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    [node] = json.loads(as_json.stdout)["nodes"]
    assert (node["gpus"], node["gpu_vendor"], node["gpu_source"], node["peers"]) == (
        1,
        "nvidia",
        "nvidia-smi -L",
        1,
    )
