"""The batch allocation the pilot runs in, and the states of batch jobs as Harvester sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class BatchJobState(enum.Enum):
    """A batch job's state, mapped as Harvester maps it (PROTOCOLS.md §5)."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Allocation:
    """What the batch system gave this run.

    Attributes
    ----------
    batch_system
        The plugin that found it (``slurm``, ``pbs``, ``lsf``, ``local``).
    job_id
        The batch job id, or None outside a batch job.
    nodes
        Host names of the allocated nodes, in the batch system's order, expanded.
    cores_per_node
        Cores per node given to the job (None: unknown, use what the process may run on).
    gpus_per_node
        GPUs per node given to the job (0: none or unknown).
    queue
        Partition / queue.
    account
        Account / project charged.
    end_time
        When the batch system ends the job (seconds since the epoch), None without a limit.
    """

    batch_system: str
    job_id: str | None = None
    nodes: tuple[str, ...] = ()
    cores_per_node: int | None = None
    gpus_per_node: int = 0
    queue: str | None = None
    account: str | None = None
    end_time: float | None = None

    def remaining_s(self, now: float) -> float | None:
        """Seconds left at ``now`` (epoch seconds), None without a limit."""
        return None if self.end_time is None else self.end_time - now

    def with_end(self, end_time: float | None) -> Allocation:
        """The same allocation with another end time (``--walltime``)."""
        return replace(self, end_time=end_time)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a walltime: ``[D-]HH:MM:SS``, ``MM:SS``, ``90s``, ``45m``, ``2h``, ``1d`` or seconds.

    Raises
    ------
    ValueError
        The text is none of these, or negative.
    """
    value = text.strip().lower()
    try:
        if value and value[-1] in _UNITS:
            seconds = float(value[:-1]) * _UNITS[value[-1]]
        elif ":" in value or "-" in value:
            days, _, clock = value.rpartition("-")
            parts = [float(p) for p in clock.split(":")]
            if len(parts) > 3 or len(parts) < 2:
                raise ValueError(text)
            seconds = 0.0
            for part in parts:
                seconds = seconds * 60 + part
            if len(parts) == 2 and days:  # D-HH:MM
                seconds *= 60
            seconds += float(days or 0) * 86400
        else:
            seconds = float(value)
    except ValueError:
        raise ValueError(
            f"not a duration: {text!r} (expected [D-]HH:MM:SS, MM:SS, 90s, 45m, 2h or seconds)"
        ) from None
    if seconds < 0:
        raise ValueError(f"negative duration: {text!r}")
    return seconds
