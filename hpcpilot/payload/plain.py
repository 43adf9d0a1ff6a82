"""Plain (not event-service) jobs: the job's command run once in the job directory."""

from __future__ import annotations

import time

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.results import OutputFile, PayloadResult
from hpcpilot.payload.base import ItemResult, SlotContext, WorkItem, job_argv, output_file, payload_env
from hpcpilot.payload.process_runner import ProcessRunner
from hpcpilot.runtime.process import ExitInfo


class PlainRunner(ProcessRunner):
    """Runs ``transformation jobPars`` once; the job succeeds if it exits 0 and writes its outputs.

    stdout and stderr go to ``payload.stdout`` / ``payload.stderr`` in the job's log directory.
    """

    def __init__(self, context: SlotContext) -> None:
        super().__init__(context, context.log_dir / "payload.stdout", context.log_dir / "payload.stderr")

    def command(self, item: WorkItem) -> tuple[list[str], dict[str, str]]:
        """The job's command line."""
        return job_argv(self.job), payload_env(self.context)

    def succeeded(self, item: WorkItem, info: ExitInfo) -> ItemResult:
        """Finished if every declared output exists (sizes and checksums taken), else 1165."""
        found: list[OutputFile] = []
        missing: list[str] = []
        for spec in self.job.output_files:
            path = self.context.job_dir / spec.lfn
            if path.is_file():
                found.append(output_file(path))
            else:
                missing.append(spec.lfn)
        if missing:
            diag = f"payload wrote no {', '.join(missing)}"
            return self._result(info, ErrorCode.MISSING_OUTPUT_FILE, diag, tuple(found))
        return self._result(info, None, "", tuple(found))

    def failed(self, item: WorkItem, code: ErrorCode, diag: str, info: ExitInfo | None = None) -> ItemResult:
        """The job failed with ``code``."""
        return self._result(info, code, diag, ())

    def _result(
        self, info: ExitInfo | None, code: ErrorCode | None, diag: str, outputs: tuple[OutputFile, ...]
    ) -> PayloadResult:
        return PayloadResult(
            panda_id=self.job.panda_id,
            ok=code is None,
            outputs=outputs,
            exit_code=info.returncode if info else None,
            error_code=code,
            error_diag=diag[-1000:],
            wall_s=time.monotonic() - self.started,
            cpu_s=info.cpu_s if info else 0.0,
        )
