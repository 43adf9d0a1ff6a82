"""Per-range event-service payloads: one process per event range, its command filled per range."""

from __future__ import annotations

import os
import time

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
    payload_env,
    range_values,
    substitute,
)
from hpcpilot.payload.exitcodes import error_for_exit
from hpcpilot.runtime.process import ProcessGroup, tail_of_file


class PerRangeRunner(SlotRunner):
    """Runs the job's command once per range, with ``{eventRangeID}``, ``{outputFile}``, ... filled in.

    stdout and stderr of every run on this slot are appended to ``<slot>.out`` / ``<slot>.err`` in the
    job's log directory, each run preceded by a header line naming the range and attempt; the tail of
    stderr becomes the diagnosis of a failed range.
    """

    def __init__(self, context: SlotContext) -> None:
        super().__init__(context)
        self._argv = job_argv(context.job)
        self._out_path = context.log_dir / f"{context.slot_name}.out"
        self._err_path = context.log_dir / f"{context.slot_name}.err"
        self._item: WorkItem | None = None
        self._proc: ProcessGroup | None = None
        self._err_offset = 0
        self._started = 0.0
        self._failed_start: ItemResult | None = None

    @property
    def busy(self) -> bool:
        """Whether a range's process is running (or its failure is still to be collected)."""
        return self._item is not None

    @property
    def closed(self) -> bool:
        """Whether no process is left."""
        return self._proc is None

    def submit(self, item: WorkItem) -> None:
        """Start the payload process for ``item``'s range."""
        self._item = item
        self._started = time.monotonic()
        values = range_values(item)
        argv = substitute(self._argv, values)
        header = f"=== range {values['eventRangeID']} attempt {item.attempt} argv {argv}\n"
        out_fd, err_fd = open_log(self._out_path), open_log(self._err_path)
        try:
            os.write(out_fd, header.encode())
            os.write(err_fd, header.encode())
            self._err_offset = os.lseek(err_fd, 0, os.SEEK_END)
            env = payload_env(self.context, {"HPCPILOT_RANGE_ID": values["eventRangeID"]})
            self._proc = ProcessGroup(argv, cwd=self.context.job_dir, env=env, stdout=out_fd, stderr=err_fd)
        except (OSError, HpcPilotError) as exc:
            self._failed_start = failed_range(
                item,
                ErrorCode.SETUP_FAILURE,
                f"cannot start payload {argv[0]!r}: {exc}",
                self._started,
            )
        finally:
            os.close(out_fd)
            os.close(err_fd)

    def poll(self) -> list[ItemResult]:
        """Collect the range if its process ended; enforce the payload time limit."""
        if self._item is None:
            return []
        if self._failed_start is not None:
            result, self._failed_start, self._item = self._failed_start, None, None
            return [result]
        assert self._proc is not None
        limit = self.context.settings.timeout_s
        if limit and self._proc.elapsed_s > limit and self._proc.exit is None:
            self._proc.terminate(self.context.settings.kill_grace_s)
        info = self._proc.poll()
        if info is None:
            return []
        item, self._item, self._proc = self._item, None, None
        if info.returncode == 0:
            return [finished_range(item, self._started, info.cpu_s, None)]
        code, diag = error_for_exit(info.returncode)
        assert code is not None
        if limit and time.monotonic() - self._started > limit:
            code, diag = ErrorCode.REACHED_MAX_TIME, f"payload exceeded its time limit of {limit} s"
        tail = tail_of_file(self._err_path, self._err_offset, 500)
        return [failed_range(item, code, f"{diag}: {tail}" if tail else diag, self._started, info.cpu_s)]

    def kill(self, reason: ErrorCode, diag: str) -> list[ItemResult]:
        """Kill the running range's process group; the range fails with ``reason``."""
        if self._item is None:
            return []
        item, self._item = self._item, None
        if self._proc is not None:
            info = self._proc.stop(self.context.settings.kill_grace_s)
            self._proc = None
            return [failed_range(item, reason, diag, self._started, info.cpu_s)]
        self._failed_start = None
        return [failed_range(item, reason, diag, self._started)]
