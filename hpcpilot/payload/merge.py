"""The merger family: turns an event-service job's per-range outputs into one output file.

Plugins register under the ``hpcpilot.mergers`` entry-point group. The coordinator runs a merge in a
separate process (``python -m hpcpilot.payload.merge_cli``) so rank 0 keeps dispatching while it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class MergeInput:
    """One per-range output to merge, with the range's provenance.

    Attributes
    ----------
    path
        The per-range output file.
    range_id
        The event range that produced it.
    start_event, last_event
        The range's events (inclusive).
    adler32
        The file's adler32 as the worker computed it.
    """

    path: Path
    range_id: str
    start_event: int
    last_event: int
    adler32: str


class Merger(ABC):
    """Base class of merger plugins."""

    #: File name extensions (lower case, with the dot) this merger handles when ``merger = auto``.
    extensions: tuple[str, ...] = ()

    @abstractmethod
    def merge(self, inputs: Sequence[MergeInput], output: Path) -> int:
        """Merge ``inputs`` (in the given order) into ``output``; return the number of events written.

        The output must be written atomically (temporary file in the same directory, then rename).

        Raises
        ------
        hpcpilot.model.errors.PayloadError
            If an input is missing or unreadable, naming the file.
        """
