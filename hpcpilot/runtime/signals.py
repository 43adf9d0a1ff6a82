"""Signals that ask the run to end cleanly: SIGTERM, SIGUSR1, SIGINT, SIGXCPU."""

from __future__ import annotations

import signal
from types import FrameType

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGXCPU)


class SignalFlag:
    """Records drain signals instead of dying from them; the event loops poll `take`."""

    def __init__(self) -> None:
        self._pending: int | None = None

    def install(self) -> None:
        """Install the handlers (main thread only)."""
        for signum in DRAIN_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._pending = signum

    def take(self) -> int | None:
        """The signal received since the last call, if any."""
        signum, self._pending = self._pending, None
        return signum
