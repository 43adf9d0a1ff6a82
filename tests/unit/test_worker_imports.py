"""Worker ranks import little: at 512 nodes every imported file is read 512 times."""

from __future__ import annotations

import subprocess
import sys

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
)
FORBIDDEN = (
    "hpcpilot.comm",
    "hpcpilot.parallel.coordinator",
    "hpcpilot.config.loader",
    "yaml",
    "h5py",
    "numpy",
    "mpi4py",
)


def test_worker_import_path_excludes_rank0_and_heavy_modules() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {WORKER_PATH!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=pilot_env()
    ).stdout.split()
    leaked = [m for m in out if m.startswith(FORBIDDEN)]
    assert leaked == []
    assert "hpcpilot.parallel.worker" in out
