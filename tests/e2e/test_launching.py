"""``hpcpilot launch`` and ``hpcpilot submit`` as a user runs them (PBS through the fake queue on PATH)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hpcpilot.batch.pbs import PbsBatchSystem
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.runtime.commands import run_command
from tests.conftest import REPO, RunPilot
from tests.fakes.batchq import queue_environment


def test_launch_dry_run_prints_the_launcher_command(run_pilot: RunPilot, tmp_path: Path) -> None:
    args = ["launch", "--dry-run", "--set", "batch.system=local", "--set", "launch.launcher=srun"]
    result = run_pilot([*args, "--", "run", "--workdir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout.strip())
    cores = len(os.sched_getaffinity(0))  # the local allocation: the CPUs this process may use
    assert argv[0] == "srun" and "--nodes=1" in argv and f"--cpus-per-task={cores}" in argv
    assert argv[-6:] == [sys.executable, "-m", "hpcpilot", "run", "--workdir", str(tmp_path)]


def test_launch_execs_the_launcher(run_pilot: RunPilot, tmp_path: Path) -> None:
    """The local allocation with the MPICH launcher: a real 1-rank run of the demo job."""
    venv_bin = str(Path(sys.executable).parent)
    env = {"PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    settings = ["--set", "batch.system=local", "--set", "launch.launcher=mpiexec-mpich"]
    demo = ["demo", "--workdir", str(tmp_path), "--events", "40", "--sleep-per-event", "0"]
    result = run_pilot(["launch", *settings, "--", *demo], env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hpcpilot launch: exec mpiexec" in result.stdout
    assert (tmp_path / "summary.json").exists() and "hpcpilot summary" in result.stdout


def test_launch_needs_a_command(run_pilot: RunPilot) -> None:
    result = run_pilot(["launch", "--dry-run", "--set", "batch.system=local", "--"])
    assert result.returncode == 2
    assert "nothing to start" in result.stderr


def test_submit_dry_run_renders_the_template(run_pilot: RunPilot, tmp_path: Path) -> None:
    args = ["submit", "--nodes", "2", "--walltime", "1:30:00", "--workdir", str(tmp_path), "--dry-run"]
    sets = ["--set", "batch.system=slurm", "--set", "batch.account=m1234", "--set", "node.cores=8"]
    result = run_pilot([*args, *sets])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "#SBATCH --nodes=2\n" in out and "#SBATCH --time=90\n" in out
    assert "#SBATCH --cpus-per-task=8\n" in out and "#SBATCH --signal=B:USR1@300\n" in out
    assert "#SBATCH --partition" not in out  # no queue given: the site's default
    [command] = [line for line in out.splitlines() if line.startswith("# submit with: ")]
    argv = shlex.split(command.removeprefix("# submit with: "))
    assert argv[:3] == ["sbatch", "--account", "m1234"] and argv[-1].startswith(str(tmp_path))
    assert not list(tmp_path.glob("hpcpilot-*.sh"))  # a dry run writes nothing


def test_submit_needs_a_walltime(run_pilot: RunPilot, tmp_path: Path) -> None:
    result = run_pilot(["submit", "--nodes", "1", "--workdir", str(tmp_path), "--set", "batch.system=slurm"])
    assert result.returncode == 2 and "--walltime" in result.stderr


@pytest.fixture
def fake_pbs(tmp_path: Path) -> dict[str, str]:
    return queue_environment(tmp_path / "queue", REPO)


def test_submit_poll_cancel_through_the_fake_pbs(
    run_pilot: RunPilot, tmp_path: Path, fake_pbs: dict[str, str]
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    # the job's "pilot" only sleeps: the test is about the queue
    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    env = {**fake_pbs, "HPCPILOT_PYTHON": str(sleeper)}
    args = ["submit", "--nodes", "2", "--walltime", "10m", "--workdir", str(workdir)]
    result = run_pilot([*args, "--set", "batch.system=pbs", "--set", "batch.queue=debug"], env=env)
    assert result.returncode == 0, result.stderr
    [script] = workdir.glob("hpcpilot-pbs-*.sh")
    text = script.read_text()
    assert "#PBS -l select=2:" in text and "#PBS -q debug" in text and f'cd "{workdir}"' in text
    job_id = result.stdout.split("job ")[-1].strip()
    pbs = PbsBatchSystem(run=lambda argv: run_command(argv, 30, env), env=env)
    assert pbs.poll([job_id])[job_id] in (BatchJobState.SUBMITTED, BatchJobState.RUNNING)
    pbs.cancel(job_id)
    assert pbs.poll([job_id])[job_id] is BatchJobState.FINISHED  # qdel'd: F, as Harvester sees it


def test_auto_submits_to_the_batch_system_on_path() -> None:
    from hpcpilot.launching import submit_system
    from hpcpilot.model.errors import ConfigError

    def on_path(*names: str) -> Callable[[str], str | None]:
        return lambda command: f"/x/{command}" if command in names else None

    assert submit_system("auto", on_path("qsub")).name == "pbs"
    assert submit_system("auto", on_path("bsub", "qsub")).name == "pbs"  # sbatch, qsub, bsub: first found
    assert submit_system("auto", on_path("bsub")).name == "lsf"
    assert submit_system("lsf", on_path()).name == "lsf"
    with pytest.raises(ConfigError, match="none of sbatch, qsub, bsub"):
        submit_system("auto", on_path())


def test_submit_options_per_system() -> None:
    from dataclasses import replace

    from hpcpilot.config.schema import BatchSettings, Settings
    from hpcpilot.launching import submit_options

    settings = Settings(batch=BatchSettings(account="m1", submit_options="--qos=debug -C 'cpu gpu'"))
    assert submit_options(settings, "slurm") == ["--account", "m1", "--qos=debug", "-C", "cpu gpu"]
    assert submit_options(settings, "pbs", "perl")[:4] == ["-A", "m1", "-v", "HPCPILOT_SITE=perl"]
    assert submit_options(settings, "lsf", "perl")[:2] == ["-P", "m1"]
    assert submit_options(replace(settings, batch=BatchSettings()), "slurm") == []


def test_submit_to_a_system_without_a_template_says_so(run_pilot: RunPilot, tmp_path: Path) -> None:
    args = ["submit", "--nodes", "1", "--walltime", "1h", "--workdir", str(tmp_path), "--dry-run"]
    result = run_pilot([*args, "--set", "batch.system=local"])
    assert result.returncode == 2
    assert "the local batch system has no batch-script template" in result.stderr
