"""``python -m hpcpilot`` with no command is ``run``; packaged templates and sites on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpcpilot.cli import COMMANDS
from hpcpilot.demo.jobs import demo_job
from tests.conftest import REPO, RunPilot, pilot_env, summary, write_jobs

TEMPLATES = REPO / "hpcpilot" / "launchers"


def pilot(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m hpcpilot ARGS`` in ``cwd`` (the repository importable), without MPI."""
    return subprocess.run(
        [sys.executable, "-m", "hpcpilot", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=pilot_env({"HPCPILOT_NO_MPI": "1", **(env or {})}),
    )


def test_no_command_runs_the_jobs_of_the_current_directory(tmp_path: Path) -> None:
    # on main: "the following arguments are required: command", exit 2
    write_jobs(tmp_path, [demo_job(panda_id=21, n_events=20, sleep_per_event=0)])
    result = pilot([], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hpcpilot summary" in result.stdout
    assert summary(tmp_path)["ranges"]["finished"] == 2


def test_no_command_takes_the_options_of_run(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write_jobs(work, [demo_job(panda_id=22, n_events=10, sleep_per_event=0)])
    result = pilot(["--workdir", str(work), "--set", "local.events_per_range=5"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(work)["ranges"]["finished"] == 2


def test_no_command_takes_the_work_directory_from_the_environment(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write_jobs(work, [demo_job(panda_id=23, n_events=10, sleep_per_event=0)])
    result = pilot([], cwd=tmp_path, env={"HPCPILOT_WORKDIR": str(work)})
    assert result.returncode == 0, result.stderr
    assert summary(work)["ranges"]["finished"] == 1
    assert not (tmp_path / "summary.json").exists()


def test_help_lists_every_command(run_pilot: RunPilot) -> None:
    result = run_pilot(["--help"])
    assert result.returncode == 0, result.stderr
    assert set(COMMANDS) == {"run", "demo", "config", "launch", "submit", "plugins", "status", "report"}
    for command in COMMANDS:
        assert f"    {command} " in result.stdout, command
    assert "With no command, 'hpcpilot [OPTIONS]' is 'hpcpilot run [OPTIONS]'" in " ".join(
        result.stdout.split()
    )


def test_print_template_prints_the_packaged_file(run_pilot: RunPilot) -> None:
    for name in ("slurm", "pbs", "lsf.sh"):
        result = run_pilot(["submit", "--print-template", name])
        assert result.returncode == 0, result.stderr
        path = TEMPLATES / (name if name.endswith(".sh") else f"{name}.sh")
        assert result.stdout == path.read_text()
        assert str(path) in result.stderr
    own = run_pilot(["submit", "--print-template", "--set", "batch.system=pbs"])
    assert own.returncode == 0 and own.stdout == (TEMPLATES / "pbs.sh").read_text()
    unknown = run_pilot(["submit", "--print-template", "sge"])
    assert unknown.returncode == 2 and "no template 'sge'" in unknown.stderr
    without_nodes = run_pilot(["submit", "--walltime", "1h", "--dry-run"])
    assert without_nodes.returncode == 2 and "--nodes" in without_nodes.stderr


def test_config_sites_lists_where_each_site_comes_from(run_pilot: RunPilot, tmp_path: Path) -> None:
    (tmp_path / "perlmutter.yaml").write_text("node:\n  cores: 7\n")
    result = run_pilot(["config", "sites"], env={"HPCPILOT_SITE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    mine = [ln for ln in lines if ln.split()[:2] == ["perlmutter", "HPCPILOT_SITE_PATH"]]
    assert len(mine) == 1 and "shadowed" not in mine[0]
    packaged = [ln for ln in lines if ln.split()[:2] == ["perlmutter", "package"]]
    assert len(packaged) == 1 and f"(shadowed by {tmp_path / 'perlmutter.yaml'})" in packaged[0]
    for name in ("aurora", "frontier", "local", "polaris", "slurm-generic", "summit"):
        assert any(ln.split()[:2] == [name, "package"] for ln in lines), name
    shown = run_pilot(["config", "show", "--site", "perlmutter"], env={"HPCPILOT_SITE_PATH": str(tmp_path)})
    assert "7" in next(ln for ln in shown.stdout.splitlines() if ln.startswith("node.cores "))


@pytest.mark.mpi
def test_the_design_invocation_under_mpiexec(mpiexec: Path, launcher_tmp: Path, tmp_path: Path) -> None:
    # `srun -N 512 python -m hpcpilot` of the design card, here `mpiexec -n 2 python -m hpcpilot`
    write_jobs(tmp_path, [demo_job(panda_id=24, n_events=40, sleep_per_event=0)])
    result = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "hpcpilot"],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=pilot_env({"TMPDIR": str(launcher_tmp)}),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(tmp_path)["ranges"]["finished"] == 4
    assert sorted(p.name for p in (tmp_path / "logs").glob("rank-*.log")) == [
        "rank-0000.log",
        "rank-0001.log",
    ]
