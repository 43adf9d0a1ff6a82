"""Slurm: the allocation from ``SLURM_*`` variables and ``squeue``/``scontrol``; ``sbatch``/``scancel``.

No ``sacct``: many sites (and the CI cluster) run without accounting storage. A job that ``squeue`` no
longer lists is looked up with ``scontrol show job`` (its record stays ``MinJobAge``, 300 s by default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from hpcpilot.batch.base import CommandBatchSystem
from hpcpilot.batch.hostlist import expand_counts, expand_hostlist
from hpcpilot.model.allocation import Allocation, BatchJobState, parse_duration
from hpcpilot.model.errors import BatchSystemError

__all__ = [
    "SlurmBatchSystem",
    "parse_scontrol_job",
    "parse_slurm_time",
    "scontrol_end_time",
    "slurm_state",
]

_STATES: dict[str, BatchJobState] = {
    "RUNNING": BatchJobState.RUNNING,
    "COMPLETING": BatchJobState.RUNNING,
    "SUSPENDED": BatchJobState.RUNNING,
    "COMPLETED": BatchJobState.FINISHED,
    "PREEMPTED": BatchJobState.FINISHED,
    "TIMEOUT": BatchJobState.FINISHED,
    "CANCELLED": BatchJobState.CANCELLED,
    "PENDING": BatchJobState.SUBMITTED,
    "CONFIGURING": BatchJobState.SUBMITTED,
}
_NO_END = {"NONE", "UNLIMITED", "INFINITE"}
_UNKNOWN_END = {"N/A", "UNKNOWN", ""}
_INVALID_JOB = "Invalid job id specified"


def slurm_state(name: str) -> BatchJobState:
    """The Harvester state of a Slurm job state (PROTOCOLS.md §5).

    RUNNING, COMPLETING, SUSPENDED: running; COMPLETED, PREEMPTED, TIMEOUT: finished; CANCELLED (also
    ``CANCELLED by 0`` and ``CANCELLED+``): cancelled; PENDING, CONFIGURING: submitted; any other
    (FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, ...): failed.
    """
    word = name.strip().split(" ", 1)[0].rstrip("+").upper()
    return _STATES.get(word, BatchJobState.FAILED)


def parse_slurm_time(text: str, *, command: str, field: str) -> float | None:
    """Epoch seconds of a Slurm timestamp (``2026-11-25T14:03:12``, the machine's local time).

    Returns None for ``NONE``/``UNLIMITED`` (no limit) and ``N/A``/``Unknown`` (not known yet).

    Raises
    ------
    BatchSystemError
        The text is none of these; the context names the command and the field.
    """
    value = text.strip()
    if value.upper() in _NO_END or value.upper() in _UNKNOWN_END:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        raise BatchSystemError(
            f"{command} printed {value!r} as {field}, not a Slurm time (YYYY-MM-DDTHH:MM:SS)",
            context={"command": command, "field": field},
        ) from None


def parse_scontrol_job(stdout: str) -> dict[str, str]:
    """The ``Key=Value`` fields of ``scontrol show job ID`` (one job).

    Values end at the next white space, except for fields that run to the end of their line
    (``Command=``, ``WorkDir=``, ``StdOut=``, ... may contain blanks but are always last on a line).

    Raises
    ------
    BatchSystemError
        No ``JobId=`` field in it.
    """
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"^(Command|WorkDir|StdErr|StdIn|StdOut|Comment|Reason)=", stripped):
            key, _, value = stripped.partition("=")
            fields.setdefault(key, value)
            continue
        for token in stripped.split():
            key, sep, value = token.partition("=")
            if sep:
                fields.setdefault(key, value)
    if "JobId" not in fields:
        raise BatchSystemError(
            "scontrol show job printed no JobId= field",
            context={"command": "scontrol show job", "field": "JobId", "output": stdout.strip()[:200]},
        )
    return fields


def scontrol_end_time(fields: Mapping[str, str]) -> float | None:
    """The end of a running job from ``scontrol show job`` fields.

    ``EndTime=`` when it is a time; else ``StartTime=`` + ``TimeLimit=``; None when the limit is
    ``UNLIMITED`` or nothing is known.

    Raises
    ------
    BatchSystemError
        A time field that is not a time.
    """
    command = "scontrol show job"
    limit = fields.get("TimeLimit", "").strip()
    if limit.upper() in _NO_END:
        return None
    end = parse_slurm_time(fields.get("EndTime", "Unknown"), command=command, field="EndTime")
    if end is not None:
        return end
    start = parse_slurm_time(fields.get("StartTime", "Unknown"), command=command, field="StartTime")
    if start is None or not limit or limit.upper() in _UNKNOWN_END:
        return None
    try:
        return start + parse_duration(limit)
    except ValueError:
        raise BatchSystemError(
            f"{command} printed {limit!r} as TimeLimit, not a duration",
            context={"command": command, "field": "TimeLimit"},
        ) from None


def _gpu_count(text: str) -> int:
    """``4``, ``a100:4``, ``a100:2,v100:1`` (typed counts are added) -> GPUs per node."""
    total = 0
    for item in text.split(","):
        count = item.strip().rsplit(":", 1)[-1]
        if not count.isdigit():
            raise ValueError(text)
        total += int(count)
    return total


class SlurmBatchSystem(CommandBatchSystem):
    """Slurm (``sbatch``, ``squeue``, ``scontrol``, ``scancel``).

    Discovery reads ``SLURM_JOB_ID``, ``SLURM_JOB_NODELIST`` (compressed, expanded here),
    ``SLURM_JOB_CPUS_PER_NODE`` (``4(x2),2``; the smallest count when nodes differ) or
    ``SLURM_CPUS_ON_NODE``, the GPUs from ``SLURM_GPUS_ON_NODE``, ``SLURM_GPUS_PER_NODE`` (``a100:4``)
    or ``SLURM_JOB_GPUS`` (the GPU indices of this node), ``SLURM_JOB_PARTITION``,
    ``SLURM_JOB_ACCOUNT``; the end time from ``squeue -h -j ID -o %e``, falling back to
    ``scontrol show job ID``.
    """

    name: ClassVar[str] = "slurm"
    template: ClassVar[str] = "slurm.sh"
    default_launcher: ClassVar[str] = "srun"

    @classmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Whether ``SLURM_JOB_ID`` is set."""
        return bool(env.get("SLURM_JOB_ID"))

    # --- the allocation -----------------------------------------------------------------------

    def discover(self) -> Allocation:
        """The allocation from the ``SLURM_*`` variables and the end time from ``squeue``/``scontrol``.

        Raises
        ------
        BatchSystemError
            Not a Slurm job, a malformed variable (named in the context), or neither query gave an
            answer.
        """
        env = self.env
        job_id = env.get("SLURM_JOB_ID", "").strip()
        if not job_id:
            raise BatchSystemError("not in a Slurm job: SLURM_JOB_ID is not set", context={"field": "env"})
        nodes = self._nodes()
        return Allocation(
            batch_system=self.name,
            job_id=job_id,
            nodes=nodes,
            cores_per_node=self._cores(),
            gpus_per_node=self._gpus(),
            queue=env.get("SLURM_JOB_PARTITION") or None,
            account=env.get("SLURM_JOB_ACCOUNT") or None,
            end_time=self.end_time(job_id),
        )

    def _nodes(self) -> tuple[str, ...]:
        for var in ("SLURM_JOB_NODELIST", "SLURM_NODELIST"):
            text = self.env.get(var, "")
            if text.strip():
                try:
                    return expand_hostlist(text)
                except ValueError as exc:
                    raise BatchSystemError(str(exc), context={"field": var}) from None
        raise BatchSystemError("SLURM_JOB_NODELIST is not set", context={"field": "SLURM_JOB_NODELIST"})

    def _cores(self) -> int | None:
        text = self.env.get("SLURM_JOB_CPUS_PER_NODE", "").strip()
        if text:
            try:
                counts = expand_counts(text)
            except ValueError as exc:
                raise BatchSystemError(str(exc), context={"field": "SLURM_JOB_CPUS_PER_NODE"}) from None
            if counts:
                return min(counts)
        text = self.env.get("SLURM_CPUS_ON_NODE", "").strip()
        if text:
            if not text.isdigit():
                raise BatchSystemError(
                    f"SLURM_CPUS_ON_NODE is {text!r}, not a number", context={"field": "SLURM_CPUS_ON_NODE"}
                )
            return int(text)
        return None

    def _gpus(self) -> int:
        on_node = self.env.get("SLURM_GPUS_ON_NODE", "").strip()
        per_node = self.env.get("SLURM_GPUS_PER_NODE", "").strip()
        job_gpus = self.env.get("SLURM_JOB_GPUS", "").strip()
        try:
            if on_node:
                return int(on_node)
            if per_node:
                return _gpu_count(per_node)
        except ValueError:
            var = "SLURM_GPUS_ON_NODE" if on_node else "SLURM_GPUS_PER_NODE"
            raise BatchSystemError(
                f"{var} is {on_node or per_node!r}, not a GPU count", context={"field": var}
            ) from None
        if job_gpus:
            return len([g for g in job_gpus.split(",") if g.strip()])
        return 0

    def end_time(self, job_id: str) -> float | None:
        """When Slurm ends ``job_id`` (epoch seconds), None without a limit.

        ``squeue -h -j ID -o %e`` first; when it fails, ``scontrol show job ID``.

        Raises
        ------
        BatchSystemError
            Both queries failed, or one printed something that is not a time.
        """
        argv = ["squeue", "-h", "-j", job_id, "-o", "%e"]
        result = self.run(argv)
        if result.ok and result.stdout.strip():
            text = result.stdout.strip().splitlines()[0]
            end = parse_slurm_time(text, command="squeue -o %e", field="EndTime")
            if end is not None or text.strip().upper() in _NO_END:
                return end
        fields = parse_scontrol_job(self._call(["scontrol", "show", "job", job_id]).stdout)
        return scontrol_end_time(fields)

    # --- submitting ---------------------------------------------------------------------------

    def submit_argv(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> list[str]:
        """``sbatch [OPTIONS] -D WORKDIR SCRIPT`` (Harvester's form)."""
        return ["sbatch", *options, "-D", str(workdir), str(script)]

    def parse_submit(self, stdout: str) -> str:
        """The id in ``Submitted batch job 123`` (or the last integer, as Harvester reads it).

        Raises
        ------
        BatchSystemError
            No job id in the output.
        """
        match = re.search(r"Submitted batch job (\d+)", stdout)
        if match:
            return match.group(1)
        numbers = re.findall(r"(?<![\w.])(\d+)(?![\w.])", stdout)
        if numbers:
            return str(numbers[-1])
        raise BatchSystemError(
            "sbatch printed no job id",
            context={"command": "sbatch", "field": "job id", "output": stdout.strip()[:200]},
        )

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``squeue -h -t all -j ID,ID -o "%i %T"``."""
        return ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"]

    def parse_status(self, stdout: str) -> dict[str, BatchJobState]:
        """Job id -> state from ``squeue -o "%i %T"`` lines (``123 RUNNING``).

        Raises
        ------
        BatchSystemError
            A line that is not ``ID STATE``.
        """
        states: dict[str, BatchJobState] = {}
        for line in stdout.splitlines():
            if not line.strip():
                continue
            parts = line.split(None, 1)
            if len(parts) != 2 or not re.fullmatch(r"[\w.+\[\]-]+", parts[0]):
                raise BatchSystemError(
                    f"squeue printed {line.strip()!r}, not 'JOBID STATE'",
                    context={"command": "squeue -o '%i %T'", "field": "state"},
                )
            states[parts[0]] = slurm_state(parts[1])
        return states

    def cancel_argv(self, job_id: str) -> list[str]:
        """``scancel ID``."""
        return ["scancel", job_id]

    # --- polling, with scontrol for the jobs squeue forgot --------------------------------------

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids``: ``squeue``, then ``scontrol show job`` for those it omits.

        A job neither knows ("Invalid job id specified") is left out.

        Raises
        ------
        BatchSystemError
            A command failed for another reason.
        """
        if not job_ids:
            return {}
        argv = self.status_argv(job_ids)
        result = self.run(argv)
        if result.ok:
            states = self.parse_status(result.stdout)
        elif _INVALID_JOB in result.stderr:
            states = {}
        else:
            raise self._failure(argv, result)
        for job_id in job_ids:
            if job_id in states:
                continue
            state = self._scontrol_state(job_id)
            if state is not None:
                states[job_id] = state
        return states

    def _scontrol_state(self, job_id: str) -> BatchJobState | None:
        argv = ["scontrol", "show", "job", job_id]
        result = self.run(argv)
        if not result.ok:
            if _INVALID_JOB in result.stderr or _INVALID_JOB in result.stdout:
                return None
            raise self._failure(argv, result)
        fields = parse_scontrol_job(result.stdout)
        if "JobState" not in fields:
            raise BatchSystemError(
                "scontrol show job printed no JobState= field",
                context={"command": " ".join(argv), "field": "JobState"},
            )
        return slurm_state(fields["JobState"])
