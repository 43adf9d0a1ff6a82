"""The plugin registry: one entry-point group per family; load only the plugin asked for.

Built-in plugins are registered exactly as third-party ones are, in ``pyproject.toml`` under
``hpcpilot.<family>`` entry-point groups. A plugin whose optional dependency is missing fails when it is
chosen, with a message that names the extra to install.

Reading entry points costs ``importlib.metadata`` (with ``email``, ``zipfile``, ``csv``) and a scan of
every installed distribution's metadata per lookup: at 512 nodes, that is 512 scans of the software
area. So rank 0 reads the table once (`entry_point_table`) and hands it to the workers with the settings
(`use_entry_point_table`); a worker then loads its plugins by import path and never imports
``importlib.metadata``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # importlib.metadata stays out of the workers' import path
    from importlib.metadata import EntryPoint

from hpcpilot.config.schema import Settings
from hpcpilot.model.errors import PluginError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Family:
    """A plugin family: its entry-point group and the dotted path of its base class."""

    name: str
    group: str
    base: str

    def base_class(self) -> type:
        """Import and return the family's abstract base class."""
        module_name, _, attr = self.base.rpartition(".")
        cls = getattr(importlib.import_module(module_name), attr)
        assert isinstance(cls, type)
        return cls


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("communicators", "hpcpilot.communicators", "hpcpilot.comm.base.Communicator"),
        Family("payloads", "hpcpilot.payloads", "hpcpilot.payload.base.SlotRunner"),
        Family("mergers", "hpcpilot.mergers", "hpcpilot.payload.merge.Merger"),
        Family("batch_systems", "hpcpilot.batch_systems", "hpcpilot.batch.base.BatchSystem"),
        Family("launchers", "hpcpilot.launchers", "hpcpilot.launch.base.Launcher"),
        Family("environments", "hpcpilot.environments", "hpcpilot.environment.base.Environment"),
        Family("copytools", "hpcpilot.copytools", "hpcpilot.data.copytools.base.Copytool"),
        Family("monitors", "hpcpilot.monitors", "hpcpilot.monitor.base.Monitor"),
    )
}


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``hpcpilot plugins`` shows of one plugin.

    Attributes
    ----------
    family, name
        The family and the plugin's name in it.
    origin
        The distribution that registers it (``hpcpilot`` for built-ins) and the object path.
    loads
        Whether importing it and checking its base class succeeded.
    error
        Why it does not load, if it does not.
    """

    family: str
    name: str
    origin: str
    loads: bool
    error: str = ""


def _family(family: str) -> Family:
    try:
        return FAMILIES[family]
    except KeyError:
        raise PluginError(
            f"unknown plugin family {family!r}", context={"known": ", ".join(sorted(FAMILIES))}
        ) from None


def _entry_points(family: Family) -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=family.group)}


#: An entry-point table from rank 0 (`use_entry_point_table`): family name -> plugin name -> value.
_TABLE: dict[str, dict[str, str]] | None = None


def entry_point_table() -> dict[str, dict[str, str]]:
    """Every family's registered plugins as plain data: family -> name -> ``module:attr`` (sorted).

    Rank 0 reads it once and sends it to the workers (`use_entry_point_table`).
    """
    from importlib.metadata import entry_points

    every = entry_points()  # one scan of the installed metadata for all families
    return {
        fam.name: {ep.name: ep.value for ep in sorted(every.select(group=fam.group), key=lambda e: e.name)}
        for fam in FAMILIES.values()
    }


def use_entry_point_table(table: Mapping[str, Mapping[str, str]] | None) -> None:
    """Look plugins up in ``table`` (from `entry_point_table` on rank 0), not in the installed metadata.

    None goes back to reading the metadata. The table is trusted as the site's own software is: it
    comes from rank 0 of the same job.
    """
    global _TABLE  # noqa: PLW0603 - one table per process, set once before any plugin loads
    _TABLE = None if table is None else {fam: dict(points) for fam, points in table.items()}


def _points(family: Family) -> dict[str, str]:
    """The family's plugins: name -> entry-point value (the table from rank 0 when there is one)."""
    if _TABLE is not None:
        return _TABLE.get(family.name, {})
    return {name: point.value for name, point in _entry_points(family).items()}


def plugin_names(family: str) -> list[str]:
    """The names of the plugins registered in a family, sorted."""
    return sorted(_points(_family(family)))


def load_plugin(family: str, name: str, base: type[T]) -> type[T]:
    """Load the plugin ``name`` of ``family`` and check that it subclasses ``base``.

    ``name`` is an entry-point name of the family, or an import path ``package.module:Class`` for a
    plugin that is not installed as a distribution (a site's own code on ``PYTHONPATH``).

    Raises
    ------
    PluginError
        If no such plugin is registered (the message lists those that are), if importing it fails
        (a missing optional dependency names the extra to install), or if it is not a ``base``.
    """
    fam = _family(family)
    if ":" in name:
        return _check_base(family, name, _import_path(family, name), base, name)
    points = _points(fam)
    if name not in points:
        raise PluginError(
            f"no {family} plugin named {name!r}",
            context={"group": fam.group, "available": ", ".join(sorted(points)) or "none"},
        )
    value = points[name]
    try:
        obj = _load_value(value)
    except ModuleNotFoundError as exc:
        raise PluginError(
            f"{family} plugin {name!r} needs the module {exc.name!r}: "
            f"install it, e.g. pip install 'hpcpilot[{name}]'",
            context={"entry_point": value},
        ) from exc
    except Exception as exc:
        raise PluginError(
            f"{family} plugin {name!r} failed to load: {exc}", context={"entry_point": value}
        ) from exc
    return _check_base(family, name, obj, base, value)


def _load_value(value: str) -> object:
    """What an entry point's value ``module:attr.attr [extras]`` names (as ``EntryPoint.load`` does)."""
    module_name, _, attrs = value.partition("[")[0].strip().partition(":")
    obj: object = importlib.import_module(module_name.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def _import_path(family: str, path: str) -> object:
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"{family} plugin {path!r} cannot be imported: {exc}", context={"import_path": path}
        ) from exc


def _check_base(family: str, name: str, obj: object, base: type[T], origin: str) -> type[T]:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(
            f"{family} plugin {name!r} is not a subclass of {base.__qualname__}",
            context={"entry_point": origin},
        )
    return obj


def describe_plugins() -> list[PluginInfo]:
    """Try to load every registered plugin of every family; report what loads and what does not."""
    infos = []
    for fam in FAMILIES.values():
        base = fam.base_class()
        for name, point in sorted(_entry_points(fam).items()):
            dist = point.dist.name if point.dist is not None else "?"
            origin = f"{dist}: {point.value}"
            try:
                load_plugin(fam.name, name, base)
            except PluginError as exc:
                infos.append(PluginInfo(fam.name, name, origin, False, str(exc)))
            else:
                infos.append(PluginInfo(fam.name, name, origin, True))
    return infos


def unknown_plugin_names(settings: Settings) -> list[str]:
    """Settings that name a plugin nobody registered, as ``"section.key: 'name' (known: ...)"``.

    Checks the plugin names of the batch system, launcher, payloads, environment chain and copytool
    chains without importing any plugin; ``auto`` and import paths (``package.module:Class``) pass.
    """
    wanted = [
        ("batch.system", "batch_systems", (settings.batch.system,)),
        ("launch.launcher", "launchers", (settings.launch.launcher,)),
        ("payload.plain", "payloads", (settings.payload.plain,)),
        ("eventservice.mode", "payloads", (settings.eventservice.mode,)),
        ("environment.chain", "environments", settings.environment.chain),
        ("data.stagein_tools", "copytools", settings.data.stagein_tools),
        ("data.stageout_tools", "copytools", settings.data.stageout_tools),
        ("data.log_tools", "copytools", settings.data.log_tools),
    ]
    problems = []
    for key, family, names in wanted:
        known = plugin_names(family)
        for name in names:
            if name != "auto" and ":" not in name and name not in known:
                problems.append(f"{key}: no {family} plugin named {name!r} (known: {', '.join(known)})")
    return problems
