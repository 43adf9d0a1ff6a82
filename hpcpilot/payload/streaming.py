"""Streaming event-service payloads: one long-lived process per slot, ranges over stdin/stdout.

The pilot writes one JSON object per line on the payload's stdin, the range as served plus
``outputFile``; the payload answers with one JSON line per range on stdout:

    {"eventRangeID": "...", "status": "finished", "outputFile": "...", "nEvents": 10, "cpu": 1.2}
    {"eventRangeID": "...", "status": "failed", "errorCode": 1305, "errorDiag": "..."}

Lines that are not such objects are copied to the slot's ``.out`` log. End of input (stdin closed) tells
the payload to exit. It is the language-agnostic cousin of AthenaMP's yampl range channel.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from hpcpilot.model.errors import ErrorCode, HpcPilotError
from hpcpilot.payload.base import (
    ItemResult,
    SlotContext,
    SlotRunner,
    WorkItem,
    failed_range,
    finished_range,
    job_argv,
    open_log,
    payload_command,
    payload_env,
)
from hpcpilot.payload.exitcodes import classify_exit, oom_counter
from hpcpilot.runtime.process import ProcessGroup, tail_of_file


class StreamingRunner(SlotRunner):
    """Feeds ranges to one long-lived payload process; restarts it if it dies between ranges."""

    def __init__(self, context: SlotContext) -> None:
        super().__init__(context)
        self._argv = job_argv(context.job)
        self._out_path = context.log_dir / f"{context.slot_name}.out"
        self._err_path = context.log_dir / f"{context.slot_name}.err"
        self._proc: ProcessGroup | None = None
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._item: WorkItem | None = None
        self._started = 0.0
        self._close_deadline: float | None = None
        self._timed_out = False
        self._killed: tuple[ErrorCode, str] | None = None
        self._reader: threading.Thread | None = None
        self._pending: list[ItemResult] = []
        self._oom = oom_counter()
        self._oom_before: int | None = None

    @property
    def busy(self) -> bool:
        """Whether a range is in flight."""
        return self._item is not None

    @property
    def closed(self) -> bool:
        """Whether the payload process has ended (or was never started)."""
        return self._proc is None

    def submit(self, item: WorkItem) -> None:
        """Send ``item``'s range to the payload, starting the process first if needed."""
        self._item = item
        self._started = time.monotonic()
        assert item.event_range is not None and item.output is not None
        line = json.dumps({**item.event_range.to_wire(), "outputFile": str(item.output)})
        try:
            proc = self._proc or self._start()
            stdin = proc.popen.stdin
            assert stdin is not None
            stdin.write((line + "\n").encode())
            stdin.flush()
        except (OSError, HpcPilotError) as exc:
            # the process is gone or could not start: poll() reports the range from its exit
            if self._proc is None:
                self._item = None
                self._pending.append(
                    failed_range(item, ErrorCode.SETUP_FAILURE, f"cannot start payload: {exc}", self._started)
                )

    def poll(self) -> list[ItemResult]:
        """Collect the in-flight range's reply, or its failure if the process died."""
        results, self._pending = self._pending, []
        results.extend(self._drain_replies())
        if self._proc is not None:
            results.extend(self._check_process())
        return results

    def close(self) -> None:
        """Close the payload's stdin: it finishes and exits; `poll` reaps it."""
        if self._proc is not None and self._proc.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.popen.stdin.close()
            self._close_deadline = time.monotonic() + self.context.settings.kill_grace_s

    def pids(self) -> tuple[int, ...]:
        """The payload process (its group's leader) while a range is in flight."""
        proc = self._proc
        return (proc.pid,) if self._item is not None and proc is not None and proc.exit is None else ()

    def log_files(self) -> tuple[Path, ...]:
        """The slot's stdout and stderr logs."""
        return (self._out_path, self._err_path)

    def kill(self, code: ErrorCode, diag: str) -> None:
        """Stop the payload process; the range in flight fails with ``code``."""
        if self._proc is not None and self._proc.exit is None:
            self._killed = (code, diag)
            self._proc.terminate(self.context.settings.kill_grace_s)

    def _start(self) -> ProcessGroup:
        out_fd, err_fd = open_log(self._out_path), open_log(self._err_path)
        try:
            command = payload_command(self.context, self._argv, payload_env(self.context))
            header = f"=== streaming payload start argv {list(command.argv)}\n".encode()
            os.write(err_fd, header)
            proc = ProcessGroup(
                command.argv,
                cwd=Path(command.cwd),
                env=command.env,
                stdout=subprocess.PIPE,
                stderr=err_fd,
                stdin_pipe=True,
            )
        finally:
            os.close(err_fd)
        assert proc.popen.stdout is not None
        self._replies = queue.Queue()
        self._reader = threading.Thread(
            target=_read_replies,
            args=(proc.popen.stdout, out_fd, self._replies),
            name=f"payload-reader-{self.context.slot_name}",
            daemon=True,
        )
        self._reader.start()
        self._close_deadline = None
        self._timed_out = False
        self._killed = None
        self._oom_before = self._oom.count()
        self._proc = proc
        return proc

    def _drain_replies(self) -> list[ItemResult]:
        results: list[ItemResult] = []
        while True:
            try:
                reply = self._replies.get_nowait()
            except queue.Empty:
                return results
            if reply is not None:
                results.extend(self._on_reply(reply))

    def _on_reply(self, reply: dict[str, Any]) -> list[ItemResult]:
        item = self._item
        if item is None or item.event_range is None or reply.get("eventRangeID") != item.event_range.range_id:
            return []
        self._item = None
        cpu = _number(reply.get("cpu"))
        if reply.get("status") == "finished":
            n_events = reply.get("nEvents")
            return [finished_range(item, self._started, cpu, n_events if isinstance(n_events, int) else None)]
        code = reply.get("errorCode")
        try:
            error = ErrorCode(int(code)) if code is not None else ErrorCode.PAYLOAD_EXECUTION_FAILURE
        except (ValueError, TypeError):
            error = ErrorCode.PAYLOAD_EXECUTION_FAILURE
        diag = str(reply.get("errorDiag") or "payload reported the range failed")
        return [failed_range(item, error, diag, self._started, cpu)]

    def _check_process(self) -> list[ItemResult]:
        assert self._proc is not None
        if self._close_deadline is not None and time.monotonic() > self._close_deadline:
            self._proc.terminate(self.context.settings.kill_grace_s)
            self._close_deadline = None
        limit = self.context.settings.timeout_s
        overdue = limit and self._item is not None and time.monotonic() - self._started > limit
        if overdue and not self._timed_out:
            self._proc.terminate(self.context.settings.kill_grace_s)
            self._timed_out = True
        info = self._proc.poll()
        if info is None:
            return []
        self._proc = None
        if self._item is None:
            return []
        # the reply may still be in the pipe: let the reader reach end of file before judging
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        results = self._drain_replies()
        if self._item is None:
            return results
        item, self._item = self._item, None
        code, diag = classify_exit(
            info.returncode,
            killed=self._killed,
            timed_out=self._timed_out,
            limit_s=self.context.settings.timeout_s,
            oom_before=self._oom_before,
            oom_after=self._oom.count(),
            subject="range",
        )
        tail = tail_of_file(self._err_path, 0, 500)
        diag = f"{diag}: {tail}" if tail else diag
        return [*results, failed_range(item, code, diag, self._started, info.cpu_s)]


def _read_replies(stream: IO[bytes], out_fd: int, replies: queue.Queue[dict[str, Any] | None]) -> None:
    """Reader thread: protocol lines go to ``replies``, everything else to the ``.out`` log."""
    try:
        for raw in stream:
            reply = _parse_reply(raw)
            if reply is None:
                os.write(out_fd, raw)
            else:
                replies.put(reply)
    except (OSError, ValueError):
        pass
    finally:
        os.close(out_fd)
        replies.put(None)


def _parse_reply(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if isinstance(obj, dict) and "eventRangeID" in obj and "status" in obj:
        return obj
    return None


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
