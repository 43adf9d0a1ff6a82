"""Tests of the HDF5 merger and its command line (``python -m hpcpilot.payload.merge_cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.demo.simulate import FailurePlan, RangeRequest, run_range
from hpcpilot.model.errors import PayloadError
from hpcpilot.payload.merge import MergeInput
from hpcpilot.payload.merge_hdf5 import Hdf5Merger

REPO = Path(__file__).resolve().parents[2]
SEED = 4242


def make_range(directory: Path, range_id: str, first: int, last: int) -> MergeInput:
    path = directory / f"out.{range_id}.h5"
    run_range(RangeRequest(range_id, first, last, path), seed=SEED, plan=FailurePlan())
    return MergeInput(path, range_id, first, last, adler32_of_file(path))


def make_plain(path: Path, range_id: str, first: int, last: int, dtype: str) -> MergeInput:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.arange(first, last + 1, dtype=dtype))
    return MergeInput(path, range_id, first, last, adler32_of_file(path))


def read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle[name][()])


@pytest.fixture
def three_ranges(tmp_path: Path) -> list[MergeInput]:
    parts = tmp_path / "parts"
    parts.mkdir()
    a = make_range(parts, "1-1-1-1-1", 1, 4)
    b = make_range(parts, "1-1-1-2-1", 5, 5)
    c = make_range(parts, "1-1-1-3-1", 6, 10)
    return [c, a, b]  # out of order on purpose


def test_merge_sorts_by_start_event_and_records_provenance(
    tmp_path: Path, three_ranges: list[MergeInput]
) -> None:
    output = tmp_path / "merged.h5"
    assert Hdf5Merger().merge(three_ranges, output) == 10

    events = read(output, "events")
    particles = read(output, "particles")
    np.testing.assert_array_equal(events["event_number"], np.arange(1, 11))
    assert (np.diff(particles["event_number"]) >= 0).all()
    assert len(particles) == events["n_particles"].sum()
    with h5py.File(output, "r") as handle:
        assert (handle.attrs["nRanges"], handle.attrs["nEvents"]) == (3, 10)
        assert handle.attrs["merger"] == "hpcpilot.payload.merge_hdf5"
        ranges = handle["ranges"]
        assert sorted(ranges) == ["1-1-1-1-1", "1-1-1-2-1", "1-1-1-3-1"]
        offsets = {name: int(ranges[name].attrs["offset"]) for name in ranges}
        assert offsets == {"1-1-1-1-1": 0, "1-1-1-2-1": 4, "1-1-1-3-1": 5}
        for item in three_ranges:
            attrs = ranges[item.range_id].attrs
            assert attrs["eventRangeID"] == item.range_id
            assert (attrs["startEvent"], attrs["lastEvent"]) == (item.start_event, item.last_event)
            assert attrs["nEvents"] == item.last_event - item.start_event + 1
            assert attrs["source"] == item.path.name
            assert attrs["adler32"] == item.adler32
            offset = int(attrs["offset"])
            assert events["event_number"][offset] == item.start_event
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.h5", "parts"]


def test_merge_equals_a_single_range_and_is_reproducible(
    tmp_path: Path, three_ranges: list[MergeInput]
) -> None:
    merged = tmp_path / "merged.h5"
    again = tmp_path / "again.h5"
    Hdf5Merger().merge(three_ranges, merged)
    Hdf5Merger().merge(list(reversed(three_ranges)), again)
    single = make_range(tmp_path, "whole", 1, 10)

    for name in ("events", "particles"):
        np.testing.assert_array_equal(read(merged, name), read(single.path, name))
    assert merged.read_bytes() == again.read_bytes()


def test_input_without_events_dataset_counts_its_range(tmp_path: Path) -> None:
    inputs = [
        make_plain(tmp_path / "b.h5", "b", 4, 6, "i8"),
        make_plain(tmp_path / "a.h5", "a", 1, 3, "i8"),
    ]
    output = tmp_path / "m.h5"
    assert Hdf5Merger().merge(inputs, output) == 6
    np.testing.assert_array_equal(read(output, "x"), np.arange(1, 7))
    with h5py.File(output, "r") as handle:
        assert int(handle["ranges/b"].attrs["offset"]) == 3


def test_mismatched_dtype_names_the_file(tmp_path: Path) -> None:
    inputs = [
        make_plain(tmp_path / "good.h5", "a", 1, 3, "i8"),
        make_plain(tmp_path / "odd.h5", "b", 4, 6, "f4"),
    ]
    output = tmp_path / "m.h5"
    with pytest.raises(PayloadError, match=r"odd\.h5.*dtype"):
        Hdf5Merger().merge(inputs, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5", "odd.h5"]


def test_different_datasets_name_the_file(tmp_path: Path, three_ranges: list[MergeInput]) -> None:
    extra = make_plain(tmp_path / "plain.h5", "p", 11, 12, "i8")
    with pytest.raises(PayloadError, match=r"plain\.h5.*datasets"):
        Hdf5Merger().merge([*three_ranges, extra], tmp_path / "m.h5")


def test_missing_or_unreadable_file_names_the_file(tmp_path: Path, three_ranges: list[MergeInput]) -> None:
    missing = MergeInput(tmp_path / "gone.h5", "gone", 11, 12, "00000001")
    with pytest.raises(PayloadError, match=r"gone\.h5") as caught:
        Hdf5Merger().merge([*three_ranges, missing], tmp_path / "m.h5")
    assert caught.value.context["file"] == str(missing.path)

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file")
    bad = MergeInput(garbage, "junk", 11, 12, "00000001")
    with pytest.raises(PayloadError, match=r"garbage\.h5"):
        Hdf5Merger().merge([*three_ranges, bad], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_no_inputs_or_duplicate_range_ids_fail(tmp_path: Path, three_ranges: list[MergeInput]) -> None:
    with pytest.raises(PayloadError, match="no inputs"):
        Hdf5Merger().merge([], tmp_path / "m.h5")
    with pytest.raises(PayloadError, match="more than once"):
        Hdf5Merger().merge([*three_ranges, three_ranges[0]], tmp_path / "m.h5")


def has_hdf5_entry_point() -> bool:
    return "hdf5" in {ep.name for ep in entry_points(group="hpcpilot.mergers")}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "hpcpilot.payload.merge_cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(
    not has_hdf5_entry_point(),
    reason="entry point hpcpilot.mergers:hdf5 not installed (pip install -e . to register it)",
)
def test_merge_cli(tmp_path: Path, three_ranges: list[MergeInput]) -> None:
    listing = tmp_path / "inputs.json"
    listing.write_text(
        json.dumps(
            [
                {
                    "path": str(item.path),
                    "range_id": item.range_id,
                    "start_event": item.start_event,
                    "last_event": item.last_event,
                    "adler32": item.adler32,
                }
                for item in three_ranges
            ]
        )
    )
    output = tmp_path / "merged.h5"
    proc = run_cli("--merger", "hdf5", "--inputs", str(listing), "--output", str(output), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "nEvents": 10,
        "fsize": output.stat().st_size,
        "adler32": adler32_of_file(output),
    }

    three_ranges[0].path.unlink()
    failed = run_cli("--merger", "hdf5", "--inputs", str(listing), "--output", str(output), cwd=tmp_path)
    assert failed.returncode == 2
    assert three_ranges[0].path.name in failed.stderr
    assert failed.stdout == ""
