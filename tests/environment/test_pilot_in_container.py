"""The pilot itself in a container (podman): ``python3 -m hpcpilot run`` inside a Debian image.

The image (ci/install-environment.sh: ``debootstrap --variant=minbase --include=python3 bookworm``)
holds Python 3.11 and the file /etc/hpcpilot-image; the pilot's code and its dependencies come from
this checkout and its virtualenv, bound read-only and put on ``PYTHONPATH`` (the venv's own
interpreter may live outside the image, e.g. under pyenv). The container's argv is built by
`PodmanEnvironment` itself. Payloads are children of the pilot, so they run in the same image: a
plain job copies the image-only file into its output, and the demo event-service job writes its HDF5
outputs with the numpy and h5py of the venv, run by the image's python3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hpcpilot.config.schema import EnvironmentSettings
from hpcpilot.demo.jobs import demo_job
from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.podman import PodmanEnvironment
from hpcpilot.model.command import Command
from tests.conftest import REPO, need, write_jobs
from tests.environment.conftest import IMAGE_MARKER, PODMAN_OPTIONS, Podman

pytestmark = pytest.mark.containers


def test_pilot_runs_in_a_container(podman: Podman, python_image: str, tmp_path: Path) -> None:
    need(sys.version_info[:2] == (3, 11), "a Python 3.11 virtualenv (the image's python3 is 3.11)")
    work = tmp_path / "work"
    plain = {
        "PandaID": 501,
        "transformation": "/bin/sh",
        "jobPars": (
            f"-c 'cat {IMAGE_MARKER} > where.txt; "
            'python3 -c "import sys; print(sys.executable)" >> where.txt\''
        ),
        "outFiles": "where.txt",
    }
    write_jobs(work, [plain, demo_job(panda_id=502, n_events=40, sleep_per_event=0, python="python3")])
    site = sysconfig.get_paths()["purelib"]
    pilot = Command(
        ("python3", "-m", "hpcpilot", "run", "--workdir", str(work)),
        {
            **os.environ,
            "PYTHONPATH": f"{REPO}:{site}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HPCPILOT_NO_MPI": "1",  # world size 1; mpi4py's MPI library is not in the image
        },
        str(work),
        frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HPCPILOT_NO_MPI"}),
    )
    env = PodmanEnvironment(
        EnvironmentSettings(chain=("podman",), image=python_image, options=PODMAN_OPTIONS)
    )
    request = EnvironmentRequest(python_image, (), (f"{REPO}:{REPO}:ro", f"{site}:{site}:ro", str(work)))
    env.prepare(request, pilot.env)
    wrapped = env.wrap(pilot, request)
    done = subprocess.run(
        wrapped.argv,
        env=wrapped.env,
        cwd=wrapped.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert results["501"]["jobStatus"] == "finished" and results["502"]["jobStatus"] == "finished"
    where = (work / "501" / "where.txt").read_text().splitlines()
    assert where == ["hpcpilot-ci bookworm-python", "/usr/bin/python3"]  # the payload ran in the image
    assert results["502"]["nEvents"] == 40
    assert (work / "502" / "HITS.demo._000001.h5").stat().st_size > 0
    summary = json.loads((work / "summary.json").read_text())
    assert summary["ranges"]["finished"] == 4 and summary["workers"] == 1
