"""Plain (not event-service) jobs: the job's command run once in the job directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hpcpilot.model.errors import ErrorCode, HpcPilotError
from hpcpilot.model.results import OutputFile, PayloadResult
from hpcpilot.payload.base import (
    ItemResult,
    SlotContext,
    SlotRunner,
    WorkItem,
    job_argv,
    open_log,
    output_file,
    payload_env,
)
from hpcpilot.payload.exitcodes import error_for_exit
from hpcpilot.runtime.process import ProcessGroup, tail_of_file


class PlainRunner(SlotRunner):
    """Runs ``transformation jobPars`` once; the job succeeds if it exits 0 and writes its outputs.

    stdout and stderr go to ``payload.stdout`` / ``payload.stderr`` in the job's log directory.
    """

    def __init__(self, context: SlotContext) -> None:
        super().__init__(context)
        self._proc: ProcessGroup | None = None
        self._item: WorkItem | None = None
        self._started = 0.0
        self._err_path = context.log_dir / "payload.stderr"
        self._failed: PayloadResult | None = None

    @property
    def busy(self) -> bool:
        """Whether the job's payload is running."""
        return self._item is not None

    @property
    def closed(self) -> bool:
        """Whether no process is left."""
        return self._proc is None

    def submit(self, item: WorkItem) -> None:
        """Start the job's payload."""
        self._item = item
        self._started = time.monotonic()
        out_fd = open_log(self.context.log_dir / "payload.stdout")
        err_fd = open_log(self._err_path)
        try:
            self._proc = ProcessGroup(
                job_argv(self.job),
                cwd=self.context.job_dir,
                env=payload_env(self.context),
                stdout=out_fd,
                stderr=err_fd,
            )
        except (OSError, HpcPilotError) as exc:
            self._failed = self._result(
                False, error_code=ErrorCode.SETUP_FAILURE, error_diag=f"cannot start payload: {exc}"
            )
        finally:
            os.close(out_fd)
            os.close(err_fd)

    def poll(self) -> list[ItemResult]:
        """Report the job once its payload has ended."""
        if self._item is None:
            return []
        if self._failed is not None:
            result, self._failed, self._item = self._failed, None, None
            return [result]
        assert self._proc is not None
        limit = self.context.settings.timeout_s
        if limit and self._proc.elapsed_s > limit and self._proc.exit is None:
            self._proc.terminate(self.context.settings.kill_grace_s)
        info = self._proc.poll()
        if info is None:
            return []
        self._item, self._proc = None, None
        if info.returncode != 0:
            code, diag = error_for_exit(info.returncode)
            if limit and time.monotonic() - self._started > limit:
                code, diag = (
                    ErrorCode.REACHED_MAX_TIME,
                    f"payload exceeded its time limit of {limit} s",
                )
            tail = tail_of_file(self._err_path, 0, 500)
            return [
                self._result(
                    False,
                    exit_code=info.returncode,
                    error_code=code,
                    error_diag=f"{diag}: {tail}" if tail else diag,
                    cpu_s=info.cpu_s,
                )
            ]
        return [self._outputs_result(info.returncode, info.cpu_s)]

    def kill(self, reason: ErrorCode, diag: str) -> list[ItemResult]:
        """Kill the payload's process group; the job fails with ``reason``."""
        if self._item is None:
            return []
        cpu = self._proc.stop(self.context.settings.kill_grace_s).cpu_s if self._proc else 0.0
        self._item, self._proc, self._failed = None, None, None
        return [self._result(False, error_code=reason, error_diag=diag, cpu_s=cpu)]

    def _outputs_result(self, returncode: int, cpu_s: float) -> PayloadResult:
        found: list[OutputFile] = []
        missing: list[str] = []
        for spec in self.job.output_files:
            path = Path(self.context.job_dir) / spec.lfn
            if path.is_file():
                found.append(output_file(path))
            else:
                missing.append(spec.lfn)
        if missing:
            return self._result(
                False,
                outputs=tuple(found),
                exit_code=returncode,
                error_code=ErrorCode.MISSING_OUTPUT_FILE,
                error_diag=f"payload wrote no {', '.join(missing)}",
                cpu_s=cpu_s,
            )
        return self._result(True, outputs=tuple(found), exit_code=returncode, cpu_s=cpu_s)

    def _result(
        self,
        ok: bool,
        *,
        outputs: tuple[OutputFile, ...] = (),
        exit_code: int | None = None,
        error_code: ErrorCode | None = None,
        error_diag: str = "",
        cpu_s: float = 0.0,
    ) -> PayloadResult:
        return PayloadResult(
            panda_id=self.job.panda_id,
            ok=ok,
            outputs=outputs,
            exit_code=exit_code,
            error_code=error_code,
            error_diag=error_diag[-1000:],
            wall_s=time.monotonic() - self._started,
            cpu_s=cpu_s,
        )
