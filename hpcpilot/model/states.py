"""Job states as the PanDA server knows them (``job_status`` / ``jobStatus``)."""

from __future__ import annotations

import enum


class JobState(enum.Enum):
    """The states a pilot reports for a job."""

    STARTING = "starting"
    RUNNING = "running"
    TRANSFERRING = "transferring"
    HOLDING = "holding"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether the job is over (finished or failed)."""
        return self in {JobState.FINISHED, JobState.FAILED}
