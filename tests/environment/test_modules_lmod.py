"""Lmod for real: a module tree in tmp_path, ModulesEnvironment's prepare + wrap, a payload that sees it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from hpcpilot.config.schema import EnvironmentSettings, NodeSettings
from hpcpilot.environment.base import make_chain, request_for
from hpcpilot.environment.modules import ModulesEnvironment
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError
from hpcpilot.model.job import Job
from hpcpilot.runtime.commands import CommandResult, run_command


def module_tree(root: Path) -> Path:
    """``envtest/1.0``: sets ENVTEST_VAR, prepends a bin directory with ``envtest-tool`` to PATH."""
    tree = root / "modulefiles"
    (tree / "envtest").mkdir(parents=True)
    bindir = root / "apps" / "envtest" / "bin"
    bindir.mkdir(parents=True)
    tool = bindir / "envtest-tool"
    tool.write_text('#!/bin/sh\necho "tool sees: $ENVTEST_VAR"\n')
    tool.chmod(0o755)
    (tree / "envtest" / "1.0.lua").write_text(
        f'setenv("ENVTEST_VAR", "from the module")\nprepend_path("PATH", "{bindir}")\n'
    )
    return tree


def base_env() -> dict[str, str]:
    """The pilot's environment as a payload's base, without any module state of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LMOD", "_ModuleTable", "__LMOD"))}


def run_payload(command: Command) -> CommandResult:
    return run_command(command.argv, timeout_s=30, env=command.env, cwd=command.cwd)


def test_a_payload_sees_its_module(lmod: str, tmp_path: Path) -> None:
    tree = module_tree(tmp_path)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    settings = EnvironmentSettings(
        chain=("modules",), modules_use=(str(tree),), modules_load=("envtest/1.0",), modules_purge=True
    )
    request = request_for(Job(panda_id=1), settings, NodeSettings(), [str(job_dir)])
    chain = make_chain(settings)
    base = base_env()
    chain.prepare(request, base)
    payload = Command(
        ("sh", "-c", 'echo "payload sees: $ENVTEST_VAR"; envtest-tool; echo "loaded: $LOADEDMODULES"'),
        {**base, "PANDAID": "1"},
        str(job_dir),
        frozenset({"PANDAID"}),
    )
    wrapped = chain.wrap(payload, request)
    assert wrapped.argv == payload.argv  # no shell, no login: only the environment changes
    result = run_payload(wrapped)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "payload sees: from the module",
        "tool sees: from the module",
        "loaded: envtest/1.0",
    ]


def test_prepare_runs_the_tool_once(lmod: str, tmp_path: Path) -> None:
    calls: list[tuple[str, ...]] = []

    def counting(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        calls.append(tuple(argv))
        return run_command(argv, env=env)

    settings = EnvironmentSettings(modules_use=(str(module_tree(tmp_path)),), modules_load=("envtest/1.0",))
    env = ModulesEnvironment(settings, counting)
    request = request_for(Job(panda_id=1), settings, NodeSettings(), [])
    for _ in range(3):
        env.prepare(request, base_env())
    assert [argv[argv.index("python") + 1] for argv in calls] == ["use", "load"]
    assert calls[0][-1] == str(tmp_path / "modulefiles")


def test_a_missing_module_is_named(lmod: str, tmp_path: Path) -> None:
    settings = EnvironmentSettings(
        modules_use=(str(module_tree(tmp_path)),), modules_load=("envtest/1.0", "nosuch/2.0")
    )
    env = ModulesEnvironment(settings)
    with pytest.raises(EnvironmentSetupError) as err:
        env.prepare(request_for(Job(panda_id=1), settings, NodeSettings(), []), base_env())
    assert err.value.code == 1110
    assert "nosuch/2.0" in str(err.value) and "unknown" in str(err.value)
    assert "envtest/1.0" not in str(err.value).split(":")[0]  # the module that exists is not blamed
