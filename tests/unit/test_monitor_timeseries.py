"""The ``monitor.h5`` time series: round trip, late columns, appending after a reopen, readers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcpilot.monitor import timeseries as ts
from hpcpilot.monitor.timeseries import TimeSeriesWriter, read_series


def test_round_trip_with_a_late_column(tmp_path: Path) -> None:
    path = tmp_path / "monitor.h5"
    writer = TimeSeriesWriter(path)
    writer.add_node_row(3, "nid003", {"t": 1.0, "load1": 0.5})
    writer.add_job_row(1001, 3, {"t": 1.0, "rss_kb": 100.0})
    assert writer.flush() and writer.pending_rows == 0
    writer.add_node_row(3, "nid003", {"t": 2.0, "load1": 0.7, "gpu_util": 0.9})  # a late metric
    writer.add_node_row(3, "nid003", {"t": 3.0, "gpu_util": 1.0})  # a row without load1
    assert writer.flush()
    data = read_series(path)
    assert data is not None
    node = data.nodes[3]
    assert node.attrs["host"] == "nid003" and len(node) == 3
    np.testing.assert_array_equal(node.columns["t"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(node.columns["load1"], [0.5, 0.7, math.nan])
    np.testing.assert_array_equal(node.columns["gpu_util"], [math.nan, 0.9, 1.0])
    job = data.jobs[1001]
    assert job.columns["rank"].tolist() == [3.0] and job.columns["rss_kb"].tolist() == [100.0]


def test_a_new_writer_appends_and_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "monitor.h5"
    first = TimeSeriesWriter(path)
    first.add_node_row(1, "a", {"t": 1.0, "busy_slots": 2.0})
    first.flush()
    second = TimeSeriesWriter(path)  # a resumed run
    second.add_node_row(1, "a", {"t": 5.0, "busy_slots": 1.0})
    second.add_node_row(2, "b", {"t": 5.0, "busy_slots": 4.0})
    second.flush()
    data = read_series(path)
    assert data is not None
    assert data.nodes[1].columns["busy_slots"].tolist() == [2.0, 1.0]
    assert data.nodes[2].columns["t"].tolist() == [5.0]
    with h5py.File(path) as f:
        assert f.attrs["format"] == ts.FORMAT
        assert f["nodes/rank-0001/t"].chunks is not None and f["nodes/rank-0001/t"].maxshape == (None,)


def test_rows_stay_queued_while_the_file_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ts, "RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(ts, "MAX_PENDING_ROWS", 2)
    path = tmp_path / "later" / "monitor.h5"  # its directory does not exist yet
    writer = TimeSeriesWriter(path)
    for t in (1.0, 2.0, 3.0):
        writer.add_node_row(1, "a", {"t": t})
    assert not writer.flush()
    assert writer.pending_rows == 2 and writer.failed_flushes == 1  # the oldest row dropped
    path.parent.mkdir()
    assert writer.flush()
    data = read_series(path)
    assert data is not None and data.nodes[1].columns["t"].tolist() == [2.0, 3.0]


def test_a_file_held_by_another_process_is_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ts, "RETRY_PAUSE_S", 0.01)
    path = tmp_path / "monitor.h5"
    writer = TimeSeriesWriter(path)
    writer.add_node_row(1, "a", {"t": 1.0})
    assert writer.flush()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        writer.add_node_row(1, "a", {"t": 2.0})
        locked = not writer.flush()
    finally:
        holder.communicate("", timeout=30)  # closing its stdin ends it
    if not locked:
        pytest.skip("this filesystem has no HDF5 file locking")
    assert writer.pending_rows == 1
    assert writer.flush()
    data = read_series(path)
    assert data is not None and data.nodes[1].columns["t"].tolist() == [1.0, 2.0]


HOLD = """
import sys, h5py
with h5py.File(sys.argv[1], "a"):
    print("open", flush=True)
    sys.stdin.read()
"""


def test_a_file_that_is_no_hdf5_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "monitor.h5"
    path.write_text("not an HDF5 file")
    writer = TimeSeriesWriter(path)
    writer.add_node_row(1, "a", {"t": 1.0})
    assert writer.flush()
    (aside,) = tmp_path.glob("monitor.h5.unreadable-*")
    assert aside.read_text() == "not an HDF5 file"  # kept, not replaced
    data = read_series(path)
    assert data is not None and len(data.nodes[1]) == 1


def test_reader_of_a_missing_or_garbage_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ts, "RETRY_PAUSE_S", 0.0)
    assert read_series(tmp_path / "none.h5") is None
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a torn file
    assert read_series(bad) is None


def test_reader_keeps_the_common_part_of_a_torn_append(tmp_path: Path) -> None:
    path = tmp_path / "monitor.h5"
    writer = TimeSeriesWriter(path)
    writer.add_node_row(1, "a", {"t": 1.0, "load1": 1.0})
    writer.add_node_row(1, "a", {"t": 2.0, "load1": 2.0})
    writer.flush()
    with h5py.File(path, "a") as f:  # as if a writer died between two columns' resizes
        f["nodes/rank-0001/t"].resize((3,))
    data = read_series(path)
    assert data is not None and len(data.nodes[1]) == 2


def test_rank_0_imports_h5py_at_the_first_write_not_before_its_first_assignment(tmp_path: Path) -> None:
    # the coordinator imports this module; h5py (with the numpy it pulls in) waited until the first
    # write, `monitor.write_interval_s` after the start, so it no longer delays the first assignment
    code = (
        "import sys\n"
        "import hpcpilot.parallel.coordinator\n"
        "from hpcpilot.monitor.timeseries import TimeSeriesWriter, read_series\n"
        "before = 'h5py' in sys.modules\n"
        f"writer = TimeSeriesWriter(__import__('pathlib').Path({str(tmp_path / 'm.h5')!r}))\n"
        "writer.add_node_row(1, 'nid001', {'t': 1.0, 'load1': 0.5})\n"
        "assert writer.flush()\n"
        "data = read_series(writer.path)\n"
        "assert data is not None and data.nodes[1].columns['load1'].tolist() == [0.5]\n"
        "print(before, 'h5py' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
