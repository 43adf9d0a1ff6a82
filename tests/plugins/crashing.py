"""A payload plugin whose runner raises an unexpected exception: tests the abort path."""

from __future__ import annotations

from hpcpilot.payload.base import ItemResult, SlotRunner, WorkItem


class CrashingRunner(SlotRunner):
    """Raises RuntimeError as soon as it is given a range."""

    @property
    def busy(self) -> bool:
        return False

    def submit(self, item: WorkItem) -> None:
        raise RuntimeError("injected crash in a worker")

    def poll(self) -> list[ItemResult]:
        return []
