"""Load the settings tree from its layers and remember where every value came from.

Layers, lowest first:

1. built-in defaults (the dataclass defaults in `hpcpilot.config.schema`);
2. the site file: ``<site>.yaml`` looked up by name on the site search path (`site_search_path`:
   ``$HPCPILOT_SITE_PATH``, the user's ``~/.config/hpcpilot/sites``, the packaged ``site_configs/``),
   or an explicit path;
3. the user file: the path in ``$HPCPILOT_CONFIG``, if set;
4. environment variables ``HPCPILOT_<SECTION>__<KEY>`` (section and key case-insensitive), and the
   aliases of `ENV_ALIASES` (``HPCPILOT_HARVESTER_CONFIG``, ``HPCPILOT_WORKDIR``);
5. command-line overrides ``--set section.key=value``.

Files are YAML mappings of section name to a mapping of key to value; their values must already
have the field's type. Values from the environment and the command line are strings and are parsed.
Unknown sections and keys are errors, and every error is a `ConfigError` that names the
source and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from hpcpilot.config.schema import Bounds, Settings, split_list
from hpcpilot.model.errors import ConfigError

__all__ = [
    "FieldRule",
    "LoadedConfig",
    "SiteDir",
    "SiteFile",
    "available_sites",
    "check_config_file",
    "field_rule",
    "find_sites",
    "format_config",
    "format_sites",
    "load_config",
    "packaged_site_dir",
    "settings_rules",
    "settings_to_dict",
    "site_config_dirs",
    "site_search_path",
]

ENV_PREFIX = "HPCPILOT_"
"""Prefix of the environment variables that set one key (``HPCPILOT_<SECTION>__<KEY>``)."""

USER_CONFIG_VAR = "HPCPILOT_CONFIG"
"""Environment variable holding the path of the user file."""

SITE_PATH_VAR = "HPCPILOT_SITE_PATH"
"""Environment variable of directories (``os.pathsep``-separated) searched first for site files."""

SITE_DIR_VAR = "HPCPILOT_SITE_CONFIG_DIR"
"""The older single directory of site files: searched after ``$HPCPILOT_SITE_PATH``, before the user's."""

USER_SITE_SUBDIR = Path("hpcpilot") / "sites"
"""The user's site directory, under ``$XDG_CONFIG_HOME`` (else ``~/.config``)."""

ENV_ALIASES: Mapping[str, str] = {
    "HPCPILOT_HARVESTER_CONFIG": "harvester.config_file",
    "HPCPILOT_WORKDIR": "run.workdir",
}
"""Environment variables that set one key under a name of their own (the batch-script templates
read ``HPCPILOT_HARVESTER_CONFIG`` too); empty means unset."""

_SCALARS: tuple[type, ...] = (str, int, float, bool)
_TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
_FALSE_WORDS = frozenset({"false", "no", "0", "off"})
_TYPE_WORDS: Mapping[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "a list of strings",
}
_NO_BOUNDS = Bounds()
"""A number whose field has no `Bounds` must not be negative."""


@dataclass(frozen=True)
class FieldRule:
    """What a setting accepts, read from its field's type in `hpcpilot.config.schema`.

    Attributes
    ----------
    kind
        ``str``, ``int``, ``float``, ``bool``, or ``tuple`` for a list of strings.
    choices
        The allowed words of a ``Literal`` field (matched case-insensitively, normalised to the
        spelling given there); empty: any string.
    bounds
        The allowed interval of a number.
    """

    kind: type
    choices: tuple[str, ...] = ()
    bounds: Bounds = _NO_BOUNDS


def field_rule(hint: object, dotted: str) -> FieldRule:
    """The rule of a settings field whose type (with ``Annotated`` extras) is ``hint``.

    Raises
    ------
    TypeError
        The type is not one the loader reads (a programming error in the schema, named by ``dotted``).
    """
    bounds = _NO_BOUNDS
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        bounds = next((extra for extra in extras if isinstance(extra, Bounds)), _NO_BOUNDS)
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if all(isinstance(choice, str) for choice in choices):
            return FieldRule(str, choices=tuple(choices))
    elif typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        return FieldRule(tuple)
    elif hint in _SCALARS and isinstance(hint, type):
        return FieldRule(hint, bounds=bounds)
    raise TypeError(f"unsupported settings type {hint!r} for {dotted}")


@dataclass(frozen=True)
class LoadedConfig:
    """The effective settings and the layer each value came from.

    Attributes
    ----------
    settings
        The merged, validated settings tree.
    origins
        For every ``"section.key"``: ``default``, ``site:<path>``, ``user:<path>``,
        ``env:HPCPILOT_X__Y`` or ``cli:--set section.key``.
    """

    settings: Settings
    origins: Mapping[str, str]


# A layer: "section.key" -> (validated value, origin description).
_Layer = dict[str, tuple[object, str]]


# --------------------------------------------------------------------------- schema introspection


@functools.cache
def _schema() -> dict[str, tuple[type, dict[str, FieldRule]]]:
    """Return ``section -> (section class, key -> rule)``, in schema order."""
    section_types = typing.get_type_hints(Settings)
    schema: dict[str, tuple[type, dict[str, FieldRule]]] = {}
    for section in dataclasses.fields(Settings):
        cls = section_types[section.name]
        hints = typing.get_type_hints(cls, include_extras=True)
        keys = {
            item.name: field_rule(hints[item.name], f"{section.name}.{item.name}")
            for item in dataclasses.fields(cls)
        }
        schema[section.name] = (cls, keys)
    return schema


def settings_rules() -> dict[str, tuple[type, dict[str, FieldRule]]]:
    """Every section's class and its keys' rules, in schema order (``hpcpilot config schema``).

    Returns
    -------
    dict[str, tuple[type, dict[str, FieldRule]]]
        ``section -> (section class, key -> rule)``.
    """
    return dict(_schema())


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _section_keys(section: str, source: str) -> dict[str, FieldRule]:
    """Return ``key -> rule`` of a section, or raise naming the source and the section."""
    schema = _schema()
    if section not in schema:
        hint = _did_you_mean(section, schema)
        raise ConfigError(f"{source}: unknown section '{section}'{hint}")
    return schema[section][1]


def _key_rule(section: str, key: str, source: str) -> FieldRule:
    """Return the rule of ``section.key``, or raise naming the source and the unknown name."""
    keys = _section_keys(section, source)
    if key not in keys:
        hint = _did_you_mean(key, keys)
        raise ConfigError(f"{source}: unknown key '{section}.{key}'{hint}")
    return keys[key]


# --------------------------------------------------------------------------- values


def _describe(value: object) -> str:
    """Name a raw value's YAML type and show it, for error messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {value!r}"


def _list_item(item: object) -> str:
    """One item of a list setting: a non-empty string without a comma."""
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"expected a list of non-empty strings, got an item {_describe(item)}")
    if "," in item:
        raise ValueError(f"a list item holds no comma, got {item!r} (write the items as a YAML list)")
    return item.strip()


def _from_native(value: object, kind: type) -> object:
    """Check a YAML value against ``kind``; raise ValueError with the reason."""
    if kind is tuple and isinstance(value, list | tuple):
        return tuple(_list_item(item) for item in value)
    if kind is tuple and isinstance(value, str):
        return split_list(value)  # the comma-separated form stays valid in files too
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}")


def _from_text(raw: str, kind: type) -> object:
    """Parse an environment or command-line string as ``kind``; raise ValueError with the reason."""
    if kind is str:
        return raw
    if kind is tuple:
        return split_list(raw)
    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ValueError(f"expected a boolean (true/false/yes/no/1/0/on/off), got {raw!r}")
    try:
        return int(raw) if kind is int else float(raw)
    except ValueError:
        raise ValueError(f"expected {_TYPE_WORDS[kind]}, got {raw!r}") from None


def _apply_rule(rule: FieldRule, value: object) -> object:
    """Apply the bounds or choices of ``rule`` to a typed value; raise ValueError with the reason."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < rule.bounds.minimum:
            raise ValueError(f"must be >= {rule.bounds.minimum:g}, got {value!r}")
        if rule.bounds.maximum is not None and value > rule.bounds.maximum:
            raise ValueError(f"must be <= {rule.bounds.maximum}, got {value!r}")
    if isinstance(value, str) and rule.choices:
        for choice in rule.choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(rule.choices)}, got {value!r}")
    return value


def _validate(section: str, key: str, value: object, source: str, *, text: bool) -> object:
    """Return the typed, checked value of ``section.key`` or raise a ConfigError naming both."""
    rule = _key_rule(section, key, source)
    dotted = f"{section}.{key}"
    try:
        if text and isinstance(value, str):
            return _apply_rule(rule, _from_text(value, rule.kind))
        return _apply_rule(rule, _from_native(value, rule.kind))
    except ValueError as err:
        raise ConfigError(f"{source}: invalid value for '{dotted}': {err}") from None


# --------------------------------------------------------------------------- layers


def _read_yaml(path: Path) -> dict[str, object]:
    """Read a YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of section names, got {_describe(data)}")
    return data


def _file_layer(path: Path, kind: str) -> _Layer:
    """Validate a YAML config file into a layer whose origins are ``<kind>:<path>``."""
    source = str(path)
    origin = f"{kind}:{path}"
    layer: _Layer = {}
    for section, body in _read_yaml(path).items():
        section_name = str(section)
        _section_keys(section_name, source)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                f"{source}: section '{section_name}' must be a mapping of keys, got {_describe(body)}"
            )
        for key, value in body.items():
            typed = _validate(section_name, str(key), value, source, text=False)
            layer[f"{section_name}.{key}"] = (typed, origin)
    return layer


def _split_env_name(name: str) -> tuple[str, str] | None:
    """Return ``(section, key)`` of a ``HPCPILOT_<SECTION>__<KEY>`` name, else None."""
    if not name.startswith(ENV_PREFIX):
        return None
    section, sep, key = name[len(ENV_PREFIX) :].partition("__")
    if not sep or not section or not key:
        return None
    return section.lower(), key.lower()


def _env_layer(env: Mapping[str, str]) -> _Layer:
    """Validate the ``HPCPILOT_<SECTION>__<KEY>`` variables into a layer."""
    layer: _Layer = {}
    setters: dict[str, str] = {}
    for name in sorted(env):
        parts = _split_env_name(name)
        if parts is None:
            continue
        section, key = parts
        typed = _validate(section, key, env[name], f"environment variable {name}", text=True)
        dotted = f"{section}.{key}"
        if dotted in setters:
            raise ConfigError(f"environment variables {setters[dotted]} and {name} both set '{dotted}'")
        setters[dotted] = name
        layer[dotted] = (typed, f"env:{name}")
    for name, dotted in ENV_ALIASES.items():
        if not env.get(name):
            continue
        if dotted in setters:
            raise ConfigError(f"environment variables {setters[dotted]} and {name} both set '{dotted}'")
        section, _, key = dotted.partition(".")
        layer[dotted] = (
            _validate(section, key, env[name], f"environment variable {name}", text=True),
            f"env:{name}",
        )
    return layer


def _cli_layer(overrides: Mapping[str, str]) -> _Layer:
    """Validate command-line ``{"section.key": "raw string"}`` overrides into a layer."""
    layer: _Layer = {}
    for dotted, raw in overrides.items():
        source = f"command line --set {dotted}"
        section, sep, key = dotted.partition(".")
        if not sep or not section or not key:
            raise ConfigError(f"{source}: expected 'section.key=value'")
        typed = _validate(section, key, raw, source, text=True)
        layer[f"{section}.{key}"] = (typed, f"cli:--set {section}.{key}")
    return layer


# --------------------------------------------------------------------------- site files


@dataclass(frozen=True)
class SiteDir:
    """One directory of the site search path.

    Attributes
    ----------
    path
        The directory (it need not exist).
    origin
        Why it is searched: ``HPCPILOT_SITE_PATH``, ``HPCPILOT_SITE_CONFIG_DIR``, ``user`` (the user's
        configuration directory) or ``package`` (the site files shipped in the hpcpilot package).
    """

    path: Path
    origin: str


@dataclass(frozen=True)
class SiteFile:
    """One site file found on the search path.

    Attributes
    ----------
    name
        The site's name (the file name without ``.yaml``), as ``--site`` takes it.
    path
        The file.
    origin
        The `SiteDir.origin` of its directory.
    shadowed_by
        The file of the same name earlier on the search path, which ``--site`` loads instead; None for
        the one that wins.
    """

    name: str
    path: Path
    origin: str
    shadowed_by: Path | None = None


def packaged_site_dir() -> Path:
    """The ``site_configs/`` directory shipped inside the hpcpilot package (read with importlib.resources).

    Returns
    -------
    Path
        ``<site-packages>/hpcpilot/site_configs`` once installed; in a source checkout,
        ``hpcpilot/site_configs`` of the checkout.
    """
    ref = resources.files("hpcpilot") / "site_configs"
    return ref if isinstance(ref, Path) else Path(str(ref))


def _user_site_dir(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CONFIG_HOME/hpcpilot/sites``, else ``$HOME/.config/hpcpilot/sites``; None without either."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG base directory spec ignores relative paths
        return Path(xdg) / USER_SITE_SUBDIR
    home = environ.get("HOME", "")
    return Path(home) / ".config" / USER_SITE_SUBDIR if home else None


def site_search_path(env: Mapping[str, str] | None = None) -> list[SiteDir]:
    """Return the directories searched for site files, in order (first match wins), existing or not.

    Parameters
    ----------
    env
        The environment to read ``$HPCPILOT_SITE_PATH``, ``$HPCPILOT_SITE_CONFIG_DIR``,
        ``$XDG_CONFIG_HOME`` and ``$HOME`` from; defaults to ``os.environ``.

    Returns
    -------
    list[SiteDir]
        Every directory of ``$HPCPILOT_SITE_PATH`` (``os.pathsep``-separated, empty entries skipped),
        then ``$HPCPILOT_SITE_CONFIG_DIR`` if set, then the user's ``$XDG_CONFIG_HOME/hpcpilot/sites``
        (``~/.config/hpcpilot/sites`` without ``XDG_CONFIG_HOME``), then the packaged sites
        (`packaged_site_dir`); a directory named twice is kept at its first place.
    """
    environ = os.environ if env is None else env
    candidates = [
        SiteDir(Path(entry).expanduser(), SITE_PATH_VAR)
        for entry in environ.get(SITE_PATH_VAR, "").split(os.pathsep)
        if entry.strip()
    ]
    if environ.get(SITE_DIR_VAR):
        candidates.append(SiteDir(Path(environ[SITE_DIR_VAR]).expanduser(), SITE_DIR_VAR))
    user = _user_site_dir(environ)
    if user is not None:
        candidates.append(SiteDir(user, "user"))
    candidates.append(SiteDir(packaged_site_dir(), "package"))
    dirs: list[SiteDir] = []
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            dirs.append(candidate)
    return dirs


def site_config_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Return the existing directories of `site_search_path`, first match wins.

    Parameters
    ----------
    env
        The environment (see `site_search_path`); defaults to ``os.environ``.

    Returns
    -------
    list[Path]
        The directories of the search path that exist, in order.
    """
    return [d.path for d in site_search_path(env) if d.path.is_dir()]


def find_sites(env: Mapping[str, str] | None = None) -> list[SiteFile]:
    """Return every site file on the search path, by name, then in search order.

    Parameters
    ----------
    env
        The environment (see `site_search_path`); defaults to ``os.environ``.

    Returns
    -------
    list[SiteFile]
        One entry per ``<name>.yaml`` file in a directory of the search path; of several files with
        the same name the first wins and the others have ``shadowed_by`` set to it.
    """
    winners: dict[str, Path] = {}
    found: list[SiteFile] = []
    for directory in site_search_path(env):
        if not directory.path.is_dir():
            continue
        for path in sorted(directory.path.glob("*.yaml")):
            if not path.is_file():
                continue
            winner = winners.setdefault(path.stem, path)
            found.append(SiteFile(path.stem, path, directory.origin, None if winner == path else winner))
    order = {name: i for i, name in enumerate(sorted(winners))}
    return sorted(found, key=lambda f: order[f.name])  # stable: search order within a name


def format_sites(sites: Sequence[SiteFile], env: Mapping[str, str] | None = None) -> str:
    """Render the search path and the sites found, for ``hpcpilot config sites``.

    Parameters
    ----------
    sites
        The result of `find_sites`.
    env
        The environment the search path is read from (see `site_search_path`).

    Returns
    -------
    str
        A ``search path`` block (one directory a line, with its origin, ``(missing)`` if it does not
        exist), then one line per site file: name, origin, path, and ``shadowed by PATH`` for a file
        that another one earlier on the path hides.
    """
    search = site_search_path(env)
    lines = ["search path (first match wins):"]
    origin_width = max(len(d.origin) for d in search)
    for directory in search:
        missing = "" if directory.path.is_dir() else "   (missing)"
        lines.append(f"  {directory.origin:<{origin_width}}  {directory.path}{missing}")
    lines.append("sites:")
    if not sites:
        lines.append("  none")
    name_width = max((len(f.name) for f in sites), default=0)
    site_origin_width = max((len(f.origin) for f in sites), default=0)
    for site in sites:
        shadow = f"   (shadowed by {site.shadowed_by})" if site.shadowed_by is not None else ""
        lines.append(f"  {site.name:<{name_width}}  {site.origin:<{site_origin_width}}  {site.path}{shadow}")
    return "\n".join(lines) + "\n"


def available_sites(env: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the site files on the search path, sorted.

    Parameters
    ----------
    env
        The environment (see `site_search_path`); defaults to ``os.environ``.

    Returns
    -------
    list[str]
        Every ``<name>`` of a ``<name>.yaml`` file in any of the directories.
    """
    return sorted({site.name for site in find_sites(env)})


def _find_site(site: str, env: Mapping[str, str]) -> Path:
    """Return the first ``<dir>/<site>.yaml`` on the search path, or raise listing the available sites."""
    for found in find_sites(env):
        if found.name == site and found.shadowed_by is None:
            return found.path
    names = ", ".join(available_sites(env)) or "none"
    dirs = ", ".join(f"{d.path} ({d.origin})" for d in site_search_path(env))
    raise ConfigError(f"unknown site '{site}': available sites are {names} (searched {dirs})")


# --------------------------------------------------------------------------- merging


def settings_to_dict(settings: Settings) -> dict[str, dict[str, object]]:
    """Return the settings as ``{section: {key: value}}`` in schema order.

    Parameters
    ----------
    settings
        The settings tree.

    Returns
    -------
    dict[str, dict[str, object]]
        A fresh nested dict; changing it does not change ``settings``.
    """
    return {
        section: {key: getattr(getattr(settings, section), key) for key in keys}
        for section, (_, keys) in _schema().items()
    }


def _merge(layers: Iterable[_Layer]) -> LoadedConfig:
    """Apply the layers, lowest first, over the defaults and build the settings tree."""
    values = settings_to_dict(Settings())
    origins = {f"{s}.{k}": "default" for s, keys in values.items() for k in keys}
    for layer in layers:
        for dotted, (value, origin) in layer.items():
            section, _, key = dotted.partition(".")
            values[section][key] = value
            origins[dotted] = origin
    sections = {section: cls(**values[section]) for section, (cls, _) in _schema().items()}
    return LoadedConfig(settings=Settings(**sections), origins=origins)


def load_config(
    *,
    site: str | None = None,
    site_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load the effective settings from all layers.

    Parameters
    ----------
    site
        Name of a site file looked up on `site_search_path` (``local`` for the packaged
        ``site_configs/local.yaml``).
    site_file
        Explicit path of the site file; give ``site`` or ``site_file``, not both.
    env
        The environment: ``HPCPILOT_CONFIG``, the site search path (`site_search_path`), the
        ``HPCPILOT_<SECTION>__<KEY>`` variables and their aliases; defaults to ``os.environ``.
    overrides
        Command-line overrides, ``{"section.key": "raw string"}``.

    Returns
    -------
    LoadedConfig
        The settings and, for every ``section.key``, the layer its value came from.

    Raises
    ------
    ConfigError
        A file, variable or override is invalid, or the site is unknown; the message names the
        source and the key.
    """
    environ = os.environ if env is None else env
    if site is not None and site_file is not None:
        raise ConfigError(f"give a site name or a site file, not both ('{site}', {site_file})")
    layers: list[_Layer] = []
    if site is not None:
        site_file = _find_site(site, environ)
    if site_file is not None:
        layers.append(_file_layer(site_file, "site"))
    user_file = environ.get(USER_CONFIG_VAR)
    if user_file:
        layers.append(_file_layer(Path(user_file), "user"))
    layers.append(_env_layer(environ))
    layers.append(_cli_layer(overrides or {}))
    return _merge(layers)


def check_config_file(path: Path) -> Settings:
    """Validate one site file on its own, over the built-in defaults.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    Settings
        The defaults with the file's values applied.

    Raises
    ------
    ConfigError
        The file is unreadable, not YAML, or has an unknown or invalid key.
    """
    return _merge([_file_layer(path, "site")]).settings


def _format_value(value: object) -> str:
    """Show a value the way it would be written in a YAML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return repr(value)


def format_config(loaded: LoadedConfig) -> str:
    """Render the effective settings, one ``section.key = value   [origin]`` line per key.

    Parameters
    ----------
    loaded
        The result of `load_config`.

    Returns
    -------
    str
        The lines, sections and keys in schema order, columns aligned, ending with a newline.
    """
    rows = [
        (f"{section}.{key}", _format_value(value), loaded.origins.get(f"{section}.{key}", "?"))
        for section, keys in settings_to_dict(loaded.settings).items()
        for key, value in keys.items()
    ]
    name_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [f"{name:<{name_width}} = {value:<{value_width}}   [{origin}]" for name, value, origin in rows]
    return "\n".join(lines) + "\n"
