"""The picture of ``hpcpilot report --plot``: slot utilisation per node and ranges finished over time.

The only module that imports matplotlib (the optional extra ``hpcpilot[plot]``), with the Agg
backend: no display is needed. The picture is `WIDTH_PX` x `HEIGHT_PX` pixels.
"""

from __future__ import annotations

import math
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

#: Time bins of the utilisation heat map.
GRID_BINS = 400


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


def utilisation_grid(
    data: MonitorData | None, t0: float, t1: float, bins: int = GRID_BINS
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Every node's busy fraction on a common time grid (NaN before a node's first row).

    Returns
    -------
    tuple
        The grid's edges (seconds since ``t0``), the ranks (rows), and the fractions
        (``len(ranks)`` x ``bins``), each the value in force at the middle of its bin.
    """
    edges = np.linspace(0.0, max(t1 - t0, 1e-3), bins + 1)
    middles = t0 + (edges[:-1] + edges[1:]) / 2
    ranks: list[int] = []
    rows: list[np.ndarray] = []
    nodes = data.nodes if data is not None else {}
    for rank, table in sorted(nodes.items()):
        cols = table.columns
        if "t" not in cols or m.BUSY_SLOTS not in cols:
            continue
        t, util = _utilisation(cols["t"], cols[m.BUSY_SLOTS], cols.get("slots", np.full(len(table), np.nan)))
        if not t.size:
            continue
        at = np.searchsorted(t, middles, side="right") - 1
        rows.append(np.where(at >= 0, util[np.clip(at, 0, None)], np.nan))
        ranks.append(rank)
    grid = np.vstack(rows) if rows else np.empty((0, bins))
    return edges, ranks, grid


def _span(view: RunView, data: MonitorData | None) -> tuple[float, float]:
    times = [t for table in (data.nodes.values() if data else ()) for t in table.columns.get("t", ())]
    if view.records:
        times += [view.first_t, view.last_t]
    finite = [float(t) for t in times if math.isfinite(t)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def plot_run(view: RunView, data: MonitorData | None, path: Path, title: str = "") -> Path:
    """Draw the picture into ``path`` (PNG) and return it.

    Three panels over the same time axis: every node's slot utilisation as a heat map (one row per
    rank, readable for 3 nodes as for 500), the whole run's utilisation, and the ranges finished.

    Raises
    ------
    ConfigError
        If matplotlib is not installed (names the extra to install).
    """
    plt = _pyplot()
    fig, (heat, total, done) = plt.subplots(
        3,
        1,
        figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI),
        dpi=DPI,
        sharex=True,
        gridspec_kw={"height_ratios": [2, 1, 2]},
    )
    t0, t1 = _span(view, data)
    edges, ranks, grid = utilisation_grid(data, t0, t1)
    fig.suptitle(title or "hpcpilot run")
    if ranks:
        image = heat.pcolormesh(
            edges,
            np.arange(len(ranks) + 1),
            np.ma.masked_invalid(100 * grid),
            vmin=0,
            vmax=100,
            cmap="viridis",
            shading="flat",
        )
        fig.colorbar(image, ax=[heat, total, done], label="busy slots (%)", fraction=0.03, pad=0.01)
        step = max(1, len(ranks) // 16)
        heat.set_yticks(np.arange(0, len(ranks), step) + 0.5, [f"rank {r}" for r in ranks[::step]])
        mean = np.nanmean(np.where(np.isnan(grid), 0.0, grid), axis=0)
        total.step(edges[:-1], 100 * mean, where="post")
    else:
        heat.text(0.5, 0.5, "no node rows in monitor.h5", ha="center", va="center", transform=heat.transAxes)
    heat.set_title("slot utilisation per node")
    total.set_ylabel("all nodes (%)")
    total.set_ylim(-5, 105)
    if view.finished_times:
        points = sorted(view.finished_times)
        times = np.array([t for t, _ in points]) - t0
        counts = np.cumsum([n for _, n in points])
        done.step(np.concatenate(([0.0], times)), np.concatenate(([0], counts)), where="post")
    done.set_ylabel("ranges finished")
    done.set_xlabel("seconds since the start")
    for axis in (total, done):
        axis.grid(alpha=0.3)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
