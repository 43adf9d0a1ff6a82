"""Configuration: the settings tree (:mod:`.schema`) and its layered loader (:mod:`.loader`)."""

from hpcpilot.config.loader import (
    LoadedConfig,
    available_sites,
    check_config_file,
    format_config,
    load_config,
    settings_to_dict,
    site_config_dirs,
)
from hpcpilot.config.schema import (
    EventServiceSettings,
    LocalSettings,
    NodeSettings,
    ParallelSettings,
    PayloadSettings,
    RunSettings,
    Settings,
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
