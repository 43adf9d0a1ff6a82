"""Logging set-up: every record carries rank and host; workers log to their own file.

Rank 0 logs to stderr (sharing the terminal with the status line) and to ``logs/rank-0000.log``; each
worker logs to ``logs/rank-NNNN.log`` and forwards its warnings to rank 0 through a
`WarningBuffer`, so 512 ranks never write 512 streams onto one stdout.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

from hpcpilot.runtime.terminal import StatusPrinter

FORMAT = "%(asctime)s %(levelname)-7s [%(host)s:%(rank)d] %(name)s: %(message)s"


class RankFilter(logging.Filter):
    """Adds ``rank`` and ``host`` to every record."""

    def __init__(self, rank: int, host: str) -> None:
        super().__init__()
        self.rank = rank
        self.host = host

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        record.rank = self.rank
        record.host = self.host
        return True


class WarningBuffer(logging.Handler):
    """Keeps the last warnings (and worse) a worker logged, for forwarding to rank 0."""

    def __init__(self, capacity: int = 50) -> None:
        super().__init__(level=logging.WARNING)
        self._lines: deque[str] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message."""
        self._lines.append(f"{record.levelname}: {record.getMessage()}")

    def drain(self) -> tuple[str, ...]:
        """The kept lines, oldest first; the buffer is emptied."""
        lines = tuple(self._lines)
        self._lines.clear()
        return lines


class RankFileHandler(logging.FileHandler):
    """A rank's log file; a record that cannot be written (a full disk) is counted and dropped.

    The standard handler prints a traceback on stderr for every record it could not write: on a full
    disk that would be every record, drowning the lines that say the disk is full.
    """

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Drop a record the file refused (an ``OSError``); any other error is reported as usual."""
        if isinstance(sys.exc_info()[1], OSError):
            self.dropped += 1
            return
        super().handleError(record)


class TerminalHandler(logging.StreamHandler[TextIO]):
    """A stderr handler that moves the live status line out of the way of each record."""

    def __init__(self, printer: StatusPrinter) -> None:
        super().__init__(printer.stream)
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        """Clear the status line, write the record, redraw the status line."""
        self.printer.clear()
        super().emit(record)
        self.printer.redraw()


def setup_logging(
    *,
    rank: int,
    host: str,
    level: str,
    log_file: Path | None,
    printer: StatusPrinter | None,
) -> WarningBuffer | None:
    """Configure the ``hpcpilot`` loggers for this rank.

    Parameters
    ----------
    rank, host
        Stamped on every record.
    level
        The level of the pilot's loggers.
    log_file
        This rank's log file (its directory is created), or None.
    printer
        Rank 0's status printer: records also go to its stream. None on workers.

    Returns
    -------
    WarningBuffer or None
        On workers, the buffer whose warnings are to be forwarded to rank 0.
    """
    logger = logging.getLogger("hpcpilot")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    rank_filter = RankFilter(rank, host)
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    if printer is not None:
        handlers.append(TerminalHandler(printer))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RankFileHandler(log_file))
    if not handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    buffer = WarningBuffer() if printer is None else None
    if buffer is not None:
        handlers.append(buffer)
    for handler in handlers:
        handler.addFilter(rank_filter)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return buffer
