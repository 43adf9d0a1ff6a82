from __future__ import annotations

import pytest

from hpcpilot.comm.base import Communicator
from hpcpilot.model.errors import PluginError
from hpcpilot.payload.base import SlotRunner
from hpcpilot.payload.per_range import PerRangeRunner
from hpcpilot.plugins import describe_plugins, load_plugin, plugin_names


def test_built_in_plugins_load_by_name() -> None:
    assert load_plugin("payloads", "per_range", SlotRunner) is PerRangeRunner
    assert {"per_range", "streaming", "plain", "sleep"} <= set(plugin_names("payloads"))
    infos = describe_plugins()
    assert all(i.loads for i in infos), [i for i in infos if not i.loads]
    assert {(i.family, i.name) for i in infos} >= {("communicators", "local"), ("mergers", "hdf5")}


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(PluginError) as err:
        load_plugin("payloads", "per-range", SlotRunner)
    assert "no payloads plugin named 'per-range'" in str(err.value)
    assert "per_range" in str(err.value) and "streaming" in str(err.value)
    with pytest.raises(PluginError, match="unknown plugin family"):
        load_plugin("no_such_family", "xrdcp", SlotRunner)


def test_import_paths_are_checked() -> None:
    from tests.plugins.crashing import CrashingRunner

    assert load_plugin("payloads", "tests.plugins.crashing:CrashingRunner", SlotRunner) is CrashingRunner
    with pytest.raises(PluginError, match="is not a subclass of Communicator"):
        load_plugin("communicators", "tests.plugins.crashing:CrashingRunner", Communicator)
    with pytest.raises(PluginError, match="cannot be imported"):
        load_plugin("payloads", "tests.plugins.nowhere:Runner", SlotRunner)
    with pytest.raises(PluginError, match="cannot be imported"):
        load_plugin("payloads", "tests.plugins.crashing:Missing", SlotRunner)
