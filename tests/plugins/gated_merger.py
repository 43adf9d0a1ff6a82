"""A merger that waits for a go-ahead: a test can kill a run while its job is merging, at no race.

When it starts it creates ``<output>.merging``; it merges (as the HDF5 merger) once
``<output>.go`` exists. The merger runs in a process of its own, which dies with rank 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from hpcpilot.model.errors import PayloadError
from hpcpilot.payload.merge import MergeInput, Merger
from hpcpilot.payload.merge_hdf5 import Hdf5Merger

#: The longest a merge waits for its go-ahead before it fails.
WAIT_S = 300.0


def merging_marker(output: Path) -> Path:
    """The file the merger creates when it starts."""
    return output.with_name(output.name + ".merging")


def gate(output: Path) -> Path:
    """The file that lets the merger go on."""
    return output.with_name(output.name + ".go")


class GatedMerger(Merger):
    """The HDF5 merger, once `gate` exists."""

    extensions = Hdf5Merger.extensions

    def merge(self, inputs: Sequence[MergeInput], output: Path) -> int:
        """Announce the merge, wait for the gate, merge."""
        merging_marker(output).touch()
        deadline = time.monotonic() + WAIT_S
        while not gate(output).exists():
            if time.monotonic() > deadline:
                raise PayloadError(f"no go-ahead for the merge of {output.name} in {WAIT_S:.0f} s")
            time.sleep(0.02)
        return Hdf5Merger().merge(inputs, output)
