"""IBM Spectrum LSF: the allocation from ``LSB_*`` variables and ``bjobs``; ``bsub``/``bjobs``/``bkill``.

Submitting: ``bsub`` reads the ``#BSUB`` lines of a script only when the script comes on its standard
input (a script named on the command line is run as a plain command, its directives ignored). The
command runner has no standard input, so the submit command is
``sh -c 'd=$1 && s=$2 && shift 2 && exec bsub -cwd "$d" "$@" < "$s"' bsub WORKDIR SCRIPT [OPTION...]``:
the shell only redirects, the paths and options are positional arguments (never parsed as shell text),
and ``-cwd`` sets the job's working directory.

Launch nodes: on Summit-like machines the first host of ``LSB_MCPU_HOSTS`` is the batch ("launch") node
the job script runs on, with 1 slot (``batch1 1 h41n04 42 h41n05 42``); compute ranks are started
from it with ``jsrun``. A first host with 1 slot while other hosts have more is therefore not counted
as a node of the allocation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hpcpilot.batch.base import CommandBatchSystem
from hpcpilot.model.allocation import Allocation, BatchJobState
from hpcpilot.model.errors import BatchSystemError

__all__ = [
    "END_FIELDS",
    "LsfBatchSystem",
    "compute_hosts",
    "lsf_state",
    "parse_bjobs_json",
    "parse_mcpu_hosts",
    "parse_time_left",
]

_STATES: dict[str, BatchJobState] = {
    "RUN": BatchJobState.RUNNING,
    "DONE": BatchJobState.FINISHED,
    "PEND": BatchJobState.SUBMITTED,
    "PROV": BatchJobState.SUBMITTED,
    "WAIT": BatchJobState.SUBMITTED,
    # not in Harvester's table: suspended jobs still hold their allocation (as Slurm's SUSPENDED)
    "PSUSP": BatchJobState.RUNNING,
    "USUSP": BatchJobState.RUNNING,
    "SSUSP": BatchJobState.RUNNING,
}
END_FIELDS = "jobid stat start_time runtimelimit time_left"
"""The ``bjobs -o`` fields of the end-time query."""
_BSUB_FROM_STDIN = 'd=$1 && s=$2 && shift 2 && exec bsub -cwd "$d" "$@" < "$s"'
_NOT_FOUND = re.compile(r"Job <[^>]*> is not found")


def lsf_state(stat: str) -> BatchJobState:
    """The Harvester state of an LSF ``STAT``.

    RUN: running; DONE: finished; PEND, PROV, WAIT: submitted (Harvester's table, PROTOCOLS.md §5);
    PSUSP, USUSP, SSUSP: running (a suspended job keeps its allocation, as Slurm's SUSPENDED);
    EXIT, ZOMBI, UNKWN and anything else: failed.
    """
    return _STATES.get(stat.strip().upper(), BatchJobState.FAILED)


def parse_mcpu_hosts(text: str) -> list[tuple[str, int]]:
    """``host1 4 host2 4`` (``LSB_MCPU_HOSTS``) -> ``[("host1", 4), ("host2", 4)]``.

    Raises
    ------
    BatchSystemError
        An odd number of words or a slot count that is not a number.
    """
    words = text.split()
    if len(words) % 2 or not all(w.isdigit() for w in words[1::2]):
        raise BatchSystemError(
            f"LSB_MCPU_HOSTS is {text!r}, not 'host slots host slots ...'",
            context={"field": "LSB_MCPU_HOSTS"},
        )
    return [(host, int(slots)) for host, slots in zip(words[::2], words[1::2], strict=True)]


def compute_hosts(pairs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The hosts without a launch node: a first host with 1 slot when others have more is dropped."""
    if len(pairs) > 1 and pairs[0][1] == 1 and any(slots > 1 for _, slots in pairs[1:]):
        return list(pairs[1:])
    return list(pairs)


def parse_bjobs_json(stdout: str) -> list[dict[str, str]]:
    """The ``RECORDS`` of ``bjobs -o "..." -json``.

    Raises
    ------
    BatchSystemError
        Not JSON, or no ``RECORDS`` list of objects.
    """
    try:
        data: Any = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise BatchSystemError(
            f"bjobs -json printed no JSON: {exc}",
            context={"command": "bjobs -json", "field": "RECORDS", "output": stdout.strip()[:200]},
        ) from None
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BatchSystemError(
            "bjobs -json printed no RECORDS list",
            context={"command": "bjobs -json", "field": "RECORDS"},
        )
    return [{str(k): str(v) for k, v in r.items()} for r in records]


def parse_time_left(text: str) -> float | None:
    """Seconds in a ``bjobs`` ``TIME_LEFT``: ``0:43 L`` (hours:minutes and a flag) or ``00:43:10 L``.

    ``L`` (or no flag) means a run limit; ``E`` and ``X`` mean an *estimated* run time, not a limit:
    None. Empty or ``-``: no limit, None.

    Raises
    ------
    BatchSystemError
        Anything else.
    """
    value = text.strip()
    if value in {"", "-"}:
        return None
    match = re.fullmatch(r"(\d+):(\d{1,2})(?::(\d{1,2}))?(?:\s+([LEX]))?", value)
    if not match:
        raise BatchSystemError(
            f"bjobs printed {text!r} as TIME_LEFT, not 'H:MM L'",
            context={"command": "bjobs -o time_left", "field": "TIME_LEFT"},
        )
    first, second, third, flag = match.groups()
    if flag in {"E", "X"}:
        return None
    if third is None:  # hours:minutes
        return int(first) * 3600.0 + int(second) * 60.0
    return int(first) * 3600.0 + int(second) * 60.0 + int(third)


class LsfBatchSystem(CommandBatchSystem):
    """IBM Spectrum LSF (``bsub``, ``bjobs``, ``bkill``).

    Discovery reads ``LSB_JOBID``, the hosts and slots from ``LSB_MCPU_HOSTS`` (or the node file
    ``LSB_DJOB_HOSTFILE``, one line per slot), without a launch node (see the module docstring),
    ``LSB_QUEUE`` and ``LSB_PROJECT_NAME``; the end time from ``bjobs -o "... time_left" -json ID``.
    GPUs are not discovered (0): LSF reports them per process, not per allocation.

    Parameters
    ----------
    run, env, clock
        As for `CommandBatchSystem`; ``TIME_LEFT`` counts from ``clock``.
    """

    name: ClassVar[str] = "lsf"
    template: ClassVar[str] = "lsf.sh"
    submit_tool: ClassVar[str] = "bsub"
    default_launcher: ClassVar[str] = "jsrun"

    @classmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Whether ``LSB_JOBID`` is set."""
        return bool(env.get("LSB_JOBID"))

    # --- the allocation -----------------------------------------------------------------------

    def discover(self) -> Allocation:
        """The allocation from the ``LSB_*`` variables and ``bjobs``.

        Raises
        ------
        BatchSystemError
            Not an LSF job, no host list, a malformed variable, or ``bjobs`` failed.
        """
        env = self.env
        job_id = env.get("LSB_JOBID", "").strip()
        if not job_id:
            raise BatchSystemError("not in an LSF job: LSB_JOBID is not set", context={"field": "env"})
        hosts = compute_hosts(self._hosts())
        return Allocation(
            batch_system=self.name,
            job_id=job_id,
            nodes=tuple(host for host, _ in hosts),
            cores_per_node=min(slots for _, slots in hosts),
            gpus_per_node=0,
            queue=env.get("LSB_QUEUE") or None,
            account=env.get("LSB_PROJECT_NAME") or None,
            end_time=self.end_time(job_id),
        )

    def _hosts(self) -> list[tuple[str, int]]:
        text = self.env.get("LSB_MCPU_HOSTS", "").strip()
        if text:
            return parse_mcpu_hosts(text)
        path = self.env.get("LSB_DJOB_HOSTFILE", "").strip()
        if not path:
            raise BatchSystemError(
                "neither LSB_MCPU_HOSTS nor LSB_DJOB_HOSTFILE is set", context={"field": "LSB_MCPU_HOSTS"}
            )
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise BatchSystemError(
                f"cannot read the host file: {exc}", context={"field": "LSB_DJOB_HOSTFILE", "file": path}
            ) from None
        counts: dict[str, int] = {}
        for line in lines:
            if line.strip():
                counts[line.strip()] = counts.get(line.strip(), 0) + 1
        if not counts:
            raise BatchSystemError(
                "the host file is empty", context={"field": "LSB_DJOB_HOSTFILE", "file": path}
            )
        return list(counts.items())

    def end_time(self, job_id: str) -> float | None:
        """When LSF ends ``job_id`` (epoch seconds), None without a run limit.

        Raises
        ------
        BatchSystemError
            ``bjobs`` failed or printed something else than expected.
        """
        argv = ["bjobs", "-o", END_FIELDS, "-json", job_id]
        records = parse_bjobs_json(self._call(argv).stdout)
        record = next((r for r in records if r.get("JOBID") == job_id), records[0] if records else None)
        if record is None or "ERROR" in record:
            raise BatchSystemError(
                f"bjobs does not know job {job_id}: {record.get('ERROR', '') if record else 'no record'}",
                context={"command": " ".join(argv), "field": "RECORDS"},
            )
        left = parse_time_left(record.get("TIME_LEFT", ""))
        return None if left is None else self.clock() + left

    # --- submitting ---------------------------------------------------------------------------

    def submit_argv(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> list[str]:
        """``bsub -cwd WORKDIR [OPTIONS] < SCRIPT`` (see the module docstring)."""
        return ["sh", "-c", _BSUB_FROM_STDIN, "bsub", str(workdir), str(script), *options]

    def parse_submit(self, stdout: str) -> str:
        """The id in ``Job <1234> is submitted to queue <normal>.``.

        Raises
        ------
        BatchSystemError
            No such line.
        """
        match = re.search(r"Job <(\d+)> is submitted", stdout)
        if not match:
            raise BatchSystemError(
                "bsub printed no job id",
                context={"command": "bsub", "field": "job id", "output": stdout.strip()[:200]},
            )
        return match.group(1)

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``bjobs -a -noheader -o "jobid stat" ID...`` (``-a``: finished jobs too)."""
        return ["bjobs", "-a", "-noheader", "-o", "jobid stat", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, BatchJobState]:
        """Job id -> state from ``bjobs -noheader -o "jobid stat"`` lines (``1234 RUN``).

        Raises
        ------
        BatchSystemError
            A line that is not ``JOBID STAT``.
        """
        states: dict[str, BatchJobState] = {}
        for line in stdout.splitlines():
            if not line.strip() or _NOT_FOUND.search(line):
                continue
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"\d+(\[\d+\])?", parts[0]):
                raise BatchSystemError(
                    f"bjobs printed {line.strip()!r}, not 'JOBID STAT'",
                    context={"command": "bjobs -o 'jobid stat'", "field": "STAT"},
                )
            states[parts[0]] = lsf_state(parts[1])
        return states

    def cancel_argv(self, job_id: str) -> list[str]:
        """``bkill ID``."""
        return ["bkill", job_id]

    # --- the I/O ------------------------------------------------------------------------------

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids``; jobs bjobs reports as "not found" are left out.

        Raises
        ------
        BatchSystemError
            ``bjobs`` failed for another reason.
        """
        if not job_ids:
            return {}
        argv = self.status_argv(job_ids)
        result = self.run(argv)
        if not result.ok:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            if not errors or not all(_NOT_FOUND.search(line) for line in errors):
                raise self._failure(argv, result)
        return self.parse_status(result.stdout)
