"""The picture of ``hpcpilot report --plot``: slot utilisation per node and ranges finished over time.

The only module that imports matplotlib (the optional extra ``hpcpilot[plot]``), with the Agg
backend: no display is needed. The picture is `WIDTH_PX` x `HEIGHT_PX` pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpcpilot.model import metrics as m
from hpcpilot.model.errors import ConfigError
from hpcpilot.monitor.runview import RunView
from hpcpilot.monitor.timeseries import MonitorData

WIDTH_PX = 1200
HEIGHT_PX = 800
DPI = 100


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the report's picture needs matplotlib: pip install 'hpcpilot[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _utilisation(t: np.ndarray, busy: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Busy fraction at each row: ``slots`` carried forward over rows that lack it."""
    keep = ~np.isnan(t) & ~np.isnan(busy)
    order = np.argsort(t[keep], kind="stable")
    t, busy, slots = t[keep][order], busy[keep][order], slots[keep][order]
    last = np.nan
    filled = np.empty_like(slots)
    for i, s in enumerate(slots):
        last = s if not np.isnan(s) and s > 0 else last
        filled[i] = last
    return t, np.where(np.isnan(filled), np.nan, busy / filled)


def plot_run(view: RunView, data: MonitorData | None, path: Path, title: str = "") -> Path:
    """Draw the picture into ``path`` (PNG) and return it.

    Raises
    ------
    ConfigError
        If matplotlib is not installed (names the extra to install).
    """
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, sharex=True)
    nodes = data.nodes if data is not None else {}
    starts = [float(np.nanmin(t.columns["t"])) for t in nodes.values() if len(t)]
    t0 = min([*starts, view.first_t] if view.records else starts, default=0.0)
    for rank, table in sorted(nodes.items()):
        cols = table.columns
        if "t" not in cols or m.BUSY_SLOTS not in cols:
            continue
        slots = cols.get("slots", np.full(len(table), np.nan))
        t, util = _utilisation(cols["t"], cols[m.BUSY_SLOTS], slots)
        host = table.attrs.get("host", "")
        top.step(t - t0, 100 * util, where="post", label=f"rank {rank} {host}".strip())
    top.set_ylabel("busy slots (%)")
    top.set_ylim(-5, 105)
    top.set_title(title or "slot utilisation per node")
    if nodes:
        top.legend(loc="lower right", fontsize="small", ncol=max(1, len(nodes) // 8))
    else:
        top.text(0.5, 0.5, "no monitor.h5", ha="center", va="center", transform=top.transAxes)
    if view.finished_times:
        points = sorted(view.finished_times)
        times = np.array([t for t, _ in points]) - t0
        counts = np.cumsum([n for _, n in points])
        bottom.step(np.concatenate(([0.0], times)), np.concatenate(([0], counts)), where="post")
    bottom.set_ylabel("ranges finished")
    bottom.set_xlabel("seconds since the start")
    bottom.grid(alpha=0.3)
    top.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
