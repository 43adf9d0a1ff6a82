"""A fake PBS Pro / LSF queue behind the commands ``qsub qstat qdel bsub bjobs bkill`` of this directory.

One JSON state file in ``$FAKE_BATCHQ_DIR`` (updated under an ``flock``, written atomically) holds the
jobs. Submitting stores a job (queued) and starts a detached runner (its own session) that marks it
running, runs the script with ``sh`` in the job's work directory with the environment a real job gets
(``PBS_JOBID``, ``PBS_NODEFILE``, ``NCPUS`` ... or ``LSB_JOBID``, ``LSB_MCPU_HOSTS``,
``LSB_DJOB_HOSTFILE`` ...), and records how it ended. ``qdel``/``bkill`` mark the job and kill the process
group of its runner (only that). The answers are in the real formats (see tests/data/README.md).

Settings (read by the submit command): ``FAKE_BATCHQ_NODES`` (``n1,n2``; default ``n1``),
``FAKE_BATCHQ_CORES`` (default 2), ``FAKE_BATCHQ_WALLTIME`` (seconds, default 3600),
``FAKE_BATCHQ_DELAY`` (seconds queued before the job starts, default 0).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PBS_SERVER = "fakepbs"
Job = dict[str, Any]
State = dict[str, Any]


def queue_dir() -> Path:
    value = os.environ.get("FAKE_BATCHQ_DIR", "")
    if not value:
        sys.stderr.write("fake batchq: FAKE_BATCHQ_DIR is not set\n")
        raise SystemExit(2)
    path = Path(value)
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked_state() -> Iterator[State]:
    """The state, locked; written back (atomically) when the block ends without error."""
    root = queue_dir()
    with open(root / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "state.json"
        state: State = json.loads(path.read_text()) if path.exists() else {"next": 1, "jobs": {}}
        yield state
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".state.")
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)


def read_state() -> State:
    with locked_state() as state:
        return json.loads(json.dumps(state))  # type: ignore[no-any-return]


# --- submitting ---------------------------------------------------------------------------------


def _settings() -> dict[str, Any]:
    nodes = [n for n in os.environ.get("FAKE_BATCHQ_NODES", "n1").split(",") if n]
    return {
        "nodes": nodes,
        "cores": int(os.environ.get("FAKE_BATCHQ_CORES", "2")),
        "walltime": int(os.environ.get("FAKE_BATCHQ_WALLTIME", "3600")),
        "delay": float(os.environ.get("FAKE_BATCHQ_DELAY", "0")),
    }


def submit(flavour: str, script: Path, workdir: Path, queue: str, account: str) -> str:
    root = queue_dir()
    with locked_state() as state:
        seq = int(state["next"])
        state["next"] = seq + 1
        job_id = f"{seq}.{PBS_SERVER}" if flavour == "pbs" else str(seq)
        state["jobs"][job_id] = {
            "id": job_id,
            "seq": seq,
            "flavour": flavour,
            "state": "Q" if flavour == "pbs" else "PEND",
            "script": str(script),
            "workdir": str(workdir),
            "queue": queue,
            "account": account,
            "submit_time": time.time(),
            "start_time": None,
            "end_time": None,
            "exit_status": None,
            "pgid": None,
            **_settings(),
        }
    log = open(root / "jobs" / f"{seq}.runner.log", "w")  # noqa: SIM115 - handed to the runner
    subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "run", job_id],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env=dict(os.environ),
    )
    log.close()
    return job_id


def _job_env(job: Job, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "LSB_", "LS_"))}
    seq = job["seq"]
    nodes: list[str] = job["nodes"]
    cores: int = job["cores"]
    if job["flavour"] == "pbs":
        nodefile = root / "jobs" / f"{seq}.nodes"
        nodefile.write_text("".join(f"{n}\n" for n in nodes))
        env.update(
            PBS_JOBID=job["id"],
            PBS_JOBNAME=Path(job["script"]).name,
            PBS_NODEFILE=str(nodefile),
            PBS_QUEUE=job["queue"],
            PBS_O_WORKDIR=job["workdir"],
            PBS_O_HOST="login",
            NCPUS=str(cores),
            ENVIRONMENT="PBS_BATCH",
        )
        if job["account"]:
            env["PBS_ACCOUNT"] = job["account"]
    else:
        hostfile = root / "jobs" / f"{seq}.hosts"
        hostfile.write_text("".join(f"{n}\n" for n in nodes for _ in range(cores)))
        env.update(
            LSB_JOBID=job["id"],
            LSB_MCPU_HOSTS=" ".join(f"{n} {cores}" for n in nodes),
            LSB_DJOB_HOSTFILE=str(hostfile),
            LSB_QUEUE=job["queue"],
            LSB_PROJECT_NAME=job["account"] or "default",
            LS_SUBCWD=job["workdir"],
        )
    return env


def _job_shell(script: str, flavour: str) -> str:
    """The shell the batch system runs a job script with: PBS ``#PBS -S``, LSF the ``#!`` line, else sh.

    Like the real ones, the fakes do not simply execute the script: without those, the user's login
    shell (here ``sh``) reads it.
    """
    lines = Path(script).read_text().splitlines()
    if flavour == "pbs":
        for line in lines:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#PBS" and parts[1] == "-S":
                return parts[2]
    elif lines and lines[0].startswith("#!"):
        return lines[0][2:].split()[0]
    return "sh"


def run_job(job_id: str) -> int:
    """The runner: wait, start the script, record its end (unless it was cancelled meanwhile)."""
    root = queue_dir()
    signal.signal(signal.SIGTERM, lambda *_: None)  # qdel/bkill record the end; the script just dies
    with locked_state() as state:
        delay = float(state["jobs"][job_id]["delay"])
    time.sleep(delay)
    with locked_state() as state:
        job = state["jobs"][job_id]
        if job["state"] not in {"Q", "PEND"}:
            return 0  # cancelled before it started
        job["state"] = "R" if job["flavour"] == "pbs" else "RUN"
        job["start_time"] = time.time()
        job["pgid"] = os.getpgid(0)
        job = dict(job)
    seq = job["seq"]
    out_name = f"{Path(job['script']).name}.o{seq}" if job["flavour"] == "pbs" else f"lsf.o{seq}"
    with open(Path(job["workdir"]) / out_name, "w") as out:
        code = subprocess.call(
            [_job_shell(job["script"], job["flavour"]), job["script"]],
            cwd=job["workdir"],
            env=_job_env(job, root),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with locked_state() as state:
        job = state["jobs"][job_id]
        if job["state"] in {"R", "RUN"}:
            job["end_time"] = time.time()
            job["exit_status"] = code
            if job["flavour"] == "pbs":
                job["state"] = "F"
            else:
                job["state"] = "DONE" if code == 0 else "EXIT"
    return 0


def cancel(job_id: str) -> str:
    """Mark ``job_id`` ended and kill its runner's process group; '' or an error keyword."""
    with locked_state() as state:
        job = state["jobs"].get(job_id)
        if job is None:
            return "unknown"
        if job["state"] in {"F", "DONE", "EXIT"}:
            return "finished"
        pgid = job["pgid"]
        job["end_time"] = time.time()
        job["exit_status"] = 271 if job["flavour"] == "pbs" else 130
        job["state"] = "F" if job["flavour"] == "pbs" else "EXIT"
    if pgid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pgid), signal.SIGTERM)
    return ""


# --- PBS ------------------------------------------------------------------------------------------


def _find_pbs(state: State, job_id: str) -> Job | None:
    jobs: dict[str, Job] = state["jobs"]
    if job_id in jobs:
        return jobs[job_id]
    return jobs.get(f"{job_id}.{PBS_SERVER}") if "." not in job_id else None


def _ctime(t: float) -> str:
    return time.ctime(t)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def qstat_full(job: Job) -> str:
    lines = [
        f"Job Id: {job['id']}",
        f"    Job_Name = {Path(job['script']).name}",
        "    Job_Owner = user@login",
        f"    job_state = {job['state']}",
        f"    queue = {job['queue']}",
        f"    server = {PBS_SERVER}",
    ]
    if job["account"]:
        lines.append(f"    Account_Name = {job['account']}")
    lines += [
        f"    ctime = {_ctime(job['submit_time'])}",
        f"    Resource_List.ncpus = {job['cores'] * len(job['nodes'])}",
        f"    Resource_List.nodect = {len(job['nodes'])}",
        f"    Resource_List.select = {len(job['nodes'])}:ncpus={job['cores']}",
        f"    Resource_List.walltime = {_hms(job['walltime'])}",
    ]
    if job["start_time"] is not None:
        lines.append(f"    stime = {_ctime(job['start_time'])}")
        hosts = "+".join(f"{n}/0*{job['cores']}" for n in job["nodes"])
        lines.append(f"    exec_host = {hosts}")
    if job["exit_status"] is not None:
        lines.append(f"    Exit_status = {job['exit_status']}")
    lines.append(f"    Variable_List = PBS_O_WORKDIR={job['workdir']},PBS_O_QUEUE={job['queue']}")
    return "\n".join(lines) + "\n\n"


def main_qsub(args: list[str]) -> int:
    queue, account = "workq", ""
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in {"-q", "-A", "-N", "-l", "-v", "-W", "-o", "-e", "-j"}:
            value = next(it, "")
            if arg == "-q":
                queue = value
            elif arg == "-A":
                account = value
        elif arg.startswith("-"):
            sys.stderr.write(f"qsub: invalid option -- '{arg}'\nusage: qsub [-q queue] script\n")
            return 2
        else:
            rest.append(arg)
    if len(rest) != 1:
        sys.stderr.write("usage: qsub [-q queue] script\n")
        return 2
    script = Path(rest[0])
    if not script.is_file():
        sys.stderr.write(f"qsub: script file:: No such file or directory: {rest[0]}\n")
        return 1
    print(submit("pbs", script.resolve(), Path.cwd(), queue, account))
    return 0


def main_qstat(args: list[str]) -> int:
    full = history = False
    ids: list[str] = []
    for arg in args:
        if arg == "-f":
            full = True
        elif arg == "-x":
            history = True
        elif arg.startswith("-"):
            sys.stderr.write(f"qstat: fake supports -f and -x only, not {arg}\n")
            return 2
        else:
            ids.append(arg)
    if not full:
        sys.stderr.write("qstat: fake supports qstat -f [-x] ID... only\n")
        return 2
    state = read_state()
    code = 0
    out: list[str] = []
    for job_id in ids:
        job = _find_pbs(state, job_id)
        if job is None or job["flavour"] != "pbs":
            sys.stderr.write(f"qstat: Unknown Job Id {job_id}\n")
            code = 153
        elif job["state"] == "F" and not history:
            sys.stderr.write(
                f"qstat: {job['id']} Job has finished, use -x or -H to obtain historical job information\n"
            )
            code = 35
        else:
            out.append(qstat_full(job))
    sys.stdout.write("".join(out))
    return code


def main_qdel(args: list[str]) -> int:
    code = 0
    for job_id in args:
        state = read_state()
        job = _find_pbs(state, job_id)
        if job is None or job["flavour"] != "pbs":
            sys.stderr.write(f"qdel: Unknown Job Id {job_id}\n")
            code = 153
            continue
        if cancel(job["id"]) == "finished":
            sys.stderr.write(f"qdel: Job has finished {job['id']}\n")
            code = 35
    return code


# --- LSF ------------------------------------------------------------------------------------------


def _lsf_time(t: float | None) -> str:
    return "" if t is None else time.strftime("%b %d %H:%M", time.localtime(t))


def _lsf_field(job: Job, field: str) -> str:
    if field == "jobid":
        return str(job["id"])
    if field == "stat":
        return str(job["state"])
    if field == "queue":
        return str(job["queue"])
    if field == "proj_name":
        return str(job["account"] or "default")
    if field == "start_time":
        return _lsf_time(job["start_time"])
    if field == "runtimelimit":
        return f"{job['walltime'] / 60:.1f}"
    if field == "time_left":
        if job["state"] != "RUN":
            return ""
        left = max(0.0, job["start_time"] + job["walltime"] - time.time())
        return f"{int(left // 3600)}:{int(left % 3600 // 60):02d} L"
    if field == "exit_code":
        return "" if job["exit_status"] in (None, 0) else str(job["exit_status"])
    raise KeyError(field)


def main_bsub(args: list[str]) -> int:
    queue, account, workdir = "normal", "", Path.cwd()
    it = iter(args)
    for arg in it:
        if arg in {"-cwd", "-q", "-P", "-J", "-o", "-oo", "-e", "-eo", "-W", "-nnodes", "-n"}:
            value = next(it, "")
            if arg == "-cwd":
                workdir = Path(value)
            elif arg == "-q":
                queue = value
            elif arg == "-P":
                account = value
        else:
            sys.stderr.write(f"bsub: fake takes the job script on stdin; unexpected {arg}\n")
            return 255
    text = sys.stdin.read()
    if not text.strip():
        sys.stderr.write("bsub: no job script on stdin. Job not submitted.\n")
        return 255
    root = queue_dir()
    fd, name = tempfile.mkstemp(dir=root / "jobs", prefix="bsub.", suffix=".sh")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    job_id = submit("lsf", Path(name), workdir.resolve(), queue, account)
    where = "default queue" if queue == "normal" else "queue"
    print(f"Job <{job_id}> is submitted to {where} <{queue}>.")
    return 0


def main_bjobs(args: list[str]) -> int:
    fields = ["jobid", "user", "stat", "queue"]
    as_json = noheader = False
    ids: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "-o":
            spec = next(it, "")
            fields = [f.split(":")[0] for f in spec.split() if not f.startswith("delimiter=")]
        elif arg == "-json":
            as_json = True
        elif arg == "-noheader":
            noheader = True
        elif arg == "-a":
            pass
        elif arg.startswith("-"):
            sys.stderr.write(f"bjobs: fake does not support {arg}\n")
            return 255
        else:
            ids.append(arg)
    state = read_state()
    jobs: list[Job] = []
    code = 0
    for job_id in ids:
        job = state["jobs"].get(job_id)
        if job is None or job["flavour"] != "lsf":
            sys.stderr.write(f"Job <{job_id}> is not found\n")
            code = 255
        else:
            jobs.append(job)
    try:
        rows = [[_lsf_field(job, f) for f in fields] for job in jobs]
    except KeyError as exc:
        sys.stderr.write(f"bjobs: fake does not know the field {exc}\n")
        return 255
    if as_json:
        records = [dict(zip([f.upper() for f in fields], row, strict=True)) for row in rows]
        doc = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        if not noheader and rows:
            print(" ".join(f.upper() for f in fields))
        for row in rows:
            print(" ".join(v or "-" for v in row))
    return code


def main_bkill(args: list[str]) -> int:
    code = 0
    for job_id in args:
        result = cancel(job_id)
        if result == "unknown":
            sys.stderr.write(f"Job <{job_id}>: No matching job found\n")
            code = 255
        elif result == "finished":
            sys.stderr.write(f"Job <{job_id}>: Job has already finished\n")
            code = 255
        else:
            print(f"Job <{job_id}> is being terminated")
    return code


COMMANDS = {
    "qsub": main_qsub,
    "qstat": main_qstat,
    "qdel": main_qdel,
    "bsub": main_bsub,
    "bjobs": main_bjobs,
    "bkill": main_bkill,
}


def main(command: str, args: list[str]) -> int:
    return COMMANDS[command](args)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        raise SystemExit(run_job(sys.argv[2]))
    raise SystemExit(main(Path(sys.argv[1]).name, sys.argv[2:]))
