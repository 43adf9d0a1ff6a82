"""Environment modules (Lmod, Tcl ``modulecmd``): ``module use``/``purge``/``load`` once per node.

No shell is started per payload. ``prepare`` runs the module tool in its ``python`` mode, which prints
the environment changes as Python statements instead of applying them::

    <tool> python use DIR...        (environment.modules_use)
    <tool> python purge             (environment.modules_purge)
    <tool> python load M1 M2...     (environment.modules_load)

each run with exactly the environment the previous step produced (the first with the payloads' base
environment: ``MODULEPATH``, ``LMOD_*``, ``LOADEDMODULES``, ...). `parse_python_output` reads what
it prints (without executing it); the net changes are remembered per ``(use, purge, modules)`` and
`ModulesEnvironment.wrap` applies them to every payload's environment: a pure dictionary update.

The tool: ``environment.module_cmd`` when set (split like a shell: ``tclsh /usr/lib/modulecmd.tcl``
works), else ``$LMOD_CMD`` of the base environment, else Lmod's
``/usr/share/lmod/lmod/libexec/lmod``, else ``modulecmd`` (environment-modules) on ``PATH``.

A module that cannot be loaded (Lmod exits 1; Tcl modules 5 exit 0 but print ``_mlstatus = False``;
both explain on stderr) raises `EnvironmentSetupError` (code 1110) naming the module and the end of the
tool's stderr.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpcpilot.config.schema import EnvironmentSettings
from hpcpilot.environment.base import Environment, EnvironmentRequest
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError
from hpcpilot.runtime.commands import CommandResult, EnvCommandRunner, run_command

#: Where Debian's (and most sites') Lmod keeps its command.
LMOD_DEFAULT = "/usr/share/lmod/lmod/libexec/lmod"

#: The key of one prepared module setup: (``module use`` dirs, purge first, modules to load).
ModuleKey = tuple[tuple[str, ...], bool, tuple[str, ...]]


@dataclass(frozen=True)
class ModuleChanges:
    """Environment changes printed by a module tool (``<tool> python ...``).

    Attributes
    ----------
    changes
        Variable name -> its new value, or None when the variable is removed; in the order the names
        were first changed.
    status
        The tool's ``_mlstatus`` (False: the command failed), None when it printed none.
    chdir
        The directory of an ``os.chdir(...)`` (a modulefile's ``chdir``), "" for none; not applied to
        payloads, whose working directory is their job's.
    ignored
        Statements that are not environment changes (kept for the log).
    """

    changes: Mapping[str, str | None] = field(default_factory=dict)
    status: bool | None = None
    chdir: str = ""
    ignored: tuple[str, ...] = ()

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the changes made (a new dict)."""
        result = dict(env)
        for name, value in self.changes.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = value
        return result


def _environ_key(node: ast.expr) -> str | None:
    """``X`` of an ``os.environ['X']`` expression, else None."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "environ"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "os"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def parse_python_output(text: str) -> ModuleChanges:
    """Read the Python code a module tool prints, without running it.

    Understood: ``import os``; ``os.environ['X'] = '...'`` (either quoting, the escapes Python
    allows); ``del os.environ['X']``; ``os.chdir('...')``; ``_mlstatus = True|False``. Anything else
    is listed in `ModuleChanges.ignored`.

    Raises
    ------
    EnvironmentSetupError
        If the text is not Python (the tool printed something else on stdout).
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise EnvironmentSetupError(
            f"the module tool printed something that is not its Python output: {exc.msg} "
            f"(line {exc.lineno}: {(exc.text or '').strip()[:200]!r})"
        ) from None
    changes: dict[str, str | None] = {}
    status: bool | None = None
    chdir = ""
    ignored: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Import) and [a.name for a in stmt.names] == ["os"]:
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Constant):
            target, value = stmt.targets[0], stmt.value.value
            name = _environ_key(target)
            if name is not None and isinstance(value, str):
                changes.pop(name, None)  # keep the order of the last change
                changes[name] = value
                continue
            if isinstance(target, ast.Name) and target.id == "_mlstatus" and isinstance(value, bool):
                status = value
                continue
        if isinstance(stmt, ast.Delete):
            names = [_environ_key(t) for t in stmt.targets]
            if all(n is not None for n in names):
                for n in names:
                    assert n is not None
                    changes.pop(n, None)
                    changes[n] = None
                continue
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and stmt.value.func.attr == "chdir"
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.value.id == "os"
            and len(stmt.value.args) == 1
            and isinstance(stmt.value.args[0], ast.Constant)
            and isinstance(stmt.value.args[0].value, str)
        ):
            chdir = stmt.value.args[0].value
            continue
        ignored.append(ast.get_source_segment(text, stmt) or ast.dump(stmt))
    return ModuleChanges(changes, status, chdir, tuple(ignored))


def net_changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    """The changes that turn ``before`` into ``after`` (None: removed), sorted by name."""
    names = sorted(set(before) | set(after))
    return {n: after.get(n) for n in names if before.get(n) != after.get(n)}


class ModulesEnvironment(Environment):
    """Load environment modules for payloads (see the module docstring).

    Parameters
    ----------
    settings
        The ``environment`` settings (``modules_use``, ``modules_purge``, ``module_cmd``).
    runner
        Runs the module tool; injected for tests.
    """

    def __init__(self, settings: EnvironmentSettings, runner: EnvCommandRunner = run_command) -> None:
        super().__init__(settings, runner)
        self._prepared: dict[ModuleKey, ModuleChanges] = {}

    def key(self, request: EnvironmentRequest) -> ModuleKey:
        """What the prepared changes of ``request`` are remembered by."""
        return (self.settings.modules_use, self.settings.modules_purge, request.modules)

    def module_tool(self, base_env: Mapping[str, str]) -> tuple[str, ...]:
        """The module tool's argv prefix (see the module docstring for the order of choice).

        Raises
        ------
        EnvironmentSetupError
            If none is configured or installed.
        """
        if self.settings.module_cmd:
            return tuple(shlex.split(self.settings.module_cmd))
        if base_env.get("LMOD_CMD"):
            return (base_env["LMOD_CMD"],)
        if os.path.exists(LMOD_DEFAULT):
            return (LMOD_DEFAULT,)
        found = shutil.which("modulecmd", path=base_env.get("PATH", os.defpath))
        if found:
            return (found,)
        raise EnvironmentSetupError(
            f"no module tool: environment.module_cmd is empty, $LMOD_CMD is not set, {LMOD_DEFAULT} "
            "does not exist and modulecmd is not on PATH",
            context={"field": "environment.module_cmd"},
        )

    def changes_for(self, request: EnvironmentRequest) -> ModuleChanges | None:
        """The prepared changes of ``request`` (None if `prepare` has not run for it)."""
        return self._prepared.get(self.key(request))

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Run the module tool once for this request's ``(use, purge, modules)``; later calls are free.

        Raises
        ------
        EnvironmentSetupError
            If the tool is missing, fails or prints something unreadable; for ``load``, the message
            names the module(s) and ends with the tool's stderr.
        """
        key = self.key(request)
        if key in self._prepared:
            return
        use, purge, modules = key
        steps: list[tuple[str, ...]] = []
        if use:
            steps.append(("use", *use))
        if purge:
            steps.append(("purge",))
        if modules:
            steps.append(("load", *modules))
        if not steps:
            self._prepared[key] = ModuleChanges()
            return
        tool = self.module_tool(base_env)
        env = dict(base_env)
        ignored: list[str] = []
        for step in steps:
            result = self.runner((*tool, "python", *step), env=env)
            changes = self._check(step, tool, result)
            ignored += changes.ignored
            env = changes.apply(env)
        self._prepared[key] = ModuleChanges(net_changes(base_env, env), True, "", tuple(ignored))

    @staticmethod
    def _check(step: Sequence[str], tool: Sequence[str], result: CommandResult) -> ModuleChanges:
        """The changes of one step, or the error that names what failed."""
        what = f"module {' '.join(step)}"
        context = {"command": f"{shlex.join(tool)} python {' '.join(step)}", "exit_code": result.returncode}
        if result.returncode == 127 and not result.stdout:
            raise EnvironmentSetupError(
                f"{what}: the module tool {tool[0]!r} did not start: {result.stderr_tail()}", context=context
            )
        failed = result.returncode != 0
        changes = ModuleChanges()
        try:
            changes = parse_python_output(result.stdout)
        except EnvironmentSetupError:
            if not failed:
                raise
        if failed or changes.status is False:
            tail = result.stderr_tail()
            if step[0] == "load":
                named = [m for m in step[1:] if f'"{m}"' in tail or f"'{m}'" in tail] or list(step[1:])
                message = f"module(s) {', '.join(named)} could not be loaded: {tail}"
            else:
                message = f"{what} failed: {tail}"
            raise EnvironmentSetupError(message, context=context)
        return changes

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``command`` with the prepared module changes applied to its environment (pure).

        Raises
        ------
        EnvironmentSetupError
            If modules are asked for but `prepare` has not run for this request.
        """
        changes = self.changes_for(request)
        if changes is None:
            use, purge, modules = self.key(request)
            if not (use or purge or modules):
                return command
            raise EnvironmentSetupError(
                f"modules {', '.join(modules) or '(none)'} were not prepared on this node (prepare() first)"
            )
        if not changes.changes:
            return command
        return command.with_env(changes.apply(command.env))
