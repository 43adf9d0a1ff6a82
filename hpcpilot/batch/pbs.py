"""PBS (PBS Professional, OpenPBS, Torque): ``PBS_*`` variables, node file, ``qstat -f``; ``qsub``, ``qdel``.

Submitting: PBS Pro has no ``qsub`` option for the job's working directory (Torque's ``-d`` is not
portable). ``qsub`` is therefore run *in* the work directory, through
``sh -c 'cd "$1" && s=$2 && shift 2 && exec qsub "$@" "$s"' qsub WORKDIR SCRIPT [OPTION...]`` (the
paths and options are positional arguments of the shell, never parsed as shell text; SCRIPT should be
absolute): both flavours record the directory as ``PBS_O_WORKDIR`` and put the job's ``.o``/``.e``
files there, and the batch template starts with ``cd "$PBS_O_WORKDIR"`` (Torque starts jobs in
``$HOME``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from hpcpilot.batch.base import CommandBatchSystem
from hpcpilot.model.allocation import Allocation, BatchJobState, parse_duration
from hpcpilot.model.errors import BatchSystemError

__all__ = [
    "PbsBatchSystem",
    "parse_nodefile",
    "parse_pbs_time",
    "parse_qstat_full",
    "pbs_end_time",
    "pbs_state",
]

_STATES: dict[str, BatchJobState] = {
    # Harvester's table (PROTOCOLS.md §5)
    "R": BatchJobState.RUNNING,
    "E": BatchJobState.RUNNING,
    "C": BatchJobState.FINISHED,
    "H": BatchJobState.FINISHED,
    "Q": BatchJobState.SUBMITTED,
    "W": BatchJobState.SUBMITTED,
    "S": BatchJobState.SUBMITTED,
    # PBS Pro codes Harvester's table lacks: B array begun, F/X finished (qstat -x), T/M in transit
    "B": BatchJobState.RUNNING,
    "F": BatchJobState.FINISHED,
    "X": BatchJobState.FINISHED,
    "T": BatchJobState.SUBMITTED,
    "M": BatchJobState.SUBMITTED,
}
_MISSING = ("Unknown Job Id", "Job has finished")
_QSUB_IN_WORKDIR = 'cd "$1" && s=$2 && shift 2 && exec qsub "$@" "$s"'
_JOB_ID = re.compile(r"^\d+(?:\[\d*\])?(?:\.[\w.-]+)?$")


def pbs_state(code: str) -> BatchJobState:
    """The Harvester state of a PBS ``job_state`` letter.

    R, E: running; C, H: finished; Q, W, S: submitted (Harvester's table, PROTOCOLS.md §5); also
    B: running, F, X (PBS Pro's finished jobs under ``qstat -x``): finished, T, M (in transit): submitted;
    anything else: failed.
    """
    return _STATES.get(code.strip().upper(), BatchJobState.FAILED)


def parse_qstat_full(stdout: str) -> dict[str, dict[str, str]]:
    """Job id -> attributes of ``qstat -f`` (PBS Pro, OpenPBS and Torque text format).

    ``Job Id: 1234.server`` starts a job; indented ``key = value`` lines are its attributes; long values
    continue on the following lines (indented by a tab, without `` = ``); the pieces are joined without
    a separator, as qstat cut them.

    Raises
    ------
    BatchSystemError
        Text before the first ``Job Id:`` line that is not blank.
    """
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last_key = ""
    for raw in stdout.splitlines():
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        head = re.match(r"^Job Id:\s*(\S+)", line)
        if head:
            current = jobs.setdefault(head.group(1), {})
            last_key = ""
            continue
        if current is None:
            raise BatchSystemError(
                f"qstat -f printed {line.strip()!r} before any 'Job Id:' line",
                context={"command": "qstat -f", "field": "Job Id"},
            )
        attr = re.match(r"^\s+([A-Za-z_][\w.]*) = ?(.*)$", line)
        if attr:
            last_key = attr.group(1)
            current[last_key] = attr.group(2).strip()
        elif last_key:
            current[last_key] += line.strip()
    return jobs


def parse_pbs_time(text: str, *, field: str) -> float:
    """Epoch seconds of a PBS time: ``Sat Apr 20 01:36:59 2013`` (local time) or epoch seconds.

    Raises
    ------
    BatchSystemError
        Neither; the context names the field.
    """
    value = " ".join(text.split())
    if value.isdigit():
        return float(value)
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %Y").timestamp()
    except ValueError:
        raise BatchSystemError(
            f"qstat -f printed {text!r} as {field}, not a time like 'Sat Apr 20 01:36:59 2013'",
            context={"command": "qstat -f", "field": field},
        ) from None


def pbs_end_time(fields: Mapping[str, str], now: float) -> float | None:
    """When PBS ends the job whose ``qstat -f`` attributes are ``fields``; None when unknown.

    Torque's ``Walltime.Remaining`` (seconds from ``now``) first; else the start (``stime`` in PBS Pro,
    ``start_time`` in Torque) plus ``Resource_List.walltime``.

    Raises
    ------
    BatchSystemError
        A field that is malformed (named in the context).
    """
    remaining = fields.get("Walltime.Remaining", "").strip()
    if remaining:
        if not remaining.lstrip("-").isdigit():
            raise BatchSystemError(
                f"qstat -f printed {remaining!r} as Walltime.Remaining, not seconds",
                context={"command": "qstat -f", "field": "Walltime.Remaining"},
            )
        return now + max(0, int(remaining))
    walltime = fields.get("Resource_List.walltime", "").strip()
    start_field = "stime" if "stime" in fields else "start_time"
    start = fields.get(start_field, "").strip()
    if not walltime or not start:
        return None
    try:
        seconds = parse_duration(walltime)
    except ValueError:
        raise BatchSystemError(
            f"qstat -f printed {walltime!r} as Resource_List.walltime, not HH:MM:SS",
            context={"command": "qstat -f", "field": "Resource_List.walltime"},
        ) from None
    return parse_pbs_time(start, field=start_field) + seconds


def parse_nodefile(text: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """The hosts of a node file (``PBS_NODEFILE``, ``LSB_DJOB_HOSTFILE``) in order, and lines per host.

    One line per rank slot: Torque repeats a host once per core, PBS Pro once per ``mpiprocs``.
    """
    counts: dict[str, int] = {}
    for line in text.splitlines():
        host = line.strip()
        if host:
            counts[host] = counts.get(host, 0) + 1
    return tuple(counts), counts


def _match_ids(found: Mapping[str, BatchJobState], wanted: Sequence[str]) -> dict[str, BatchJobState]:
    """Key the states by the ids asked for (``123`` matches qstat's ``123.server``)."""
    by_seq = {key.split(".", 1)[0]: key for key in found}
    out: dict[str, BatchJobState] = {}
    for job_id in wanted:
        if job_id in found:
            out[job_id] = found[job_id]
        elif job_id.split(".", 1)[0] in by_seq and "." not in job_id:
            out[job_id] = found[by_seq[job_id]]
    return out


class PbsBatchSystem(CommandBatchSystem):
    """PBS Professional, OpenPBS and Torque (``qsub``, ``qstat``, ``qdel``).

    Discovery reads ``PBS_JOBID``, the hosts from ``PBS_NODEFILE`` (unique, in order), cores per node
    from ``NCPUS`` (PBS Pro), ``PBS_NUM_PPN`` (Torque) or the repeats of a host in the node file,
    ``PBS_QUEUE``, ``PBS_ACCOUNT``; ``qstat -f ID`` gives the end time and GPUs
    (``Resource_List.ngpus`` / ``Resource_List.nodect``).

    Parameters
    ----------
    run, env, clock
        As for `CommandBatchSystem`; Torque's ``Walltime.Remaining`` counts from ``clock``.
    """

    name: ClassVar[str] = "pbs"
    template: ClassVar[str] = "pbs.sh"
    submit_tool: ClassVar[str] = "qsub"
    default_launcher: ClassVar[str] = "mpiexec"

    @classmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Whether ``PBS_JOBID`` is set."""
        return bool(env.get("PBS_JOBID"))

    # --- the allocation -----------------------------------------------------------------------

    def discover(self) -> Allocation:
        """The allocation from the ``PBS_*`` variables, the node file and ``qstat -f``.

        Raises
        ------
        BatchSystemError
            Not a PBS job, an unreadable node file, a malformed variable, or ``qstat`` failed.
        """
        env = self.env
        job_id = env.get("PBS_JOBID", "").strip()
        if not job_id:
            raise BatchSystemError("not in a PBS job: PBS_JOBID is not set", context={"field": "env"})
        nodes, counts = self._nodefile()
        argv = ["qstat", "-f", job_id]
        jobs = parse_qstat_full(self._call(argv).stdout)
        fields = jobs.get(job_id) or next(iter(jobs.values()), None)
        if fields is None:
            raise BatchSystemError(
                f"qstat -f {job_id} printed no job", context={"command": " ".join(argv), "field": "Job Id"}
            )
        return Allocation(
            batch_system=self.name,
            job_id=job_id,
            nodes=nodes,
            cores_per_node=self._cores(counts),
            gpus_per_node=self._gpus(fields),
            queue=env.get("PBS_QUEUE") or fields.get("queue") or None,
            account=env.get("PBS_ACCOUNT") or fields.get("Account_Name") or None,
            end_time=pbs_end_time(fields, self.clock()),
        )

    def _nodefile(self) -> tuple[tuple[str, ...], dict[str, int]]:
        path = self.env.get("PBS_NODEFILE", "").strip()
        if not path:
            raise BatchSystemError("PBS_NODEFILE is not set", context={"field": "PBS_NODEFILE"})
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise BatchSystemError(
                f"cannot read the node file: {exc}", context={"field": "PBS_NODEFILE", "file": path}
            ) from None
        nodes, counts = parse_nodefile(text)
        if not nodes:
            raise BatchSystemError("the node file is empty", context={"field": "PBS_NODEFILE", "file": path})
        return nodes, counts

    def _cores(self, counts: Mapping[str, int]) -> int | None:
        for var in ("NCPUS", "PBS_NUM_PPN"):
            text = self.env.get(var, "").strip()
            if text:
                if not text.isdigit():
                    raise BatchSystemError(f"{var} is {text!r}, not a number", context={"field": var})
                return int(text)
        smallest = min(counts.values())
        return smallest if smallest > 1 else None

    @staticmethod
    def _gpus(fields: Mapping[str, str]) -> int:
        ngpus = fields.get("Resource_List.ngpus", "").strip()
        nodect = fields.get("Resource_List.nodect", "1").strip() or "1"
        if not ngpus:
            return 0
        if not (ngpus.isdigit() and nodect.isdigit() and int(nodect) > 0):
            raise BatchSystemError(
                f"qstat -f printed ngpus={ngpus!r}, nodect={nodect!r}: not counts",
                context={"command": "qstat -f", "field": "Resource_List.ngpus"},
            )
        return int(ngpus) // int(nodect)

    # --- submitting ---------------------------------------------------------------------------

    def submit_argv(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> list[str]:
        """``qsub [OPTIONS] SCRIPT`` run in ``workdir`` (see the module docstring)."""
        return ["sh", "-c", _QSUB_IN_WORKDIR, "qsub", str(workdir), str(script), *options]

    def parse_submit(self, stdout: str) -> str:
        """The job id ``qsub`` prints (``1234.pbs01``; the last such line).

        Raises
        ------
        BatchSystemError
            No line is a job id.
        """
        for line in reversed(stdout.splitlines()):
            if _JOB_ID.match(line.strip()):
                return line.strip()
        raise BatchSystemError(
            "qsub printed no job id",
            context={"command": "qsub", "field": "job id", "output": stdout.strip()[:200]},
        )

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``qstat -f ID...``."""
        return ["qstat", "-f", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, BatchJobState]:
        """Job id (as qstat prints it) -> state, from ``qstat -f``.

        Raises
        ------
        BatchSystemError
            A job without ``job_state``.
        """
        states: dict[str, BatchJobState] = {}
        for job_id, fields in parse_qstat_full(stdout).items():
            code = fields.get("job_state")
            if not code:
                raise BatchSystemError(
                    f"qstat -f printed job {job_id} without job_state",
                    context={"command": "qstat -f", "field": "job_state"},
                )
            states[job_id] = pbs_state(code)
        return states

    def cancel_argv(self, job_id: str) -> list[str]:
        """``qdel ID``."""
        return ["qdel", job_id]

    # --- the I/O ------------------------------------------------------------------------------

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids``: ``qstat -f``, then ``qstat -x -f`` for the jobs it omits.

        Jobs qstat does not know ("Unknown Job Id", PBS Pro's "Job has finished") are looked up in the
        history (``-x``, PBS Pro); when that is not available (Torque prints XML for ``-x``) they are
        left out.

        Raises
        ------
        BatchSystemError
            ``qstat`` failed for another reason.
        """
        if not job_ids:
            return {}
        found = self._qstat(self.status_argv(job_ids))
        states = _match_ids(found, job_ids)
        missing = [j for j in job_ids if j not in states]
        if missing:
            argv = ["qstat", "-x", "-f", *missing]
            result = self.run(argv)
            if result.stdout.lstrip().startswith("Job Id:"):
                states.update(_match_ids(self.parse_status(result.stdout), missing))
        return states

    def _qstat(self, argv: list[str]) -> dict[str, BatchJobState]:
        result = self.run(argv)
        if not result.ok:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            if not errors or not all(any(m in line for m in _MISSING) for line in errors):
                raise self._failure(argv, result)
        return self.parse_status(result.stdout)
