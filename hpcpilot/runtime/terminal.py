"""Rank 0's live status line: redrawn in place on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def plain_interval_s(elapsed_s: float) -> float:
    """Seconds between two plain status lines: 2 in the first 30 s, 10 until 10 min, then 60."""
    if elapsed_s < 30:
        return 2.0
    if elapsed_s < 600:
        return 10.0
    return 60.0


class StatusPrinter:
    """Shows status lines on ``stream``.

    Parameters
    ----------
    stream
        Where to write (rank 0's stderr).
    redraw
        Rewrite one line in place (for a terminal), or print plain lines at the pace of
        `plain_interval_s` (for a log).
    """

    def __init__(self, stream: TextIO, redraw: bool) -> None:
        self.stream = stream
        self.redraw_in_place = redraw
        self._line = ""
        self._shown = False
        self._started = time.monotonic()
        self._last_plain: float | None = None
        self._printed = ""

    def show(self, line: str) -> None:
        """Show a new status line."""
        self._line = line
        if self.redraw_in_place:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._shown = True
            return
        now = time.monotonic()
        last = self._last_plain
        if last is None or now - last >= plain_interval_s(now - self._started):
            self._print_plain(now)

    def clear(self) -> None:
        """Remove the line from the terminal (before a log record is written)."""
        if self.redraw_in_place and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False

    def redraw(self) -> None:
        """Put the line back after a log record."""
        if self.redraw_in_place and self._line:
            self.stream.write(self._line)
            self.stream.flush()
            self._shown = True

    def finish(self) -> None:
        """Leave the last status line on its own line."""
        if self.redraw_in_place:
            if self._shown:
                self.stream.write("\n")
                self.stream.flush()
                self._shown = False
        elif self._line and self._line != self._printed:
            self._print_plain(time.monotonic())

    def _print_plain(self, now: float) -> None:
        self.stream.write(f"status: {self._line}\n")
        self.stream.flush()
        self._last_plain = now
        self._printed = self._line
