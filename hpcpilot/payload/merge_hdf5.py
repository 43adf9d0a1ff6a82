"""Merge per-range HDF5 outputs into one file (the ``hdf5`` merger).

Inputs are merged in order of ``start_event``. Every dataset of the first input (at any depth) is
concatenated along its first axis; every input must have the same datasets with the same dtypes and
row shapes. The output's datasets are created at their final size and filled one input at a time, in
blocks, so at most one block of one input is held in memory.

The output also records where every row came from: a group ``ranges`` holds one subgroup per
input, named by its range id, with the attributes ``eventRangeID``, ``startEvent``, ``lastEvent``,
``nEvents``, ``source``, ``adler32`` and ``offset`` (the input's first row in the merged
``events``).
The file attributes are ``nRanges``, ``nEvents`` and ``merger``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.payload.merge import MergeInput, Merger
from hpcpilot.runtime.atomic import atomic_path
from hpcpilot.runtime.diskspace import is_disk_full

#: Value of the output's ``merger`` attribute.
MERGER_NAME = "hpcpilot.payload.merge_hdf5"
#: Name of the provenance group in the output.
PROVENANCE_GROUP = "ranges"
#: Name of the dataset whose rows are events.
EVENTS_DATASET = "events"
#: Upper bound on the bytes copied in one block.
COPY_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """What every input's copy of a dataset must look like.

    Attributes
    ----------
    dtype
        The element type.
    row_shape
        The shape of one row (the dataset's shape without its first axis).
    """

    dtype: np.dtype[Any]
    row_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ScannedInput:
    """A merge input whose layout was checked.

    Attributes
    ----------
    item
        The input.
    lengths
        Rows of each dataset, by dataset path.
    n_events
        Rows of ``events`` if the input has that dataset, else the range's event count.
    """

    item: MergeInput
    lengths: dict[str, int]
    n_events: int


Layout = dict[str, tuple[DatasetSpec, int]]


class Hdf5Merger(Merger):
    """Concatenate the datasets of per-range HDF5 outputs, with per-range provenance."""

    extensions = (".h5", ".hdf5", ".hdf")

    def merge(self, inputs: Sequence[MergeInput], output: Path) -> int:
        """Merge ``inputs`` (in order of ``start_event``) into ``output``.

        Parameters
        ----------
        inputs
            The per-range outputs; their range ids must be distinct.
        output
            The merged file, written atomically (temporary file in its directory, then rename).

        Returns
        -------
        int
            The number of events in the merged file.

        Raises
        ------
        PayloadError
            If there are no inputs, an input is missing or unreadable, its datasets differ from the
            first input's (the message names the file), or the output cannot be written.
        """
        if not inputs:
            raise PayloadError("no inputs to merge", context={"output": str(output)})
        ordered = sorted(inputs, key=lambda item: item.start_event)
        _check_range_ids(ordered)
        specs = {name: spec for name, (spec, _) in read_layout(ordered[0]).items()}
        scanned = [scan_input(item, specs) for item in ordered]
        try:
            with _atomic_hdf5(output) as handle:
                _write_merged(handle, specs, scanned)
        except (OSError, RuntimeError) as exc:  # libhdf5 closing a file whose writes failed: RuntimeError
            full = is_disk_full(exc)
            raise PayloadError(
                f"cannot write merge output {output}: {'no space left on device' if full else exc}",
                code=ErrorCode.NO_LOCAL_SPACE if full else None,
                retryable=full,
                context={"file": str(output)},
            ) from exc
        return sum(entry.n_events for entry in scanned)


def _input_error(item: MergeInput, what: str) -> PayloadError:
    """Return the error for a bad input, naming its file."""
    return PayloadError(
        f"merge input {item.path} (range {item.range_id}): {what}",
        context={"file": str(item.path), "eventRangeID": item.range_id},
    )


def _check_range_ids(inputs: Sequence[MergeInput]) -> None:
    """Raise unless every range id is distinct and usable as a group name."""
    seen: set[str] = set()
    for item in inputs:
        if not item.range_id or "/" in item.range_id or item.range_id in {".", ".."}:
            raise _input_error(item, f"range id {item.range_id!r} cannot name a group")
        if item.range_id in seen:
            raise _input_error(item, "range id appears more than once")
        seen.add(item.range_id)


@contextmanager
def _reading(item: MergeInput) -> Iterator[None]:
    """Turn errors reading ``item`` inside the block into `PayloadError` naming the file."""
    try:
        yield
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise _input_error(item, f"cannot read: {exc}") from exc


@contextmanager
def _open_input(item: MergeInput) -> Iterator[Any]:
    """Open an input for reading; a missing or unreadable file raises `PayloadError`."""
    with _reading(item):
        handle = h5py.File(item.path, "r")
    with handle:
        yield handle


def read_layout(item: MergeInput) -> Layout:
    """Return the datasets of an input as ``{path: (spec, rows)}``.

    Raises
    ------
    PayloadError
        If the file cannot be read, or a dataset is scalar or collides with the provenance group.
    """
    datasets: dict[str, Any] = {}

    def collect(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            datasets[name] = obj

    with _open_input(item) as handle:
        with _reading(item):
            handle.visititems(collect)
        return {name: _describe(item, name, dataset) for name, dataset in datasets.items()}


def _describe(item: MergeInput, name: str, dataset: Any) -> tuple[DatasetSpec, int]:
    """Return a dataset's spec and row count."""
    if name == PROVENANCE_GROUP or name.startswith(PROVENANCE_GROUP + "/"):
        raise _input_error(item, f"dataset {name} collides with the provenance group")
    shape = dataset.shape
    if not shape:
        raise _input_error(item, f"dataset {name} is scalar or empty and cannot be concatenated")
    dtype: np.dtype[Any] = np.dtype(dataset.dtype)
    return DatasetSpec(dtype, tuple(int(n) for n in shape[1:])), int(shape[0])


def scan_input(item: MergeInput, specs: dict[str, DatasetSpec]) -> ScannedInput:
    """Check an input against the first input's datasets and count its rows.

    Raises
    ------
    PayloadError
        If the input cannot be read or its datasets, dtypes or row shapes differ from ``specs``.
    """
    layout = read_layout(item)
    if set(layout) != set(specs):
        raise _input_error(item, f"has datasets {sorted(layout)}, the first input has {sorted(specs)}")
    for name, expected in specs.items():
        actual = layout[name][0]
        if actual != expected:
            raise _input_error(
                item,
                f"dataset {name} has dtype {actual.dtype} and rows {actual.row_shape}, "
                f"the first input's has dtype {expected.dtype} and rows {expected.row_shape}",
            )
    lengths = {name: rows for name, (_, rows) in layout.items()}
    n_events = lengths.get(EVENTS_DATASET, item.last_event - item.start_event + 1)
    return ScannedInput(item=item, lengths=lengths, n_events=n_events)


@contextmanager
def _atomic_hdf5(output: Path) -> Iterator[Any]:
    """Yield an HDF5 file open for writing that replaces ``output`` only once complete.

    The file is written beside ``output`` under a temporary name, closed, fsynced and renamed
    (`hpcpilot.runtime.atomic.atomic_path`); it is removed if anything fails.
    """
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as handle:
        yield handle


def _write_merged(handle: Any, specs: dict[str, DatasetSpec], scanned: list[ScannedInput]) -> None:
    """Create the merged datasets at full size, fill them input by input, record provenance."""
    targets = {
        name: handle.create_dataset(
            name,
            shape=(sum(entry.lengths[name] for entry in scanned), *spec.row_shape),
            dtype=spec.dtype,
            track_times=False,
        )
        for name, spec in specs.items()
    }
    provenance = handle.create_group(PROVENANCE_GROUP)
    offsets = dict.fromkeys(specs, 0)
    event_offset = 0
    for entry in scanned:
        _copy_input(entry, targets, offsets)
        _record_provenance(provenance, entry, event_offset)
        event_offset += entry.n_events
    handle.attrs["nRanges"] = np.int64(len(scanned))
    handle.attrs["nEvents"] = np.int64(event_offset)
    handle.attrs["merger"] = MERGER_NAME


def _copy_input(entry: ScannedInput, targets: dict[str, Any], offsets: dict[str, int]) -> None:
    """Copy one input's datasets into the merged ones at ``offsets``, then advance the offsets."""
    item = entry.item
    with _open_input(item) as handle:
        for name, target in targets.items():
            with _reading(item):
                source = handle[name]
            rows = entry.lengths[name]
            _copy_rows(item, source, target, rows, offsets[name])
            offsets[name] += rows


def _copy_rows(item: MergeInput, source: Any, target: Any, rows: int, start: int) -> None:
    """Copy ``rows`` rows of ``source`` into ``target`` from row ``start``, block by block."""
    row_bytes = max(1, int(np.dtype(source.dtype).itemsize) * int(np.prod(source.shape[1:])))
    block = max(1, COPY_BLOCK_BYTES // row_bytes)
    for first in range(0, rows, block):
        last = min(rows, first + block)
        with _reading(item):
            data = source[first:last]
            if len(data) != last - first:
                raise ValueError(f"dataset {source.name} shrank while merging")
        target[start + first : start + last] = data


def _record_provenance(provenance: Any, entry: ScannedInput, offset: int) -> None:
    """Add the subgroup describing one input to the provenance group."""
    item = entry.item
    group = provenance.create_group(item.range_id)
    group.attrs["eventRangeID"] = item.range_id
    group.attrs["startEvent"] = np.int64(item.start_event)
    group.attrs["lastEvent"] = np.int64(item.last_event)
    group.attrs["nEvents"] = np.int64(entry.n_events)
    group.attrs["source"] = item.path.name
    group.attrs["adler32"] = item.adler32
    group.attrs["offset"] = np.int64(offset)
