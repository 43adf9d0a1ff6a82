"""Golden tables: one payload command -> the exact argv of every environment plugin; the chain; the
environment family's conformance; ``request_for`` and the ``prepare`` checks.

The real runs (Lmod, ch-run, podman) are in tests/environment; the module-output parser is tested on
recorded real output in test_environment_modules.py.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hpcpilot.config.schema import EnvironmentSettings, NodeSettings
from hpcpilot.environment.apptainer import ApptainerEnvironment, image_reference
from hpcpilot.environment.base import (
    Environment,
    EnvironmentChain,
    EnvironmentRequest,
    make_chain,
    request_for,
)
from hpcpilot.environment.charliecloud import CharliecloudEnvironment, keep_only_glob
from hpcpilot.environment.containers import parse_bind, parse_binds, passed_names
from hpcpilot.environment.modules import ModulesEnvironment
from hpcpilot.environment.podman import PodmanEnvironment
from hpcpilot.environment.shifter import ShifterEnvironment, image_descriptor
from hpcpilot.model.command import Command
from hpcpilot.model.errors import ConfigError, EnvironmentSetupError, ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.plugins import FAMILIES, describe_plugins, load_plugin
from hpcpilot.runtime.commands import CommandResult

REGISTERED = sorted(ep.name for ep in entry_points(group="hpcpilot.environments"))
CONTAINERS = sorted(set(REGISTERED) - {"plain", "modules"})

PAYLOAD = ("/opt/atlas/run.sh", "--events", "10 20")
CMD = Command(
    PAYLOAD,
    {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/u",
        "USER": "u",
        "PANDAID": "42",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "ATHENA_PROC_NUMBER": "8",
        "SITE_VAR": "x",
    },
    "/scratch/job 42",
    frozenset({"PANDAID", "CUDA_VISIBLE_DEVICES", "ATHENA_PROC_NUMBER"}),
)
IMAGE = "atlas/athena:22.0"
JOB = "/scratch/job 42"
BINDS = ("/scratch/job 42", "/cvmfs:/cvmfs:ro", "/data/in:/input")
CASES = {  # case -> (cleanenv, gpu vendor)
    "clean": (True, ""),
    "clean_nvidia": (True, "nvidia"),
    "clean_amd": (True, "amd"),
    "host_env": (False, ""),
}

_APPTAINER_ENV = ["--env", "ATHENA_PROC_NUMBER=8", "--env", "CUDA_VISIBLE_DEVICES=0,1", "--env", "PANDAID=42"]
_APPTAINER_BINDS = ["-B", "/scratch/job 42", "-B", "/cvmfs:/cvmfs:ro", "-B", "/data/in:/input"]
_CH_BINDS = ["-b", "/scratch/job 42:/scratch/job 42", "-b", "/cvmfs:/cvmfs", "-b", "/data/in:/input"]
_CH_CLEAN = [
    "--unset-env=!(ATHENA_PROC_NUMBER|CUDA_VISIBLE_DEVICES|PANDAID)",
    "--set-env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
]
_SHIFTER_VOLUMES = [
    "--volume=/scratch/job 42:/scratch/job 42",
    "--volume=/cvmfs:/cvmfs:ro",
    "--volume=/data/in:/input",
]
_PODMAN_RUN = ["run", "--rm", "-i", "--init", "--network=host", "--log-driver=none"]
_PODMAN_BINDS = ["-v", "/scratch/job 42:/scratch/job 42", "-v", "/cvmfs:/cvmfs:ro", "-v", "/data/in:/input"]
_PODMAN_KEPT = ["--env", "ATHENA_PROC_NUMBER", "--env", "CUDA_VISIBLE_DEVICES", "--env", "PANDAID"]

# runtime -> case -> the whole argv before the payload's, written out literally
GOLDEN: dict[str, dict[str, list[str]]] = {
    "apptainer": {
        "clean": [
            "apptainer", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS, "--pwd", JOB,
            "docker://atlas/athena:22.0",
        ],
        "clean_nvidia": [
            "apptainer", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS, "--pwd", JOB,
            "--nv", "docker://atlas/athena:22.0",
        ],
        "clean_amd": [
            "apptainer", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS, "--pwd", JOB,
            "--rocm", "docker://atlas/athena:22.0",
        ],
        "host_env": [
            "apptainer", "exec", *_APPTAINER_ENV, *_APPTAINER_BINDS, "--pwd", JOB,
            "docker://atlas/athena:22.0",
        ],
    },
    "singularity": {
        "clean": [
            "singularity", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS,
            "--pwd", JOB, "docker://atlas/athena:22.0",
        ],
        "clean_nvidia": [
            "singularity", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS,
            "--pwd", JOB, "--nv", "docker://atlas/athena:22.0",
        ],
        "clean_amd": [
            "singularity", "exec", "--cleanenv", *_APPTAINER_ENV, *_APPTAINER_BINDS,
            "--pwd", JOB, "--rocm", "docker://atlas/athena:22.0",
        ],
        "host_env": [
            "singularity", "exec", *_APPTAINER_ENV, *_APPTAINER_BINDS, "--pwd", JOB,
            "docker://atlas/athena:22.0",
        ],
    },
    "charliecloud": {
        "clean": ["ch-run", *_CH_BINDS, "-c", JOB, *_CH_CLEAN, IMAGE, "--"],
        "clean_nvidia": ["ch-run", *_CH_BINDS, "-c", JOB, *_CH_CLEAN, IMAGE, "--"],
        "clean_amd": ["ch-run", *_CH_BINDS, "-c", JOB, *_CH_CLEAN, IMAGE, "--"],
        "host_env": ["ch-run", *_CH_BINDS, "-c", JOB, IMAGE, "--"],
    },
    "shifter": {
        "clean": [
            "shifter", "--image=docker:atlas/athena:22.0", *_SHIFTER_VOLUMES, f"--workdir={JOB}", "--",
        ],
        "clean_nvidia": [
            "shifter", "--image=docker:atlas/athena:22.0", *_SHIFTER_VOLUMES, f"--workdir={JOB}",
            "--module=gpu", "--",
        ],
        "clean_amd": [
            "shifter", "--image=docker:atlas/athena:22.0", *_SHIFTER_VOLUMES, f"--workdir={JOB}", "--",
        ],
        "host_env": [
            "shifter", "--image=docker:atlas/athena:22.0", *_SHIFTER_VOLUMES, f"--workdir={JOB}", "--",
        ],
    },
    "podman": {
        "clean": ["podman", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT, IMAGE],
        "clean_nvidia": [
            "podman", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT,
            "--device", "nvidia.com/gpu=all", IMAGE,
        ],
        "clean_amd": [
            "podman", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT,
            "--device", "/dev/kfd", "--device", "/dev/dri", IMAGE,
        ],
        "host_env": [
            "podman", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT,
            "--env", "SITE_VAR", "--env", "USER", IMAGE,
        ],
    },
    "podman-hpc": {
        "clean": ["podman-hpc", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT, IMAGE],
        "clean_nvidia": [
            "podman-hpc", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT, "--gpu", IMAGE,
        ],
        "clean_amd": [
            "podman-hpc", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT,
            "--device", "/dev/kfd", "--device", "/dev/dri", IMAGE,
        ],
        "host_env": [
            "podman-hpc", *_PODMAN_RUN, *_PODMAN_BINDS, "-w", JOB, *_PODMAN_KEPT,
            "--env", "SITE_VAR", "--env", "USER", IMAGE,
        ],
    },
    "plain": {"clean": [], "clean_nvidia": [], "clean_amd": [], "host_env": []},
}  # fmt: skip


def plugin(name: str, **settings: object) -> Environment:
    cls = load_plugin("environments", name, Environment)
    return cls(EnvironmentSettings(chain=name, **settings))  # type: ignore[arg-type]


def request(gpu: str = "", image: str = IMAGE, binds: Sequence[str] = BINDS) -> EnvironmentRequest:
    return EnvironmentRequest(image, (), tuple(binds), gpu)


def refuse(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
    raise AssertionError(f"no command may run here: {argv}")


# --- golden tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("runtime", "case"), [(r, c) for r in sorted(GOLDEN) for c in sorted(CASES)])
def test_golden_argv(runtime: str, case: str) -> None:
    cleanenv, gpu = CASES[case]
    wrapped = plugin(runtime, cleanenv=cleanenv, gpu=bool(gpu)).wrap(CMD, request(gpu))
    assert list(wrapped.argv) == [*GOLDEN[runtime][case], *PAYLOAD]
    assert wrapped.cwd == CMD.cwd and wrapped.keep == CMD.keep


def test_golden_table_covers_every_registered_runtime() -> None:
    assert sorted(GOLDEN) == sorted(set(REGISTERED) - {"modules"})
    assert all(sorted(rows) == sorted(CASES) for rows in GOLDEN.values())


def test_golden_environments() -> None:
    """What the runtime process itself gets: only shifter (clean) and charliecloud (no USER) change it."""
    for name in ("apptainer", "singularity", "podman", "podman-hpc", "charliecloud", "plain"):
        assert plugin(name).wrap(CMD, request()).env == CMD.env, name
    shifter = plugin("shifter").wrap(CMD, request())
    assert shifter.env == {k: v for k, v in CMD.env.items() if k != "SITE_VAR"}
    assert plugin("shifter", cleanenv=False).wrap(CMD, request()).env == CMD.env


def test_options_go_before_the_image() -> None:
    infra = "--runtime /usr/sbin/runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    argv = plugin("podman", options=infra).wrap(CMD, request()).argv
    assert list(argv[-len(PAYLOAD) - 7 :]) == [*infra.split(), IMAGE, *PAYLOAD]
    argv = plugin("apptainer", options="--contain --home '/tmp/a b'").wrap(CMD, request()).argv
    assert list(argv[-len(PAYLOAD) - 4 :]) == [
        "--contain",
        "--home",
        "/tmp/a b",
        "docker://" + IMAGE,
        *PAYLOAD,
    ]
    argv = plugin("charliecloud", options="--private-tmp").wrap(CMD, request()).argv
    assert list(argv[-len(PAYLOAD) - 3 :]) == ["--private-tmp", IMAGE, "--", *PAYLOAD]
    argv = plugin("shifter", options="--entrypoint").wrap(CMD, request()).argv
    assert list(argv[-len(PAYLOAD) - 2 :]) == ["--entrypoint", "--", *PAYLOAD]


def test_executable_replaces_the_program() -> None:
    for name in CONTAINERS:
        argv = plugin(name, executable="/site/bin/runtime").wrap(CMD, request()).argv
        assert argv[0] == "/site/bin/runtime"
        assert argv[1:] == plugin(name).wrap(CMD, request()).argv[1:]


# --- images, binds, variables: the details behind the table ------------------------------------------


def test_image_forms() -> None:
    assert image_reference("/images/atlas.sif") == "/images/atlas.sif"
    assert image_reference("docker://atlas/athena:22") == "docker://atlas/athena:22"
    assert image_reference("oras://ghcr.io/x/y:1") == "oras://ghcr.io/x/y:1"
    assert image_reference("atlas/athena:22") == "docker://atlas/athena:22"
    assert image_descriptor("docker://atlas/athena:22") == "docker:atlas/athena:22"
    assert image_descriptor("id:0123abcd") == "id:0123abcd"
    assert image_descriptor("ubuntu:22.04") == "docker:ubuntu:22.04"
    podman = plugin("podman").wrap(CMD, request(image="/images/rootfs")).argv
    assert list(podman[-len(PAYLOAD) - 2 :]) == ["--rootfs", "/images/rootfs", *PAYLOAD]
    apptainer = plugin("apptainer").wrap(CMD, request(image="/images/atlas.sif")).argv
    assert apptainer[-len(PAYLOAD) - 1] == "/images/atlas.sif"


def test_bind_specs() -> None:
    assert parse_bind("/a") == parse_bind("/a/") == parse_bind("/a:/a")
    bind = parse_bind("/cvmfs:/cvmfs:ro")
    assert (bind.source, bind.target, bind.options) == ("/cvmfs", "/cvmfs", "ro")
    assert bind.spec() == "/cvmfs:/cvmfs:ro" and bind.spec(with_options=False) == "/cvmfs"
    assert parse_bind("/data/in:/input").full_spec() == "/data/in:/input"
    assert parse_bind("/a::ro").target == "/a"
    # a target bound twice keeps its first spec (the work directory before a site bind)
    assert [b.source for b in parse_binds(["/w", "/other:/w", "", "/x"])] == ["/w", "/x"]
    for bad in ("relative/dir", "/a:relative", "/a:/b:ro:extra", ":/b"):
        with pytest.raises(EnvironmentSetupError) as err:
            parse_bind(bad)
        assert err.value.context["field"] == "environment.binds"


def test_kept_values_apptainer_cannot_parse_go_in_by_prefix() -> None:
    """``--env`` splits ``K=a=b,c`` at commas: such values go in as APPTAINERENV_K in the environment."""
    odd = Command(
        ("true",), {"A": "x=1,y=2", "B": 'say "hi"', "C": "plain"}, "/w", frozenset({"A", "B", "C"})
    )
    for name, prefix in (("apptainer", "APPTAINERENV_"), ("singularity", "SINGULARITYENV_")):
        wrapped = plugin(name).wrap(odd, request(binds=()))
        assert "--env" in wrapped.argv and "C=plain" in wrapped.argv
        assert not any(a.startswith(("A=", "B=")) for a in wrapped.argv)
        assert wrapped.env[f"{prefix}A"] == "x=1,y=2" and wrapped.env[f"{prefix}B"] == 'say "hi"'
        assert f"{prefix}C" not in wrapped.env


def test_passed_names() -> None:
    env = {"A": "1", "PATH": "/bin", "HOME": "/h", "BASH_FUNC_f%%": "() { :; }", "KEPT_UNSET": ""}
    command = Command(("true",), env, "/w", frozenset({"A", "PATH", "NOT_SET"}))
    assert passed_names(command, cleanenv=True) == ("A", "PATH")
    assert passed_names(command, cleanenv=False) == ("A", "KEPT_UNSET", "PATH")


def test_charliecloud_keep_glob() -> None:
    assert keep_only_glob(()) == "*"
    assert keep_only_glob(("A", "B_1")) == "!(A|B_1)"
    assert keep_only_glob(("odd(name)",)) == "!(odd\\(name\\))"
    nothing_kept = Command(("true",), {"A": "1"}, "/w")
    argv = plugin("charliecloud").wrap(nothing_kept, request(binds=())).argv
    assert "--unset-env=*" in argv
    path_kept = Command(("true",), {"PATH": "/opt/bin"}, "/w", frozenset({"PATH"}))
    argv = plugin("charliecloud").wrap(path_kept, request(binds=())).argv
    assert "--unset-env=!(PATH)" in argv and not any(a.startswith("--set-env") for a in argv)


def test_shifter_modules_are_merged() -> None:
    argv = plugin("shifter", gpu=True, options="--module=mpich -v").wrap(CMD, request("nvidia")).argv
    assert "--module=gpu,mpich" in argv and "-v" in argv
    assert sum(a.startswith("--module") for a in argv) == 1


def test_relative_cwd_is_left_to_the_runtime() -> None:
    here = Command(PAYLOAD, {}, ".")
    for name, flag in (("apptainer", "--pwd"), ("charliecloud", "-c"), ("podman", "-w")):
        assert flag not in plugin(name).wrap(here, request(binds=())).argv
    assert not any(a.startswith("--workdir") for a in plugin("shifter").wrap(here, request(binds=())).argv)


# --- the chain ---------------------------------------------------------------------------------------


def fake_module_tool(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
    """A module tool that loads one module: sets MOD_HOME, prepends PATH."""
    assert env is not None and tuple(argv) == ("lmod", "python", "load", "tool/1")
    out = "import os\nos.environ['MOD_HOME'] = '/opt/tool'\nos.environ['PATH'] = '/opt/tool/bin:/usr/bin'\n"
    return CommandResult(tuple(argv), 0, out + "_mlstatus = True\n", "")


def test_chain_modules_outside_container_inside() -> None:
    settings = EnvironmentSettings(
        chain=("modules", "apptainer"), modules_load=("tool/1",), module_cmd="lmod"
    )
    chain = make_chain(settings, fake_module_tool)
    assert [type(e).__name__ for e in chain.environments] == ["ModulesEnvironment", "ApptainerEnvironment"]
    req = EnvironmentRequest("/images/a.sif", ("tool/1",), ("/scratch/job 42",))
    chain.environments[0].prepare(req, CMD.env)  # the container's prepare checks a real image: not here
    wrapped = chain.wrap(CMD, req)
    # the container argv (inner) ...
    assert list(wrapped.argv) == [
        "apptainer", "exec", "--cleanenv", *_APPTAINER_ENV, "-B", JOB, "--pwd", JOB,
        "/images/a.sif", *PAYLOAD,
    ]  # fmt: skip
    # ... runs with the modules' environment (outer): apptainer itself comes from the module's PATH
    assert wrapped.env["MOD_HOME"] == "/opt/tool" and wrapped.env["PATH"] == "/opt/tool/bin:/usr/bin"
    assert wrapped.env["PANDAID"] == "42" and wrapped.keep == CMD.keep
    # the other order loads the modules into the payload's environment first: with a clean container
    # they never reach the payload (they are not its own variables), so modules belong outside
    inner = EnvironmentChain([chain.environments[1], chain.environments[0]]).wrap(CMD, req)
    assert inner.argv == wrapped.argv and not any("MOD_HOME" in a for a in inner.argv)


def test_chain_prepares_the_runtime_in_the_modules_environment(tmp_path: Path) -> None:
    """``modules,apptainer`` with apptainer from a module: its check sees the module's PATH."""
    bindir = tmp_path / "apptainer" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "apptainer").write_text("#!/bin/sh\n")
    (bindir / "apptainer").chmod(0o755)

    def module_tool(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        out = f"import os\nos.environ['PATH'] = '{bindir}:/usr/bin'\n_mlstatus = True\n"
        return CommandResult(tuple(argv), 0, out, "")

    settings = EnvironmentSettings(
        chain=("modules", "apptainer"), modules_load=("apptainer",), module_cmd="lmod"
    )
    req = EnvironmentRequest("docker://atlas/athena:22", ("apptainer",), ())
    make_chain(settings, module_tool).prepare(req, {"PATH": "/usr/bin"})
    with pytest.raises(EnvironmentSetupError, match="'apptainer' is not installed"):
        make_chain(replace(settings, chain=("apptainer",)), module_tool).prepare(req, {"PATH": "/usr/bin"})


def test_chain_order_and_prepare() -> None:
    calls: list[str] = []

    class Recorder(Environment):
        def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
            calls.append(f"prepare {self.settings.options}")

        def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
            return command.with_argv((self.settings.options, *command.argv))

    chain = EnvironmentChain([Recorder(EnvironmentSettings(options=n)) for n in ("outer", "inner")])
    chain.prepare(EnvironmentRequest(), {})
    assert calls == ["prepare outer", "prepare inner"]
    assert chain.wrap(Command(("p",)), EnvironmentRequest()).argv == ("outer", "inner", "p")


def test_empty_chain_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names no environment"):
        make_chain(EnvironmentSettings(chain=()))


# --- conformance: every registered plugin ------------------------------------------------------------


class TestConformance:
    """What every ``hpcpilot.environments`` plugin must do, loaded as the worker loads it."""

    @staticmethod
    def prepared(name: str) -> tuple[Environment, EnvironmentRequest]:
        cls = load_plugin("environments", name, Environment)
        if cls is ModulesEnvironment:
            env = cls(EnvironmentSettings(modules_load=("tool/1",), module_cmd="lmod"), fake_module_tool)
            req = EnvironmentRequest("", ("tool/1",), BINDS, "nvidia")
            env.prepare(req, CMD.env)
            return env, req
        return cls(EnvironmentSettings(gpu=True), refuse), request("nvidia")

    def test_family(self) -> None:
        assert FAMILIES["environments"].base_class() is Environment
        assert {i.name for i in describe_plugins() if i.family == "environments" and i.loads} == set(
            REGISTERED
        )
        assert set(REGISTERED) >= {
            "plain", "modules", "apptainer", "singularity", "charliecloud", "shifter", "podman", "podman-hpc",
        }  # fmt: skip

    @pytest.mark.parametrize("name", REGISTERED)
    def test_documented(self, name: str) -> None:
        cls = load_plugin("environments", name, Environment)
        assert issubclass(cls, Environment)
        assert cls.__doc__ and cls.wrap.__doc__ and sys.modules[cls.__module__].__doc__

    @pytest.mark.parametrize("name", REGISTERED)
    def test_wrap_is_pure(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        env, req = self.prepared(name)

        def no_process(*args: object, **kwargs: object) -> None:
            raise AssertionError("wrap started a process")

        monkeypatch.setattr(subprocess, "Popen", no_process)
        before = copy.deepcopy(CMD)
        first = env.wrap(CMD, req)
        second = env.wrap(CMD, req)
        assert first == second
        assert before == CMD and dict(CMD.env) == dict(before.env)
        assert isinstance(first, Command) and isinstance(first.argv, tuple)
        assert all(isinstance(a, str) and a for a in first.argv[: len(first.argv) - len(PAYLOAD)])

    @pytest.mark.parametrize("name", REGISTERED)
    def test_payload_argv_stays_at_the_end(self, name: str) -> None:
        env, req = self.prepared(name)
        for payload in (PAYLOAD, ("sh", "-c", "echo $A; exit 3"), ("--looks-like-an-option", "")):
            wrapped = env.wrap(Command(payload, CMD.env, CMD.cwd, CMD.keep), req)
            assert wrapped.argv[-len(payload) :] == payload
            assert wrapped.cwd == CMD.cwd and wrapped.keep == CMD.keep

    @pytest.mark.parametrize("name", CONTAINERS)
    def test_containers_need_an_image(self, name: str) -> None:
        env = load_plugin("environments", name, Environment)(EnvironmentSettings(), refuse)
        assert env.needs_image and env.executable and env.program == env.executable
        with pytest.raises(EnvironmentSetupError, match="needs a container image") as err:
            env.prepare(EnvironmentRequest(), {"PATH": "/usr/bin:/bin"})
        assert err.value.code == 1110

    @pytest.mark.parametrize("name", CONTAINERS)
    def test_a_missing_runtime_is_named(self, name: str, tmp_path: Path) -> None:
        env = load_plugin("environments", name, Environment)(EnvironmentSettings(), refuse)
        with pytest.raises(EnvironmentSetupError, match="is not installed") as err:
            env.prepare(
                request(image="docker://x/y:1" if name != "charliecloud" else "x"), {"PATH": str(tmp_path)}
            )
        assert env.executable in str(err.value) and err.value.code == 1110

    @pytest.mark.parametrize("name", ["plain", "modules"])
    def test_non_containers_need_no_image(self, name: str) -> None:
        env = load_plugin("environments", name, Environment)(EnvironmentSettings(), refuse)
        assert not env.needs_image
        env.prepare(EnvironmentRequest(), {})
        assert env.wrap(CMD, EnvironmentRequest()) == CMD


# --- prepare: the checks made once per node ----------------------------------------------------------


def test_prepare_checks_a_local_image(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin"}
    app = ApptainerEnvironment(EnvironmentSettings(executable="/bin/true"), refuse)
    missing = str(tmp_path / "atlas.sif")
    with pytest.raises(EnvironmentSetupError) as err:
        app.prepare(request(image=missing), base)
    assert missing in str(err.value) and err.value.code == 1110
    (tmp_path / "atlas.sif").write_text("")
    app.prepare(request(image=missing), base)
    app.prepare(request(image="docker://atlas/athena:22"), base)  # fetched by apptainer: not checked
    pod = PodmanEnvironment(EnvironmentSettings(executable="/bin/true"), refuse)
    with pytest.raises(EnvironmentSetupError, match="does not exist"):
        pod.prepare(request(image=str(tmp_path / "rootfs")), base)


def test_prepare_charliecloud(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin"}  # no USER: prepare finds the name, wrap gives it to ch-run
    ch = CharliecloudEnvironment(EnvironmentSettings(executable="/bin/true"), refuse)
    image = tmp_path / "img"
    (image / "scratch").mkdir(parents=True)
    with pytest.raises(EnvironmentSetupError, match="cannot pull"):
        ch.prepare(request(image="docker://x/y:1", binds=()), base)
    with pytest.raises(EnvironmentSetupError, match="takes no mount options"):
        ch.prepare(request(image=str(image), binds=("/scratch:/scratch:ro",)), base)
    with pytest.raises(EnvironmentSetupError) as err:
        ch.prepare(request(image=str(image), binds=("/scratch", "/data/in:/input")), base)
    assert "/input" in str(err.value) and "/scratch" not in str(err.value).split("target(s)")[1]
    ch.prepare(request(image=str(image), binds=("/scratch", "/tmp/x:/scratch:rw")), base)
    wrapped = ch.wrap(Command(PAYLOAD, {"PATH": "/bin"}, "/scratch"), request(image=str(image), binds=()))
    assert wrapped.env["USER"]
    kept = ch.wrap(Command(PAYLOAD, {"USER": "me"}, "/scratch"), request(image=str(image), binds=()))
    assert kept.env["USER"] == "me"


def test_prepare_shifter_refuses_a_path() -> None:
    with pytest.raises(EnvironmentSetupError, match="image gateway"):
        ShifterEnvironment(EnvironmentSettings(executable="/bin/true"), refuse).prepare(
            request(image="/images/a.sif"), {"PATH": "/usr/bin"}
        )


# --- request_for: the job's fields and the settings --------------------------------------------------


def job(container: str = "") -> Job:
    return Job(panda_id=1, container_name=container)


@pytest.mark.parametrize(
    "bad", ["img; rm -rf /", "../x", "atlas/../../etc", "my image", "img`id`", "$(id)", "'q'"]
)
def test_request_for_rejects_a_bad_container_name(bad: str) -> None:
    with pytest.raises(EnvironmentSetupError) as err:
        request_for(job(bad), EnvironmentSettings(), NodeSettings(), ["/w"])
    assert err.value.code == ErrorCode.SETUP_FAILURE and int(err.value.code) == 1110
    assert err.value.context["field"] == "container_name"
    assert "container_name" in str(err.value) and repr(bad) in str(err.value)


@pytest.mark.parametrize(
    "good",
    [
        "atlas/athena:22.0.1",
        "docker://atlas/athena:22.0",
        "/cvmfs/unpacked.cern.ch/atlas/athena:22",
        "a@sha256:0f",
    ],
)
def test_request_for_accepts_images(good: str) -> None:
    assert request_for(job(good), EnvironmentSettings(), NodeSettings(), ["/w"]).image == good


def test_request_for_settings() -> None:
    settings = EnvironmentSettings(
        image="site/default:1",
        modules_load=("gcc/12", "cray-python"),
        binds=("/cvmfs:/cvmfs:ro", "/w"),
        gpu=True,
    )
    req = request_for(job(), settings, NodeSettings(gpu_vendor="amd"), ["/w", "/scratch"])
    assert req == EnvironmentRequest(
        "site/default:1", ("gcc/12", "cray-python"), ("/w", "/scratch", "/cvmfs:/cvmfs:ro"), "amd"
    )
    assert request_for(job("own/img:2"), settings, NodeSettings(), []).image == "own/img:2"
    no_job_image = EnvironmentSettings(image="site/default:1", job_image=False)
    assert request_for(job("own/img:2"), no_job_image, NodeSettings(), []).image == "site/default:1"
    assert (
        request_for(job(), EnvironmentSettings(gpu=False), NodeSettings(gpu_vendor="nvidia"), []).gpu_vendor
        == ""
    )
    with pytest.raises(EnvironmentSetupError) as err:
        request_for(job(), EnvironmentSettings(modules_load=("gcc;ls",)), NodeSettings(), [])
    assert err.value.context["field"] == "environment.modules_load"
    with pytest.raises(EnvironmentSetupError) as err:
        request_for(job(), EnvironmentSettings(image="bad image"), NodeSettings(), [])
    assert err.value.context["field"] == "environment.image"


def test_module_names_take_the_jobs_release_and_a_missing_one_fails_the_job() -> None:
    settings = EnvironmentSettings(modules_load=("atlas/{swRelease}-{cmtConfig}", "gcc/12"))
    release = Job(panda_id=4, sw_release="Atlas-24.0.1", cmt_config="x86_64-el9-gcc13-opt")
    req = request_for(release, settings, NodeSettings(), [])
    assert req.modules == ("atlas/Atlas-24.0.1-x86_64-el9-gcc13-opt", "gcc/12")
    with pytest.raises(EnvironmentSetupError) as err:
        request_for(Job(panda_id=5, sw_release="24.0"), settings, NodeSettings(), [])
    assert err.value.code is ErrorCode.SETUP_FAILURE and err.value.context["field"] == "cmtConfig"
    injected = Job(panda_id=6, sw_release="24.0;rm -rf /", cmt_config="x")
    with pytest.raises(EnvironmentSetupError, match="not a valid module name"):
        request_for(injected, settings, NodeSettings(), [])
