"""The common life of runners that start one process per item (per-range and plain payloads).

Start the process in its own process group with its output in log files; poll it without blocking;
stop it after ``payload.timeout_s``; kill it on demand; turn a failure to start into a failed item.
Subclasses say how to start an item and what its end means.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from pathlib import Path

from hpcpilot.model.errors import ErrorCode, HpcPilotError
from hpcpilot.payload.base import (
    ItemResult,
    SlotContext,
    SlotRunner,
    WorkItem,
    open_log,
    payload_command,
)
from hpcpilot.payload.exitcodes import classify_exit, oom_counter
from hpcpilot.runtime.process import ExitInfo, ProcessGroup, tail_of_file


class ProcessRunner(SlotRunner):
    """A runner that runs each item as one process, one item at a time.

    Parameters
    ----------
    context
        Where the runner runs.
    out_path, err_path
        The log files the processes' stdout and stderr are appended to.
    """

    def __init__(self, context: SlotContext, out_path: Path, err_path: Path) -> None:
        super().__init__(context)
        self.out_path = out_path
        self.err_path = err_path
        self._item: WorkItem | None = None
        self._proc: ProcessGroup | None = None
        self._started = 0.0
        self._err_offset = 0
        self._start_failure: ItemResult | None = None
        self._killed: tuple[ErrorCode, str] | None = None
        self._oom = oom_counter()
        self._oom_before: int | None = None

    @property
    def busy(self) -> bool:
        """Whether an item is running (or its failure to start is still to be collected)."""
        return self._item is not None

    @property
    def closed(self) -> bool:
        """Whether no process is left."""
        return self._proc is None

    def submit(self, item: WorkItem) -> None:
        """Start ``item``'s process; a failure to start fails the item (setup failure, 1110).

        A log that cannot be opened or written (a full disk) is such a failure too.
        """
        self._item = item
        self._started = time.monotonic()
        self._killed = None
        try:
            out_fd = open_log(self.out_path)
            try:
                err_fd = open_log(self.err_path)
            except OSError:
                os.close(out_fd)
                raise
        except OSError as exc:  # a full disk: the item fails, the worker sees why
            self._start_failure = self.failed(item, ErrorCode.SETUP_FAILURE, f"cannot open its logs: {exc}")
            return
        try:
            argv, env = self.command(item)
            command = payload_command(self.context, argv, env)
            header = self.header(item, list(command.argv))
            if header:
                os.write(out_fd, header.encode())
                os.write(err_fd, header.encode())
            self._err_offset = os.lseek(err_fd, 0, os.SEEK_END)
            self._oom_before = self._oom.count()
            self._proc = ProcessGroup(
                command.argv, cwd=Path(command.cwd), env=command.env, stdout=out_fd, stderr=err_fd
            )
        except (OSError, HpcPilotError) as exc:
            self._start_failure = self.failed(item, ErrorCode.SETUP_FAILURE, f"cannot start payload: {exc}")
        finally:
            os.close(out_fd)
            os.close(err_fd)

    def poll(self) -> list[ItemResult]:
        """The item's result once its process has ended; stops a process over its time limit."""
        if self._item is None:
            return []
        if self._start_failure is not None:
            result, self._start_failure, self._item = self._start_failure, None, None
            return [result]
        assert self._proc is not None
        limit = self.context.settings.timeout_s
        timed_out = bool(limit) and time.monotonic() - self._started > limit
        if timed_out and self._proc.exit is None:
            self._proc.terminate(self.context.settings.kill_grace_s)
        info = self._proc.poll()
        if info is None:
            return []
        item, self._item, self._proc = self._item, None, None
        if info.returncode == 0:
            return [self.succeeded(item, info)]
        code, diag = classify_exit(
            info.returncode,
            killed=self._killed,
            timed_out=timed_out,
            limit_s=limit,
            oom_before=self._oom_before,
            oom_after=self._oom.count(),
        )
        tail = tail_of_file(self.err_path, self._err_offset, 500)
        return [self.failed(item, code, f"{diag}: {tail}" if tail else diag, info)]

    def kill(self, code: ErrorCode, diag: str) -> None:
        """Stop the running process group; its item fails with ``code``."""
        if self._proc is not None and self._proc.exit is None:
            self._killed = (code, diag)
            self._proc.terminate(self.context.settings.kill_grace_s)

    def pids(self) -> tuple[int, ...]:
        """The running item's process group leader (none between items)."""
        proc = self._proc
        return (proc.pid,) if proc is not None and proc.exit is None else ()

    def log_files(self) -> tuple[Path, ...]:
        """The stdout and stderr logs."""
        return (self.out_path, self.err_path)

    @property
    def started(self) -> float:
        """When the current (or last) item started (``time.monotonic``)."""
        return self._started

    @abstractmethod
    def command(self, item: WorkItem) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of ``item``'s payload, before its environment wraps it."""

    def header(self, item: WorkItem, argv: list[str]) -> str:
        """A line written into both logs before the process starts ("" for none)."""
        return ""

    @abstractmethod
    def succeeded(self, item: WorkItem, info: ExitInfo) -> ItemResult:
        """The result of an item whose process exited 0."""

    @abstractmethod
    def failed(self, item: WorkItem, code: ErrorCode, diag: str, info: ExitInfo | None = None) -> ItemResult:
        """The result of an item that failed with ``code`` (``info``: how its process ended, if it ran)."""
