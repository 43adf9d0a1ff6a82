"""The modules environment on recorded real output of Lmod 8.6 and Tcl environment-modules 5.2.

The recordings (tests/data/lmod, tests/data/modulecmd; see their README) are replayed by a fake runner
that answers only a call whose arguments *and* environment are those of a recorded step, so the tests
also check that each step runs with the environment the previous one produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.config.schema import EnvironmentSettings
from hpcpilot.environment import modules as modules_mod
from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.modules import ModuleChanges, ModulesEnvironment, parse_python_output
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError, ErrorCode
from hpcpilot.runtime.commands import CommandResult

DATA = Path(__file__).resolve().parent.parent / "data"
TOOLS = ("lmod", "modulecmd")


def recorded(tool: str, step: str) -> str:
    return (DATA / tool / f"{step}.stdout").read_text()


def steps(tool: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / tool / "steps.json").read_text())
    return data


def called_with(argv: Sequence[str], env: Mapping[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """What a module step was run with: its exact environment (never the pilot's own) and argv."""
    assert env is not None, "the module tool must get an explicit environment"
    return dict(env), list(argv)


class Replay:
    """A runner that answers with the recorded step whose arguments and environment match the call."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.meta = steps(tool)
        self.calls: list[tuple[dict[str, str], list[str]]] = []

    @property
    def tree(self) -> str:
        return str(self.meta["steps"][0]["args"][1])

    @property
    def base_env(self) -> dict[str, str]:
        return dict(self.meta["steps"][0]["env"])

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        env, rest = called_with(argv, env)
        self.calls.append((env, rest))
        assert rest[:2] == ["fake-tool", "python"], rest
        args = rest[2:]
        for step in self.meta["steps"]:
            if step["args"] == args and step["env"] == env:
                name = step["step"]
                out = (DATA / self.tool / f"{name}.stdout").read_text()
                err = (DATA / self.tool / f"{name}.stderr").read_text()
                return CommandResult(tuple(argv), step["exit_code"], out, err)
        raise AssertionError(f"no recorded {self.tool} step for {args} with environment {env}")


def settings(**kwargs: Any) -> EnvironmentSettings:
    return EnvironmentSettings(chain=("modules",), module_cmd="fake-tool", **kwargs)


PAYLOAD = Command(
    ("sh", "-c", "echo $TESTPKG_HOME"), {"PATH": "/usr/bin:/bin", "PANDAID": "7"}, "/w", frozenset()
)


# --- the parser on recorded output -------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_parse_load(tool: str) -> None:
    changes = parse_python_output(recorded(tool, "load"))
    assert changes.status is True
    c = changes.changes
    assert c["TESTPKG_HOME"] == "/opt/testpkg/1.0"
    assert c["TESTPKG_QUOTE"] == 'it\'s a "quoted" value with $dollar and spaces'
    assert c["PATH"] == "/opt/testpkg/1.0/bin:/usr/bin:/bin"
    assert c["MANPATH"] == "/opt/testpkg/1.0/man"
    assert c["LD_LIBRARY_PATH"] == "/opt/other/lib"
    assert c["OTHER_ROOT"] == "/opt/other"
    assert c["LOADEDMODULES"] == "testpkg/1.0:other/2.0"
    assert c["TESTPKG_OLD"] is None  # printed as "= ''" and then "del"
    assert changes.ignored == ()


def test_parse_lmod_specifics() -> None:
    changes = parse_python_output(recorded("lmod", "load"))
    assert changes.changes["__LMOD_REF_COUNT_PATH"] == "/opt/testpkg/1.0/bin:1;/usr/bin:1;/bin:1"
    assert changes.changes["_ModuleTable_Sz_"] == "2"
    assert changes.chdir == ""


def test_parse_modulecmd_chdir_and_alias() -> None:
    changes = parse_python_output(recorded("modulecmd", "load"))
    assert changes.chdir == "/tmp"  # the modulefile's chdir; never applied to payloads
    assert "tp" not in changes.changes  # set-alias prints nothing in python mode
    assert changes.changes["__MODULES_LMREFRESH"] == "testpkg/1.0"


@pytest.mark.parametrize("tool", TOOLS)
def test_parse_purge_removes(tool: str) -> None:
    changes = parse_python_output(recorded(tool, "purge_loaded"))
    for name in ("TESTPKG_HOME", "TESTPKG_QUOTE", "OTHER_ROOT", "LOADEDMODULES", "_LMFILES_", "MANPATH"):
        assert changes.changes[name] is None, name
    assert changes.changes["PATH"] == "/usr/bin:/bin"


def test_parse_empty_output() -> None:
    """Tcl modules print nothing at all for a purge with nothing loaded."""
    assert recorded("modulecmd", "purge") == ""
    assert parse_python_output("") == ModuleChanges()


def test_parse_lmod_quirks() -> None:
    changes = parse_python_output(recorded("lmod", "load_quirks"))
    assert changes.changes["BACKSLASH"] == "a\\b"
    assert changes.changes["NEWLINE"] == "line1line2"  # Lmod prints a backslash-newline: Python drops it
    assert changes.changes["LMOD_FAMILY_COMPILER"] == "quirks"
    assert not any(name in changes.changes for name in ("tp", "tpf"))
    assert changes.ignored == ()


@pytest.mark.parametrize("tool", TOOLS)
def test_parse_missing_module_status(tool: str) -> None:
    assert parse_python_output(recorded(tool, "load_missing")).status is False


def test_parse_keeps_unknown_statements_aside() -> None:
    changes = parse_python_output("import os\nos.environ['A'] = 'x'\nprint('hello')\nos.system('rm -rf /')\n")
    assert changes.changes == {"A": "x"}
    assert changes.ignored == ("print('hello')", "os.system('rm -rf /')")


def test_parse_refuses_what_is_not_python() -> None:
    with pytest.raises(EnvironmentSetupError, match="not its Python output"):
        parse_python_output("module: command not found\nexport A=b\n")


def test_changes_apply_is_a_new_dict() -> None:
    env = {"A": "1", "B": "2"}
    assert ModuleChanges({"A": None, "C": "3"}).apply(env) == {"B": "2", "C": "3"}
    assert env == {"A": "1", "B": "2"}


# --- ModulesEnvironment on the replayed tools ---------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("purge", [False, True])
def test_prepare_and_wrap(tool: str, purge: bool) -> None:
    replay = Replay(tool)
    env = ModulesEnvironment(
        settings(modules_use=(replay.tree,), modules_load=("testpkg/1.0", "other"), modules_purge=purge),
        replay,
    )
    request = EnvironmentRequest(modules=("testpkg/1.0", "other"))
    env.prepare(request, replay.base_env)
    assert [call[1][2] for call in replay.calls] == (["use", "purge", "load"] if purge else ["use", "load"])
    command = Command(PAYLOAD.argv, {**replay.base_env, "PANDAID": "7"}, "/w", frozenset({"PANDAID"}))
    wrapped = env.wrap(command, request)
    assert wrapped.argv == command.argv and wrapped.cwd == "/w" and wrapped.keep == command.keep
    assert wrapped.env["TESTPKG_HOME"] == "/opt/testpkg/1.0"
    assert wrapped.env["PATH"] == "/opt/testpkg/1.0/bin:/usr/bin:/bin"
    assert wrapped.env["PANDAID"] == "7"
    assert "TESTPKG_OLD" not in wrapped.env
    assert wrapped.env["MODULEPATH"].startswith(replay.tree)
    assert command.env["PATH"] == "/usr/bin:/bin"  # the input is untouched


@pytest.mark.parametrize("tool", TOOLS)
def test_prepare_runs_once_per_module_list(tool: str) -> None:
    replay = Replay(tool)
    env = ModulesEnvironment(settings(modules_use=(replay.tree,)), replay)
    request = EnvironmentRequest(modules=("testpkg/1.0", "other"))
    env.prepare(request, replay.base_env)
    env.prepare(request, replay.base_env)
    assert len(replay.calls) == 2  # use + load, once
    with pytest.raises(AssertionError, match="no recorded"):
        env.prepare(EnvironmentRequest(modules=("other",)), replay.base_env)  # a new key: the tool runs


@pytest.mark.parametrize("tool", TOOLS)
def test_missing_module_names_it(tool: str) -> None:
    replay = Replay(tool)
    env = ModulesEnvironment(settings(modules_use=(replay.tree,)), replay)
    with pytest.raises(EnvironmentSetupError) as err:
        env.prepare(EnvironmentRequest(modules=("nosuch/1.0",)), replay.base_env)
    assert err.value.code == ErrorCode.SETUP_FAILURE and int(err.value.code) == 1110
    message = str(err.value)
    assert "nosuch/1.0" in message
    tail = {"lmod": "The following module(s) are unknown", "modulecmd": "Unable to locate a modulefile"}[tool]
    assert tail in message
    assert err.value.context["command"] == "fake-tool python load nosuch/1.0"


def test_missing_tool() -> None:
    def not_found(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        return CommandResult(tuple(argv), 127, "", "env: 'fake-tool': No such file or directory")

    env = ModulesEnvironment(settings(modules_load=("gcc",)), not_found)
    with pytest.raises(EnvironmentSetupError, match="did not start"):
        env.prepare(EnvironmentRequest(modules=("gcc",)), {"PATH": "/usr/bin"})


def test_the_tool_is_chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = ModulesEnvironment(EnvironmentSettings(module_cmd="tclsh /usr/lib/modulecmd.tcl"))
    assert env.module_tool({}) == ("tclsh", "/usr/lib/modulecmd.tcl")
    env = ModulesEnvironment(EnvironmentSettings())
    assert env.module_tool({"LMOD_CMD": "/opt/lmod/libexec/lmod"}) == ("/opt/lmod/libexec/lmod",)
    monkeypatch.setattr(modules_mod, "LMOD_DEFAULT", str(tmp_path / "no-lmod"))
    modulecmd = tmp_path / "bin" / "modulecmd"
    modulecmd.parent.mkdir()
    modulecmd.write_text("#!/bin/sh\n")
    modulecmd.chmod(0o755)
    assert env.module_tool({"PATH": str(modulecmd.parent)}) == (str(modulecmd),)
    with pytest.raises(EnvironmentSetupError, match="no module tool") as err:
        env.module_tool({"PATH": str(tmp_path)})
    assert err.value.context["field"] == "environment.module_cmd"


def test_no_modules_needs_no_tool() -> None:
    def refuse(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        raise AssertionError("the module tool must not run")

    env = ModulesEnvironment(EnvironmentSettings(), refuse)
    env.prepare(EnvironmentRequest(), {})
    assert env.wrap(PAYLOAD, EnvironmentRequest()) is PAYLOAD
    assert ModulesEnvironment(EnvironmentSettings(), refuse).wrap(PAYLOAD, EnvironmentRequest()) is PAYLOAD


def test_wrap_before_prepare_is_an_error() -> None:
    env = ModulesEnvironment(settings(modules_load=("gcc",)))
    with pytest.raises(EnvironmentSetupError, match="not prepared"):
        env.wrap(PAYLOAD, EnvironmentRequest(modules=("gcc",)))


def test_the_tool_sees_exactly_the_base_environment() -> None:
    seen: list[dict[str, str]] = []

    def tool(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> CommandResult:
        called, rest = called_with(argv, env)
        seen.append(called)
        assert rest == ["fake-tool", "python", "load", "gcc/12"]
        return CommandResult(tuple(argv), 0, "import os\nos.environ['CC'] = 'gcc'\n_mlstatus = True\n", "")

    env = ModulesEnvironment(settings(modules_load=("gcc/12",)), tool)
    base = {"MODULEPATH": "/apps/modules", "LMOD_SYSTEM_NAME": "x", "A": "has = sign and 'quotes'"}
    env.prepare(EnvironmentRequest(modules=("gcc/12",)), base)
    assert seen == [base]
    assert env.wrap(PAYLOAD, EnvironmentRequest(modules=("gcc/12",))).env["CC"] == "gcc"
