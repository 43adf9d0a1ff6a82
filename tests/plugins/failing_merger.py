"""A merger that always fails: tests that a failed merge fails its job, named, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hpcpilot.model.errors import PayloadError
from hpcpilot.payload.merge import MergeInput, Merger


class FailingMerger(Merger):
    """Raises PayloadError naming its first input."""

    def merge(self, inputs: Sequence[MergeInput], output: Path) -> int:
        raise PayloadError(f"cannot merge {inputs[0].path.name}: injected failure")
