"""The report's picture: the utilisation grid, the PNG's size, the message without matplotlib."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcpilot.model.errors import ConfigError
from hpcpilot.monitor.plot import HEIGHT_PX, WIDTH_PX, plot_run, utilisation_grid
from hpcpilot.monitor.runview import run_view
from hpcpilot.monitor.timeseries import MonitorData, Table


def node(t: list[float], busy: list[float], slots: list[float]) -> Table:
    return Table({"host": "h"}, {"t": np.array(t), "busy_slots": np.array(busy), "slots": np.array(slots)})


DATA = MonitorData(
    nodes={
        1: node([0.0, 5.0, 10.0], [2.0, 1.0, 0.0], [2.0, np.nan, np.nan]),  # slots carried forward
        2: node([4.0, 10.0], [4.0, 0.0], [4.0, 4.0]),
    },
    jobs={},
)


def test_utilisation_grid_holds_values_and_is_nan_before_a_node_starts() -> None:
    edges, ranks, grid = utilisation_grid(DATA, 0.0, 10.0, bins=10)
    assert ranks == [1, 2] and grid.shape == (2, 10) and edges[-1] == 10.0
    np.testing.assert_array_equal(grid[0], [1.0] * 5 + [0.5] * 5)
    np.testing.assert_array_equal(grid[1], [np.nan] * 4 + [1.0] * 6)


def test_plot_has_the_expected_size(tmp_path: Path) -> None:
    view = run_view(
        [
            {
                "t": 1.0,
                "t_end": 3.0,
                "ev": "finished",
                "job": 1,
                "rank": 1,
                "ids": ["a", "b"],
                "nevents": [1, 1],
            }
        ]
    )
    png = plot_run(view, DATA, tmp_path / "p.png")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (WIDTH_PX, HEIGHT_PX)
    plot_run(run_view([]), None, tmp_path / "empty.png")  # nothing to draw is no error
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"hpcpilot\[plot\]"):
        plot_run(run_view([]), None, tmp_path / "p.png")
