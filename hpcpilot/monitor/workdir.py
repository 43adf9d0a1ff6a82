"""Reading a run's work directory for ``hpcpilot status`` / ``report``: journal, summary, monitor.h5.

Safe while the run goes on, from any node sharing the filesystem: the journal is append-only (a torn
last line is skipped), ``summary.json`` is written atomically, and ``monitor.h5`` is read with retries.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcpilot.model.layout import WorkLayout
from hpcpilot.monitor.runview import Liveness, RunView, liveness, run_view
from hpcpilot.monitor.timeseries import MonitorData, read_series
from hpcpilot.runtime.records import read_records


@dataclass(frozen=True, slots=True)
class RunFiles:
    """What a work directory holds about its run.

    Attributes
    ----------
    view
        The journal's view.
    live
        Whether the run looks alive.
    data
        ``monitor.h5``'s tables, None without the file.
    summary
        ``summary.json``, None before the run ended.
    summary_t
        When ``summary.json`` was written (its modification time; None without one).
    """

    view: RunView
    live: Liveness
    data: MonitorData | None
    summary: dict[str, Any] | None
    summary_t: float | None = None


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_run(workdir: Path, monitor_file: str = "monitor.h5") -> RunFiles:
    """Read a work directory's journal, ``summary.json`` and ``monitor_file``."""
    layout = WorkLayout(workdir)
    view = run_view(read_records(layout.journal))
    host = socket.gethostname()
    alive = pid_alive(view.run.pid) if view.run is not None and view.run.pid else None
    summary: dict[str, Any] | None = None
    summary_t: float | None = None
    try:
        summary_t = layout.summary.stat().st_mtime
        loaded = json.loads(layout.summary.read_text())
        summary = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        summary = None
    series = workdir / monitor_file
    try:
        series_t: float | None = series.stat().st_mtime
    except OSError:
        series_t = None
    live = liveness(view, time.time(), host, alive, summary_t=summary_t, series_t=series_t)
    return RunFiles(view, live, read_series(series), summary, summary_t if summary is not None else None)
