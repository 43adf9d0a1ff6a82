"""Load the settings tree from its layers and remember where every value came from.

Layers, lowest first:

1. built-in defaults (the dataclass defaults in `hpcpilot.config.schema`);
2. the site file: ``site_configs/<site>.yaml`` looked up by name, or an explicit path;
3. the user file: the path in ``$HPCPILOT_CONFIG``, if set;
4. environment variables ``HPCPILOT_<SECTION>__<KEY>`` (section and key case-insensitive);
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
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

import hpcpilot
from hpcpilot.config.schema import Settings
from hpcpilot.model.bounds import RANGE_EVENTS
from hpcpilot.model.errors import ConfigError

__all__ = [
    "LoadedConfig",
    "available_sites",
    "check_config_file",
    "format_config",
    "load_config",
    "settings_to_dict",
    "site_config_dirs",
]

ENV_PREFIX = "HPCPILOT_"
"""Prefix of the environment variables that set one key (``HPCPILOT_<SECTION>__<KEY>``)."""

USER_CONFIG_VAR = "HPCPILOT_CONFIG"
"""Environment variable holding the path of the user file."""

SITE_DIR_VAR = "HPCPILOT_SITE_CONFIG_DIR"
"""Environment variable naming an extra directory searched first for site files."""

_SUPPORTED_TYPES: tuple[type, ...] = (str, int, float, bool)
_TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
_FALSE_WORDS = frozenset({"false", "no", "0", "off"})
_TYPE_WORDS: Mapping[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
}


@dataclass(frozen=True)
class _Rule:
    """An extra check on one key beyond its type.

    Attributes
    ----------
    minimum
        Smallest allowed value of a numeric field.
    maximum
        Largest allowed value of a numeric field (None: no limit).
    choices
        Allowed values of a string field, matched case-insensitively and normalised to the
        spelling given here.
    """

    minimum: float = 0
    maximum: float | None = None
    choices: tuple[str, ...] = ()


_DEFAULT_RULE = _Rule()
"""Applies to every key not in `_RULES`: numbers must not be negative."""

_RULES: Mapping[str, _Rule] = {
    "local.events_per_range": _Rule(minimum=1, maximum=RANGE_EVENTS.maximum),
    "eventservice.max_attempts": _Rule(minimum=1),
    "eventservice.prefetch_per_slot": _Rule(minimum=1),
    "eventservice.request_max": _Rule(minimum=1),
    "parallel.batch_size": _Rule(minimum=1),
    "parallel.fault_tolerance": _Rule(choices=("auto", "on", "off")),
    "run.log_level": _Rule(choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    "run.status_mode": _Rule(choices=("auto", "redraw", "lines")),
    "eventservice.exhausted_status": _Rule(choices=("failed", "fatal")),
    "harvester.job_spec_format": _Rule(choices=("json", "cgi")),
    "harvester.poll_s": _Rule(minimum=0.01),
    "panda.api": _Rule(choices=("v1", "legacy")),
    "panda.retries": _Rule(minimum=1),
    "panda.timeout_s": _Rule(minimum=0.1),
    "panda.outbox_max": _Rule(minimum=1),
    "batch.query_timeout_s": _Rule(minimum=0.1),
    "launch.ranks_per": _Rule(choices=("node", "gpu", "core")),
    "node.gpus": _Rule(minimum=-1),
    "node.gpu_vendor": _Rule(choices=("nvidia", "amd", "intel")),
    "data.async_workers": _Rule(minimum=1),
    "data.timeout_s": _Rule(minimum=0.1),
    "monitor.period_s": _Rule(minimum=0.01),
    "monitor.write_interval_s": _Rule(minimum=0.01),
    "disk.retry_s": _Rule(minimum=0.01),
}


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
def _schema() -> dict[str, tuple[type, dict[str, type]]]:
    """Return ``section -> (section class, key -> field type)``, in schema order."""
    section_types = typing.get_type_hints(Settings)
    schema: dict[str, tuple[type, dict[str, type]]] = {}
    for section in dataclasses.fields(Settings):
        cls = section_types[section.name]
        hints = typing.get_type_hints(cls)
        keys: dict[str, type] = {}
        for item in dataclasses.fields(cls):
            kind = hints[item.name]
            if kind not in _SUPPORTED_TYPES:
                raise TypeError(f"unsupported settings type {kind!r} for {section.name}.{item.name}")
            keys[item.name] = kind
        schema[section.name] = (cls, keys)
    return schema


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _section_keys(section: str, source: str) -> dict[str, type]:
    """Return ``key -> field type`` of a section, or raise naming the source and the section."""
    schema = _schema()
    if section not in schema:
        hint = _did_you_mean(section, schema)
        raise ConfigError(f"{source}: unknown section '{section}'{hint}")
    return schema[section][1]


def _key_type(section: str, key: str, source: str) -> type:
    """Return the field type of ``section.key``, or raise naming the source and the unknown name."""
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


def _from_native(value: object, kind: type) -> object:
    """Check a YAML value against ``kind``; raise ValueError with the reason."""
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


def _apply_rule(dotted: str, value: object) -> object:
    """Apply the extra rule of ``dotted`` to a typed value; raise ValueError with the reason."""
    rule = _RULES.get(dotted, _DEFAULT_RULE)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < rule.minimum:
            raise ValueError(f"must be >= {rule.minimum:g}, got {value!r}")
        if rule.maximum is not None and value > rule.maximum:
            raise ValueError(f"must be <= {rule.maximum}, got {value!r}")
    if isinstance(value, str) and rule.choices:
        for choice in rule.choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(rule.choices)}, got {value!r}")
    return value


def _validate(section: str, key: str, value: object, source: str, *, text: bool) -> object:
    """Return the typed, checked value of ``section.key`` or raise a ConfigError naming both."""
    kind = _key_type(section, key, source)
    dotted = f"{section}.{key}"
    try:
        if text and isinstance(value, str):
            return _apply_rule(dotted, _from_text(value, kind))
        return _apply_rule(dotted, _from_native(value, kind))
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


def site_config_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Return the existing directories searched for site files, first match wins.

    Parameters
    ----------
    env
        The environment to read ``$HPCPILOT_SITE_CONFIG_DIR`` from; defaults to ``os.environ``.

    Returns
    -------
    list[Path]
        ``$HPCPILOT_SITE_CONFIG_DIR`` if set, then the ``site_configs`` directory next to the
        ``hpcpilot`` package directory, then ``<sys.prefix>/share/hpcpilot/site_configs``; only
        those that exist, without duplicates.
    """
    environ = os.environ if env is None else env
    candidates: list[Path] = []
    if environ.get(SITE_DIR_VAR):
        candidates.append(Path(environ[SITE_DIR_VAR]))
    candidates.append(Path(hpcpilot.__file__).parent.parent / "site_configs")
    candidates.append(Path(sys.prefix) / "share" / "hpcpilot" / "site_configs")
    dirs: list[Path] = []
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if candidate.is_dir() and resolved not in seen:
            seen.add(resolved)
            dirs.append(candidate)
    return dirs


def available_sites(env: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the site files in `site_config_dirs`, sorted.

    Parameters
    ----------
    env
        The environment to read ``$HPCPILOT_SITE_CONFIG_DIR`` from; defaults to ``os.environ``.

    Returns
    -------
    list[str]
        Every ``<name>`` of a ``<name>.yaml`` file in any of the directories.
    """
    names = {path.stem for d in site_config_dirs(env) for path in d.glob("*.yaml") if path.is_file()}
    return sorted(names)


def _find_site(site: str, env: Mapping[str, str]) -> Path:
    """Return the first ``<dir>/<site>.yaml``, or raise listing the available sites."""
    if site in available_sites(env):
        for directory in site_config_dirs(env):
            path = directory / f"{site}.yaml"
            if path.is_file():
                return path
    names = ", ".join(available_sites(env)) or "none"
    dirs = ", ".join(str(d) for d in site_config_dirs(env)) or "none"
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
        Name of a site file looked up in `site_config_dirs` (``local`` for
        ``site_configs/local.yaml``).
    site_file
        Explicit path of the site file; give ``site`` or ``site_file``, not both.
    env
        The environment: ``HPCPILOT_CONFIG``, ``HPCPILOT_SITE_CONFIG_DIR`` and the
        ``HPCPILOT_<SECTION>__<KEY>`` variables; defaults to ``os.environ``.
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
