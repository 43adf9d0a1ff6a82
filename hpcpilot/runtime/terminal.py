"""Rank 0's live status line: redrawn in place on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO


class StatusPrinter:
    """Shows status lines on ``stream``.

    Parameters
    ----------
    stream
        Where to write (rank 0's stderr).
    is_tty
        Redraw one line in place (True), or print a full line every ``plain_interval_s`` (False).
    plain_interval_s
        Seconds between two lines when not on a terminal.
    """

    def __init__(self, stream: TextIO, is_tty: bool, plain_interval_s: float = 10.0) -> None:
        self.stream = stream
        self.is_tty = is_tty
        self.plain_interval_s = plain_interval_s
        self._line = ""
        self._shown = False
        self._last_plain = 0.0

    def show(self, line: str) -> None:
        """Show a new status line."""
        self._line = line
        if self.is_tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._shown = True
        elif time.monotonic() - self._last_plain >= self.plain_interval_s:
            self._print_plain()

    def clear(self) -> None:
        """Remove the line from the terminal (before a log record is written)."""
        if self.is_tty and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False

    def redraw(self) -> None:
        """Put the line back after a log record."""
        if self.is_tty and self._line:
            self.stream.write(self._line)
            self.stream.flush()
            self._shown = True

    def finish(self) -> None:
        """Leave the last status line on its own line."""
        if self.is_tty:
            if self._shown:
                self.stream.write("\n")
                self.stream.flush()
                self._shown = False
        elif self._line:
            self._print_plain()

    def _print_plain(self) -> None:
        self.stream.write(f"status: {self._line}\n")
        self.stream.flush()
        self._last_plain = time.monotonic()
