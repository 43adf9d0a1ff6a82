"""The batch-script templates in launchers/: rendered as Harvester does; directives, shell checks, signals."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcpilot.batch.script import (
    HARVESTER_PLACEHOLDERS,
    ScriptRequest,
    drop_empty_directives,
    find_template,
    render_script,
    template_fields,
    templates_dir,
)
from hpcpilot.model.errors import ConfigError
from tests.conftest import need

TEMPLATES = ("slurm", "pbs", "lsf")
# the placeholders Harvester's slurm_submitter.make_placeholder_map fills in (it has no gtag)
SLURM_SUBMITTER_PLACEHOLDERS = set(HARVESTER_PLACEHOLDERS) - {"gtag"}


class SafeDict(dict[str, object]):
    """Harvester's core_utils.SafeDict: newer submitters use ``template.format_map(SafeDict(values))``."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def request(tmp_path: Path, **kwargs: object) -> ScriptRequest:
    access_point = tmp_path / "ap"
    access_point.mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "n_node": 4,
        "n_core_per_node": 32,
        "walltime_s": 5400,
        "access_point": str(access_point),
        "queue": "debug",
        "log_dir": str(tmp_path / "logs"),
        "worker_id": "17",
    }
    fields.update(kwargs)
    return ScriptRequest(**fields)  # type: ignore[arg-type]


def rendered(name: str, req: ScriptRequest) -> str:
    return render_script(find_template(name).read_text(), req.values(), source=name)


def directives(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix + " ")]


# --- values ---------------------------------------------------------------------------------------


def test_values_are_harvesters(tmp_path: Path) -> None:
    req = request(tmp_path, walltime_s=5401, harvester_id="h1", computing_site="SITE", panda_queue="Q")
    values = req.values()
    assert set(values) == set(HARVESTER_PLACEHOLDERS)
    assert values["nCoreTotal"] == 128
    assert values["nNode"] == 4
    assert values["nCorePerNode"] == 32
    assert values["requestWalltime"] == 5401
    assert values["requestWalltimeMinute"] == 91  # rounded up
    assert request(tmp_path, walltime_s=5400).values()["requestWalltimeMinute"] == 90
    assert values["requestRam"] == 128  # no memory asked for: Harvester's floor of 1 MB per core
    assert request(tmp_path, request_ram_mb=64000).values()["requestRam"] == 64000
    assert values["accessPoint"] == str(tmp_path / "ap")
    assert values["logDir"] == str(tmp_path / "logs")
    assert values["localQueueName"] == "debug"
    assert (values["harvesterID"], values["computingSite"], values["pandaQueueName"]) == ("h1", "SITE", "Q")
    assert values["workerID"] == "17"
    # without a log directory the logs go to the access point
    assert request(tmp_path, log_dir="").values()["logDir"] == str(tmp_path / "ap")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_node": 0}, "n_node"),
        ({"n_core_per_node": 0}, "n_core_per_node"),
        ({"walltime_s": 0}, "walltime_s"),
        ({"request_ram_mb": -1}, "request_ram_mb"),
        ({"access_point": "relative/ap"}, "access_point"),
        ({"access_point": "/scratch/my ap"}, "access_point"),
        ({"access_point": '/scratch/a"b'}, "access_point"),
        ({"log_dir": "/logs/$USER"}, "log_dir"),
    ],
)
def test_bad_requests_name_the_field(tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        request(tmp_path, **kwargs)
    assert field in str(err.value)
    assert err.value.context["field"] == field


# --- rendering ------------------------------------------------------------------------------------


def test_render_is_str_format_and_names_unknown_placeholders() -> None:
    values = {"nNode": 2}
    assert render_script("N={nNode} H=${{HOME}} {{x}}", values) == "N=2 H=${HOME} {x}"
    with pytest.raises(ConfigError) as err:
        render_script("#!/bin/bash\necho ${HOME} {nNode} {nGpu}\n", values, source="my.sh")
    message = str(err.value)
    assert "my.sh" in message and "{HOME}" in message and "{nGpu}" in message
    assert "${{VAR}}" in message  # the hint
    assert err.value.context["placeholder"] == "HOME, nGpu"
    with pytest.raises(ConfigError, match="positional placeholder"):
        render_script("echo {}", values)
    with pytest.raises(ConfigError, match="not a valid template"):
        render_script("if true; then echo }; fi", values)
    assert template_fields("{a} {b.c} {a[0]} {{d}}") == ["a", "b"]


def test_find_template(tmp_path: Path) -> None:
    assert find_template("slurm") == templates_dir() / "slurm.sh"
    assert find_template("pbs.sh") == templates_dir() / "pbs.sh"
    own = tmp_path / "site.sh"
    own.write_text("#!/bin/bash\n")
    assert find_template(str(own)) == own
    with pytest.raises(ConfigError) as err:
        find_template("sge")
    assert "batch.template" in str(err.value)
    assert {"slurm.sh", "pbs.sh", "lsf.sh"} <= set(err.value.context["available"].split(", "))


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_use_only_harvester_placeholders(name: str) -> None:
    fields = set(template_fields(find_template(name).read_text(), source=name))
    assert fields <= SLURM_SUBMITTER_PLACEHOLDERS, fields - SLURM_SUBMITTER_PLACEHOLDERS
    assert {"nNode", "accessPoint", "workerID", "localQueueName", "logDir"} <= fields


@pytest.mark.parametrize("name", TEMPLATES)
def test_harvesters_own_rendering_gives_the_same_script(tmp_path: Path, name: str) -> None:
    req = request(tmp_path)
    template = find_template(name).read_text()
    script = rendered(name, req)
    assert template.format(**req.values()) == script
    assert template.format_map(SafeDict(req.values())) == script
    assert "{" not in script.replace("${", "")  # every placeholder filled, no format braces left


def test_slurm_directives(tmp_path: Path) -> None:
    script = rendered("slurm", request(tmp_path))
    ap, logs = tmp_path / "ap", tmp_path / "logs"
    assert directives(script, "#SBATCH") == [
        "#SBATCH --job-name=hpcpilot-17",
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --time=90",  # minutes
        "#SBATCH --partition=debug",
        f"#SBATCH --chdir={ap}",
        f"#SBATCH -o {logs}/hpcpilot-17.%j.out",
        f"#SBATCH -e {logs}/hpcpilot-17.%j.err",
        "#SBATCH --signal=B:USR1@300",
    ]
    assert f'cd "{ap}"' in script


def test_pbs_directives(tmp_path: Path) -> None:
    script = rendered("pbs", request(tmp_path))
    logs = tmp_path / "logs"
    assert directives(script, "#PBS") == [
        "#PBS -N hpcpilot-17",
        "#PBS -l select=4:ncpus=32:mpiprocs=1",
        "#PBS -l place=scatter",
        # PBS durations are [[hours:]minutes:]seconds: 5400 is 01:30:00 (no placeholder gives HH:MM:SS)
        "#PBS -l walltime=5400",
        "#PBS -q debug",
        f"#PBS -o {logs}/hpcpilot-17.out",
        f"#PBS -e {logs}/hpcpilot-17.err",
        "#PBS -r n",
        "#PBS -S /bin/bash",  # else the user's login shell reads the script
    ]
    assert f'cd "{tmp_path / "ap"}"' in script
    assert "SIGTERM" in script and "kill_delay" in script  # no warning signal in PBS: documented


def test_lsf_directives(tmp_path: Path) -> None:
    script = rendered("lsf", request(tmp_path))
    ap, logs = tmp_path / "ap", tmp_path / "logs"
    assert directives(script, "#BSUB") == [
        "#BSUB -J hpcpilot-17",
        "#BSUB -n 128",
        '#BSUB -R "span[ptile=32]"',
        "#BSUB -W 90",  # minutes
        "#BSUB -q debug",
        f"#BSUB -cwd {ap}",
        f"#BSUB -o {logs}/hpcpilot-17.%J.out",
        f"#BSUB -e {logs}/hpcpilot-17.%J.err",
        "#BSUB -wa USR1",
        "#BSUB -wt 5",
    ]
    assert f'cd "{ap}"' in script


@pytest.mark.parametrize(("name", "prefix"), [("slurm", "#SBATCH"), ("pbs", "#PBS"), ("lsf", "#BSUB")])
def test_empty_queue_directive_can_be_dropped(tmp_path: Path, name: str, prefix: str) -> None:
    script = rendered(name, request(tmp_path, queue=""))
    dropped = drop_empty_directives(script)
    assert len(directives(dropped, prefix)) == len(directives(script, prefix)) - 1
    assert not any("partition" in d or " -q" in d for d in directives(dropped, prefix))
    assert len(dropped.splitlines()) == len(script.splitlines()) - 1
    assert drop_empty_directives(rendered(name, request(tmp_path))) == rendered(name, request(tmp_path))


# --- shell ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_rendered_scripts_pass_bash_n_and_shellcheck(tmp_path: Path, name: str) -> None:
    for queue in ("debug", ""):
        path = tmp_path / f"{name}-{queue or 'noqueue'}.sh"
        path.write_text(drop_empty_directives(rendered(name, request(tmp_path, queue=queue))))
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert syntax.returncode == 0, syntax.stderr
    need(shutil.which("shellcheck") is not None, "shellcheck")
    for path in sorted(tmp_path.glob("*.sh")):
        check = subprocess.run(
            ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout


FAKE_PYTHON = """#!/bin/bash
# stands in for the interpreter: records its arguments and the signals it gets
echo $$ > "$FAKE_DIR/pid"
printf '%s\\n' "$@" > "$FAKE_DIR/args"
pwd > "$FAKE_DIR/cwd"
echo "${SETUP_MARK:-unset}" > "$FAKE_DIR/setup"
trap 'echo TERM >> "$FAKE_DIR/signals"' TERM
trap 'echo USR1 >> "$FAKE_DIR/signals"; exit "$FAKE_STATUS"' USR1
if [ -n "${FAKE_EXIT_AT_ONCE:-}" ]; then exit "$FAKE_EXIT_AT_ONCE"; fi
touch "$FAKE_DIR/ready"
while :; do sleep 0.05; done
"""


@pytest.fixture
def reap(tmp_path: Path) -> Iterator[None]:
    """Kill a fake pilot that a failed test left behind (by its recorded pid)."""
    yield
    pid_file = tmp_path / "fake" / "pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _start(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    fake = fake_dir / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    script = tmp_path / f"{name}.sh"
    script.write_text(rendered(name, request(tmp_path)))
    full_env = {
        "PATH": os.environ["PATH"],
        "HPCPILOT_PYTHON": str(fake),
        "FAKE_DIR": str(fake_dir),
        "FAKE_STATUS": "5",
        **env,
    }
    proc = subprocess.Popen(["bash", str(script)], env=full_env, text=True, stderr=subprocess.PIPE)
    return proc, fake_dir


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"the script ended early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.usefixtures("reap")
def test_script_forwards_usr1_and_exits_with_the_pilots_status(tmp_path: Path, name: str) -> None:
    setup = tmp_path / "setup.sh"
    setup.write_text('export SETUP_MARK="sourced ${SOME_UNSET_VARIABLE:+x}$NOT_SET_EITHER"\n')
    proc, fake = _start(tmp_path, name, {"HPCPILOT_SITE": "mysite", "HPCPILOT_SETUP": str(setup)})
    _wait_for(fake / "ready", proc)
    # a TERM first: forwarded, and the script keeps waiting for the pilot, which goes on
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not (fake / "signals").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None
    # then the batch system's warning signal: the pilot drains and exits 5, and so does the script
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=20) == 5, proc.stderr.read() if proc.stderr else ""
    assert (fake / "signals").read_text().split() == ["TERM", "USR1"]
    ap = str(tmp_path / "ap")
    assert (fake / "args").read_text().splitlines() == [
        "-m", "hpcpilot", "launch", "--workdir", ap, "--site", "mysite",
        "--", "run", "--workdir", ap, "--site", "mysite",
    ]  # fmt: skip
    assert (fake / "cwd").read_text().strip() == ap
    assert (fake / "setup").read_text().strip() == "sourced"


@pytest.mark.usefixtures("reap")
def test_script_without_site_and_a_failing_pilot(tmp_path: Path) -> None:
    proc, fake = _start(tmp_path, "slurm", {"FAKE_EXIT_AT_ONCE": "3"})
    assert proc.wait(timeout=20) == 3
    ap = str(tmp_path / "ap")
    assert (fake / "args").read_text().splitlines() == [
        "-m", "hpcpilot", "launch", "--workdir", ap, "--", "run", "--workdir", ap,
    ]  # fmt: skip
    assert (fake / "setup").read_text().strip() == "unset"


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.usefixtures("reap")
def test_script_gives_the_pilot_harvesters_configuration(tmp_path: Path, name: str) -> None:
    # issue 14, 1b: Harvester's jobSpecFile (pandaJobData.out at a site) is known only from its config
    cfg = tmp_path / "site harvester.cfg"
    cfg.write_text("[payload_interaction]\njobSpecFile = pandaJobData.out\n")
    proc, fake = _start(tmp_path, name, {"FAKE_EXIT_AT_ONCE": "0", "HPCPILOT_HARVESTER_CONFIG": str(cfg)})
    assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    ap = str(tmp_path / "ap")
    assert (fake / "args").read_text().splitlines() == [
        "-m", "hpcpilot", "launch", "--workdir", ap,
        "--", "run", "--workdir", ap, "--harvester-config", str(cfg),
    ]  # fmt: skip


@pytest.mark.usefixtures("reap")
def test_script_finds_harvesters_configuration_under_panda_home(tmp_path: Path) -> None:
    home = tmp_path / "harvester"
    (home / "etc" / "panda").mkdir(parents=True)
    cfg = home / "etc" / "panda" / "panda_harvester.cfg"
    cfg.write_text("[payload_interaction]\njobSpecFile = pandaJobData.out\n")
    proc, fake = _start(tmp_path, "slurm", {"FAKE_EXIT_AT_ONCE": "0", "PANDA_HOME": str(home)})
    assert proc.wait(timeout=20) == 0
    args = (fake / "args").read_text().splitlines()
    assert args[-2:] == ["--harvester-config", str(cfg)]
    (fake / "args").unlink()
    (fake / "pid").unlink()
    cfg.unlink()  # not readable here: nothing is passed (the pilot's own settings apply)
    proc = subprocess.Popen(
        ["bash", str(tmp_path / "slurm.sh")],
        env={
            "PATH": os.environ["PATH"],
            "HPCPILOT_PYTHON": str(fake / "python"),
            "FAKE_DIR": str(fake),
            "FAKE_EXIT_AT_ONCE": "0",
            "PANDA_HOME": str(home),
        },
        text=True,
    )
    assert proc.wait(timeout=20) == 0
    assert "--harvester-config" not in (fake / "args").read_text().splitlines()
