"""Per-range event-service payloads: one process per event range, its command filled per range."""

from __future__ import annotations

from hpcpilot.model.errors import ErrorCode
from hpcpilot.payload.base import (
    ItemResult,
    SlotContext,
    WorkItem,
    failed_range,
    finished_range,
    job_argv,
    payload_env,
    range_values,
    substitute,
)
from hpcpilot.payload.process_runner import ProcessRunner
from hpcpilot.runtime.process import ExitInfo


class PerRangeRunner(ProcessRunner):
    """Runs the job's command once per range, with ``{eventRangeID}``, ``{outputFile}``, ... filled in.

    stdout and stderr of every run on this slot are appended to ``<slot>.out`` / ``<slot>.err`` in the
    job's log directory, each run preceded by a header line naming the range and attempt; the tail of
    stderr becomes the diagnosis of a failed range.
    """

    def __init__(self, context: SlotContext) -> None:
        log_dir, name = context.log_dir, context.slot_name
        super().__init__(context, log_dir / f"{name}.out", log_dir / f"{name}.err")
        self._argv = job_argv(context.job)

    def command(self, item: WorkItem) -> tuple[list[str], dict[str, str]]:
        """The job's command with the range's placeholders filled in."""
        values = range_values(item)
        env = payload_env(self.context, {"HPCPILOT_RANGE_ID": values["eventRangeID"]})
        return substitute(self._argv, values), env

    def header(self, item: WorkItem, argv: list[str]) -> str:
        """``=== range <id> attempt <n> argv [...]``."""
        assert item.event_range is not None
        return f"=== range {item.event_range.range_id} attempt {item.attempt} argv {argv}\n"

    def succeeded(self, item: WorkItem, info: ExitInfo) -> ItemResult:
        """Finished if the range's output exists (checksummed), else failed with 1165."""
        return finished_range(item, self.started, info.cpu_s, None)

    def failed(self, item: WorkItem, code: ErrorCode, diag: str, info: ExitInfo | None = None) -> ItemResult:
        """The range failed with ``code``."""
        return failed_range(item, code, diag, self.started, info.cpu_s if info else 0.0)
