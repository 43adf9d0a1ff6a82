"""Payloads in real containers: charliecloud on a busybox directory, podman (root, runc) on an import.

Each payload writes a file into its bound job directory and prints a kept variable, one that is not
kept, an odd value that must arrive unchanged, and a file that exists only in the image.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpcpilot.config.schema import EnvironmentSettings, NodeSettings
from hpcpilot.environment.base import EnvironmentRequest, make_chain, request_for
from hpcpilot.environment.charliecloud import CharliecloudEnvironment
from hpcpilot.environment.podman import PodmanEnvironment
from hpcpilot.model.command import Command
from hpcpilot.model.job import Job
from hpcpilot.runtime.commands import CommandResult, run_command
from tests.environment.conftest import PODMAN_OPTIONS, Podman, make_bind_target
from tests.environment.test_modules_lmod import module_tree

pytestmark = pytest.mark.containers

ODD = "a $b \"c\" 'd' =e, f\\g"
SCRIPT = (
    'echo "$PANDAID" > out.txt; '
    'echo "kept=$PANDAID"; echo "odd=$ODD_VALUE"; echo "other=${SITE_VAR:-unset}"; echo "path=$PATH"; '
    "cat /etc/hpcpilot-busybox; pwd"
)


def payload(job_dir: Path) -> Command:
    env = {k: v for k, v in os.environ.items() if k != "USER"}  # ch-run needs USER: prepare supplies it
    env.update({"PANDAID": "4711", "ODD_VALUE": ODD, "SITE_VAR": "site"})
    return Command(("sh", "-c", SCRIPT), env, str(job_dir), frozenset({"PANDAID", "ODD_VALUE"}))


def run(command: Command, stdin: str | None = None) -> CommandResult:
    if stdin is None:
        return run_command(command.argv, timeout_s=60, env=command.env, cwd=command.cwd)
    done = subprocess.run(
        command.argv,
        input=stdin,
        check=False,
        capture_output=True,
        text=True,
        env=command.env,
        cwd=command.cwd,
        timeout=60,
    )
    return CommandResult(tuple(command.argv), done.returncode, done.stdout, done.stderr)


def check(result: CommandResult, job_dir: Path, *, cleanenv: bool) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    assert (job_dir / "out.txt").read_text() == "4711\n"  # written through the bind
    assert values["kept"] == "4711"
    assert values["odd"] == ODD
    assert values["other"] == ("unset" if cleanenv else "site")
    assert "busybox image" in lines  # a file only the image has
    assert lines[-1] == str(job_dir)  # the working directory
    return values


# --- charliecloud ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cleanenv", [True, False])
def test_charliecloud(ch_run: str, busybox_rootfs: Path, tmp_path: Path, cleanenv: bool) -> None:
    job_dir = tmp_path / "job dir"  # a blank: argv, never shell text
    job_dir.mkdir()
    make_bind_target(busybox_rootfs, job_dir)
    # --private-tmp: the host's /tmp (where tmp_path lives) is not shared, so only the bind shows the job
    settings = EnvironmentSettings(
        chain=("charliecloud",), image=str(busybox_rootfs), cleanenv=cleanenv, options="--private-tmp"
    )
    env = CharliecloudEnvironment(settings)
    request = request_for(Job(panda_id=1), settings, NodeSettings(), [str(job_dir)])
    command = payload(job_dir)
    env.prepare(request, command.env)
    wrapped = env.wrap(command, request)
    assert wrapped.env["USER"]  # found by prepare, given to ch-run
    values = check(run(wrapped), job_dir, cleanenv=cleanenv)
    if cleanenv:
        assert values["path"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_charliecloud_without_the_bind_sees_no_job(ch_run: str, busybox_rootfs: Path, tmp_path: Path) -> None:
    """The control: with --private-tmp and no bind, the job directory is not there."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    make_bind_target(busybox_rootfs, job_dir)
    env = CharliecloudEnvironment(EnvironmentSettings(options="--private-tmp"))
    wrapped = env.wrap(
        Command(("sh", "-c", f"ls '{job_dir}/marker'"), {**os.environ, "USER": "root"}, "/"),
        EnvironmentRequest(str(busybox_rootfs)),
    )
    (job_dir / "marker").write_text("x")
    assert run(wrapped).returncode != 0


def test_modules_outside_charliecloud_inside(
    lmod: str, ch_run: str, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """The chain for real: Lmod's variables reach a payload in a container that passes the host env."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    make_bind_target(busybox_rootfs, job_dir)
    settings = EnvironmentSettings(
        chain=("modules", "charliecloud"),
        modules_use=(str(module_tree(tmp_path)),),
        modules_load=("envtest/1.0",),
        image=str(busybox_rootfs),
        cleanenv=False,
        options="--private-tmp",
    )
    chain = make_chain(settings)
    request = request_for(Job(panda_id=1), settings, NodeSettings(), [str(job_dir)])
    command = payload(job_dir)
    chain.prepare(request, command.env)
    wrapped = chain.wrap(command, request)
    assert wrapped.argv[0] == "ch-run"
    result = run(
        wrapped.with_argv((*wrapped.argv[:-1], 'echo "module=$ENVTEST_VAR"; cat /etc/hpcpilot-busybox'))
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["module=from the module", "busybox image"]


# --- podman ------------------------------------------------------------------------------------------


def podman_env(image: str, *, cleanenv: bool = True) -> PodmanEnvironment:
    return PodmanEnvironment(
        EnvironmentSettings(chain=("podman",), image=image, cleanenv=cleanenv, options=PODMAN_OPTIONS)
    )


@pytest.mark.parametrize("cleanenv", [True, False])
def test_podman(podman: Podman, busybox_image: str, tmp_path: Path, cleanenv: bool) -> None:
    job_dir = tmp_path / "job dir"
    job_dir.mkdir()
    env = podman_env(busybox_image, cleanenv=cleanenv)
    request = request_for(Job(panda_id=1), env.settings, NodeSettings(), [str(job_dir)])
    command = payload(job_dir)
    env.prepare(request, command.env)
    values = check(run(env.wrap(command, request)), job_dir, cleanenv=cleanenv)
    assert values["path"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the image's


def test_podman_rootfs_directory(podman: Podman, busybox_rootfs: Path, tmp_path: Path) -> None:
    """A path as image runs with ``--rootfs DIR``."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    env = podman_env(str(busybox_rootfs))
    request = EnvironmentRequest(str(busybox_rootfs), (), (str(job_dir),))
    env.prepare(request, dict(os.environ))
    wrapped = env.wrap(payload(job_dir), request)
    assert "--rootfs" in wrapped.argv
    check(run(wrapped), job_dir, cleanenv=True)


def test_podman_streams_stdin(podman: Podman, busybox_image: str, tmp_path: Path) -> None:
    """``-i``: a streaming payload reads its ranges on stdin and sees their end."""
    env = podman_env(busybox_image)
    command = Command(
        ("sh", "-c", "while read l; do echo got:$l; done; echo eof"), dict(os.environ), str(tmp_path)
    )
    result = run(env.wrap(command, EnvironmentRequest(busybox_image, (), (str(tmp_path),))), stdin="r1\nr2\n")
    assert result.stdout.splitlines() == ["got:r1", "got:r2", "eof"], result.stderr


def test_podman_exit_code_and_stop(podman: Podman, busybox_image: str, tmp_path: Path) -> None:
    """The payload's exit code comes back; SIGTERM to the process group ends the container (``--init``)."""
    env = podman_env(busybox_image)
    request = EnvironmentRequest(busybox_image, (), (str(tmp_path),))
    failing = env.wrap(Command(("sh", "-c", "exit 7"), dict(os.environ), str(tmp_path)), request)
    assert run(failing).returncode == 7
    started = tmp_path / "started"
    sleeper = env.wrap(
        Command(("sh", "-c", f"touch '{started}'; sleep 60"), dict(os.environ), str(tmp_path)), request
    )
    proc = subprocess.Popen(
        sleeper.argv, env=sleeper.env, cwd=sleeper.cwd, start_new_session=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the payload did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = subprocess.run(
        [podman.program, "ps", "-a", "-q", "--filter", f"ancestor={busybox_image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == "", "a container outlived its stopped payload"
