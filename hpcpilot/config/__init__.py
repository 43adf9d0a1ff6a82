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
        SiteDir,
        SiteFile,
        available_sites,
        check_config_file,
        find_sites,
        format_config,
        format_sites,
        load_config,
        packaged_site_dir,
        settings_to_dict,
        site_config_dirs,
        site_search_path,
    )

_LOADER_NAMES = frozenset(
    {
        "LoadedConfig",
        "SiteDir",
        "SiteFile",
        "find_sites",
        "format_sites",
        "packaged_site_dir",
        "site_search_path",
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
    "SiteDir",
    "SiteFile",
    "available_sites",
    "check_config_file",
    "find_sites",
    "format_config",
    "format_sites",
    "load_config",
    "packaged_site_dir",
    "settings_to_dict",
    "site_config_dirs",
    "site_search_path",
]


def __getattr__(name: str) -> Any:
    """Import the loader's names on first use."""
    if name in _LOADER_NAMES:
        from hpcpilot.config import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'hpcpilot.config' has no attribute {name!r}")
