"""Worker ranks import little: at 512 nodes every imported file is read 512 times.

A worker needs neither h5py nor numpy (rank 0 keeps the time series: `hpcpilot.parallel.monitoring`,
`hpcpilot.monitor.timeseries`), nor ``importlib.metadata``: its plugins are looked up in the
entry-point table rank 0 sends it (`hpcpilot.plugins.use_entry_point_table`).
"""

from __future__ import annotations

import json
import subprocess
import sys

from hpcpilot.plugins import entry_point_table
from tests.conftest import pilot_env

WORKER_PATH = (
    "hpcpilot.__main__",
    "hpcpilot.cli",
    "hpcpilot.pilot",
    "hpcpilot.parallel.run",
    "hpcpilot.parallel.worker",
    "hpcpilot.payload.per_range",
    "hpcpilot.payload.streaming",
    "hpcpilot.payload.plain",
    "hpcpilot.payload.sleep",
    "hpcpilot.monitor.psutil_monitor",
)
FORBIDDEN = (
    "hpcpilot.comm",
    "hpcpilot.parallel.coordinator",
    "hpcpilot.parallel.books",
    "hpcpilot.parallel.monitoring",
    "hpcpilot.parallel.resume",
    "hpcpilot.monitor.timeseries",
    "hpcpilot.runtime.journal",
    "hpcpilot.config.loader",
    "importlib.metadata",
    "yaml",
    "h5py",
    "numpy",
    "mpi4py",
)
# what a worker loads by name at run time, with the default settings and every payload mode
LOADED = (
    ("payloads", "per_range", "hpcpilot.payload.base:SlotRunner"),
    ("payloads", "streaming", "hpcpilot.payload.base:SlotRunner"),
    ("payloads", "plain", "hpcpilot.payload.base:SlotRunner"),
    ("payloads", "sleep", "hpcpilot.payload.base:SlotRunner"),
    ("monitors", "psutil", "hpcpilot.monitor.base:Monitor"),
    ("environments", "plain", "hpcpilot.environment.base:Environment"),
)


def _modules(code: str) -> list[str]:
    code += "\nprint('\\n'.join(sorted(sys.modules)))\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=pilot_env()
    ).stdout.split()


def test_worker_import_path_excludes_rank0_and_heavy_modules() -> None:
    out = _modules(f"import importlib, sys\nfor m in {WORKER_PATH!r}: importlib.import_module(m)")
    leaked = [m for m in out if m.startswith(FORBIDDEN)]
    assert leaked == []
    assert "hpcpilot.parallel.worker" in out


def test_a_worker_loads_its_plugins_from_rank_0s_table_without_reading_metadata() -> None:
    table = json.dumps(entry_point_table())  # as rank 0 reads it and broadcasts it
    out = _modules(
        "import importlib, json, sys\n"
        "from hpcpilot.plugins import load_plugin, use_entry_point_table\n"
        f"use_entry_point_table(json.loads({table!r}))\n"
        f"for family, name, base in {LOADED!r}:\n"
        "    module, _, attr = base.partition(':')\n"
        "    cls = load_plugin(family, name, getattr(importlib.import_module(module), attr))\n"
        "    print(cls.__module__)\n"
    )
    assert {"hpcpilot.payload.streaming", "hpcpilot.monitor.psutil_monitor"} <= set(out)
    leaked = [m for m in out if m.startswith(FORBIDDEN)]
    assert leaked == []
