"""Configuration: the settings tree (`.schema`) and its layered loader (`.loader`).

The loader (and with it PyYAML) is imported only when one of its names is used: worker ranks receive
their settings from rank 0 and never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcpilot.config.schema import (
    EventServiceSettings,
    LocalSettings,
    NodeSettings,
    ParallelSettings,
    PayloadSettings,
    RunSettings,
    Settings,
)

if TYPE_CHECKING:
    from hpcpilot.config.loader import (
        LoadedConfig,
        available_sites,
        check_config_file,
        format_config,
        load_config,
        settings_to_dict,
        site_config_dirs,
    )

_LOADER_NAMES = frozenset(
    {
        "LoadedConfig",
        "available_sites",
        "check_config_file",
        "format_config",
        "load_config",
        "settings_to_dict",
        "site_config_dirs",
    }
)

__all__ = [
    "EventServiceSettings",
    "LoadedConfig",
    "LocalSettings",
    "NodeSettings",
    "ParallelSettings",
    "PayloadSettings",
    "RunSettings",
    "Settings",
    "available_sites",
    "check_config_file",
    "format_config",
    "load_config",
    "settings_to_dict",
    "site_config_dirs",
]


def __getattr__(name: str) -> Any:
    """Import the loader's names on first use."""
    if name in _LOADER_NAMES:
        from hpcpilot.config import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'hpcpilot.config' has no attribute {name!r}")
