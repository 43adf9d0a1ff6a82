"""Dispatch benchmark: hpcpilot against a bare mpi4py dispatcher and ``MPIPoolExecutor``.

Usage::

    .venv/bin/python bench/dispatch.py [--ranks 8] [--quick | --ci] [--json OUT] [--only PART ...]
                                       [--set SECTION.KEY=VALUE ...] [--mpiexec PATH]

Every run is a separate ``mpiexec -n RANKS`` on the same workload: N ranges, each "processed" by
sleeping a fixed payload time, one slot per worker rank. The launcher is ``--mpiexec``, else ``$MPIEXEC``,
else the ``mpiexec`` beside ``sys.executable``, else the one on ``PATH`` (``bench/_launch.py``).

* hpcpilot: an event-service job with the in-process ``sleep`` payload (``jobPars`` = seconds),
  ``node.cores=1``, one event per range, ``parallel.batch_size`` ranges per assignment and as many
  queued per slot (at least the default 2); timed from its journal (first ``assigned`` to last
  ``finished`` record), and ``summary.json``'s utilisation besides.
* bare: ``bench/bare_dispatcher.py``, blocking pickled send/recv, the yardstick.
* pool: ``bench/pool_workload.py`` under ``python -m mpi4py.futures`` (``executor.map``).

Parts: ``throughput`` (0 s payloads at batch sizes 1, 8, 64), ``utilisation`` (10 ms and 100 ms
payloads), ``idle`` (CPU of worker ranks that have nothing to do). A run that would last too long on a
slow system is cut after ``max_dispatch_s`` of dispatching (hpcpilot: SIGUSR1 to rank 0, which drains;
``batch.warning_lead_s=0`` makes it the end of the allocation at once)
and its rate is measured on the ranges done. Prints markdown tables with PASS/FAIL against issue 16's
targets, every ratio taken between runs of the same invocation:

* throughput, 0 s payloads: hpcpilot >= ``MPIPoolExecutor`` at batch 1, 8 and 64, and >= 25 % of the
  bare loop at batch 64;
* utilisation over the whole run, start-up included (``summary.json``): >= 96 % at 100 ms payloads and
  >= 90 % at 10 ms, with 15 slots (``--util-ranks 16``, the full plan's default) on the machine's cores;
* idle worker ranks below 5 % of a core.

A run that ends early is reported (exit status, the last lines of its output and of rank 0's log) and
the others go on; the script then exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
from _launch import RunEndedError, add_mpiexec_option, find_mpiexec, launch_env, rank_of, why_ended

from hpcpilot.config.schema import EventServiceSettings, ParallelSettings
from hpcpilot.runtime.journal import plain

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
PANDA_ID = 7001
RUN_TIMEOUT_S = 300.0
BATCHES = (1, 8, 64)
UTIL_PAYLOADS = (0.01, 0.1)
SYSTEMS = ("hpcpilot", "bare", "pool")
PARTS = ("throughput", "utilisation", "idle")
DEFAULT_BATCH = ParallelSettings().batch_size  # hpcpilot's default, used in the utilisation part
DEFAULT_PREFETCH = EventServiceSettings().prefetch_per_slot  # hpcpilot's default queue per slot
UTIL_RANKS = 16  # issue 16: utilisation with 15 slots (one per worker rank); the full plan's default

# issue 16's targets (ratios between runs of the same invocation)
POOL_RATIO_TARGET = 1.0  # hpcpilot / MPIPoolExecutor, 0 s payloads, at every batch size of BATCHES
BARE_SHARE_TARGET = 0.25  # hpcpilot / bare loop, 0 s payloads, at BARE_SHARE_BATCH
BARE_SHARE_BATCH = 64
UTIL_TARGETS = {0.1: 0.96, 0.01: 0.90}  # payload s -> whole-run utilisation (summary.json), start-up included
IDLE_TARGET = 0.05  # CPU of an idle worker rank, fraction of one core


@dataclass(frozen=True)
class Plan:
    """Sizes of the runs.

    Attributes
    ----------
    ranks
        MPI ranks per run (rank 0 dispatches; the others are workers).
    throughput_n
        Ranges per run at each batch size (0 s payloads).
    max_dispatch_s
        Dispatching stops after this many seconds (slow systems); the rate is taken on what was done.
    util_per_worker
        Ranges per worker at each payload time of the utilisation part.
    idle_payload_s
        The one range of the idle part lasts this long.
    idle_window_s
        CPU is sampled over this window while that range runs.
    hpcpilot_settings
        Extra ``--set`` overrides for every hpcpilot run (to try tunings); applied last.
    mpiexec
        The MPI launcher (`_launch.find_mpiexec`).
    util_ranks
        MPI ranks of the utilisation part's runs (0: ``ranks``); issue 16 states its utilisation
        targets for 15 slots, i.e. 16 ranks of one slot each.
    """

    ranks: int
    throughput_n: dict[int, int]
    max_dispatch_s: float
    util_per_worker: dict[float, int]
    idle_payload_s: float
    idle_window_s: float
    hpcpilot_settings: dict[str, str] = field(default_factory=dict)
    mpiexec: str = "mpiexec"
    util_ranks: int = 0

    @property
    def workers(self) -> int:
        """Worker ranks."""
        return self.ranks - 1

    def for_utilisation(self) -> Plan:
        """This plan at the utilisation part's number of ranks."""
        return replace(self, ranks=self.util_ranks or self.ranks)


def make_plan(
    ranks: int,
    quick: bool,
    hpcpilot_settings: dict[str, str],
    mpiexec: str = "mpiexec",
    ci: bool = False,
    util_ranks: int | None = None,
) -> Plan:
    """The full plan (about 3 minutes at 8 ranks), the quick one (under a minute) or CI's.

    The full plan runs the utilisation part at ``util_ranks`` (default `UTIL_RANKS`: the 15 slots of
    issue 16's targets); the quick one at ``ranks`` unless ``util_ranks`` is given. CI's (``--ci``)
    only checks that every kind of run works with this MPI: batch 8 only, each run cut after half a
    second of dispatching (more work than that, so that the cut never races the run's own end), no
    utilisation part (`run_parts`).
    """
    if ci:
        return Plan(ranks, {8: 20_000}, 0.5, {0.01: 20, 0.1: 3}, 2.0, 0.3, hpcpilot_settings, mpiexec)
    if quick:
        return Plan(
            ranks,
            {1: 20_000, 8: 100_000, 64: 500_000},
            1.5,
            {0.01: 150, 0.1: 15},
            3.0,
            1.5,
            hpcpilot_settings,
            mpiexec,
            util_ranks or ranks,
        )
    return Plan(
        ranks,
        {1: 100_000, 8: 600_000, 64: 3_000_000},
        4.0,
        {0.01: 600, 0.1: 60},
        5.0,
        3.0,
        hpcpilot_settings,
        mpiexec,
        util_ranks or UTIL_RANKS,
    )


@dataclass(frozen=True)
class Run:
    """One measured run.

    Attributes
    ----------
    system, batch, payload_s
        What ran.
    n_planned, n_done
        Ranges in the workload and ranges finished (fewer if the run was cut).
    wall_s
        First dispatch to last result.
    rate
        ``n_done / wall_s``.
    utilisation
        Payload seconds over ``workers * wall_s``.
    summary_utilisation
        hpcpilot only: ``summary.json``'s figure, over the whole run from rank 0's start (the workers'
        start-up and the shutdown included); what the utilisation targets are judged on.
    launch_utilisation
        hpcpilot only, uncut runs: payload seconds over ``workers`` x the time from ``mpiexec``'s start
        to its exit (the interpreters' start and MPI's set-up included too); shown, not judged.
    workers
        Worker ranks (slots) of the run; 0 when not known.
    """

    system: str
    batch: int
    payload_s: float
    n_planned: int
    n_done: int
    wall_s: float
    rate: float
    utilisation: float
    summary_utilisation: float | None = None
    launch_utilisation: float | None = None
    workers: int = 0


@dataclass
class IdleCpu:
    """CPU fractions (of one core) of each rank while only some ranks have work.

    Attributes
    ----------
    system
        What ran.
    per_rank
        Rank -> CPU fraction over the window.
    busy_ranks
        Worker ranks that held a range.
    window_in_busy_period
        Whether the sampling window lay between the range's assignment and its end (hpcpilot only:
        from the journal), so that the idle ranks were idle, not finishing, all along.
    """

    system: str
    per_rank: dict[int, float]
    busy_ranks: list[int] = field(default_factory=list)
    window_in_busy_period: bool | None = None

    @property
    def idle(self) -> list[float]:
        """CPU fractions of the idle worker ranks (all workers if the busy one is unknown)."""
        skip = {0, *self.busy_ranks}
        return [v for r, v in sorted(self.per_rank.items()) if r not in skip]

    @property
    def idle_max(self) -> float:
        """The busiest idle worker."""
        return max(self.idle, default=0.0)

    @property
    def idle_median(self) -> float:
        """The median idle worker."""
        return statistics.median(self.idle) if self.idle else 0.0


# --- launching -----------------------------------------------------------------------------------


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start(cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start an MPI run in its own session, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=launch_env()
        )


def read_text(path: Path) -> str:
    """A file's text ('' when it is missing)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def finish(
    proc: subprocess.Popen[bytes], log: Path, ok_codes: tuple[int, ...] = (0,), workdir: Path | None = None
) -> None:
    """Wait for a run; on timeout kill its process group; on a bad exit raise `RunEndedError` saying why.

    The message has the exit status, the last lines of the run's output and, for an hpcpilot run
    (``workdir``), of rank 0's log.
    """
    try:
        code: int | None = proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    if code not in ok_codes:
        raise RunEndedError(why_ended(command_of(proc), code, read_text(log), run_logs(workdir)))


def command_of(proc: subprocess.Popen[bytes]) -> list[str]:
    """A run's command line."""
    args = proc.args
    return [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]


def run_logs(workdir: Path | None) -> dict[str, str]:
    """Rank 0's log of an hpcpilot run, if it wrote one."""
    if workdir is None:
        return {}
    path = workdir / "logs" / "rank-0000.log"
    return {str(path.relative_to(workdir)): read_text(path) if path.exists() else "(not written)"}


def rank_processes(proc: subprocess.Popen[bytes], ranks: int, timeout_s: float = 30.0) -> dict[int, Any]:
    """The python processes of an MPI run, by rank (``PMI_RANK``, ``OMPI_COMM_WORLD_RANK`` ..).

    Processes that end while they are looked at are skipped; so is the whole run when it has ended.
    """
    deadline = time.monotonic() + timeout_s
    found: dict[int, Any] = {}
    while len(found) < ranks and time.monotonic() < deadline and proc.poll() is None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                rank = rank_of(child.environ())
                name = child.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if rank is not None and "python" in name:
                found[rank] = child
        time.sleep(0.05)
    return found


def read_out(path: Path) -> dict[str, Any]:
    """The JSON result a bare or pool run wrote."""
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


# --- hpcpilot -----------------------------------------------------------------------------------


def sleep_job(n: int, payload_s: float) -> dict[str, Any]:
    """An event-service job of ``n`` one-event ranges of the ``sleep`` payload."""
    return {
        "PandaID": PANDA_ID,
        "taskID": 1,
        "jobsetID": 1,
        "attemptNr": 1,
        "transformation": "sleep",
        "jobPars": repr(payload_s),
        "eventService": "True",
        "coreCount": 1,
        "nEventsPerInputFile": n,
        "outFiles": "out.dat,log.tgz",
        "logFile": "log.tgz",
    }


def hpcpilot_cmd(plan: Plan, workdir: Path, settings: dict[str, str]) -> list[str]:
    """The mpiexec line of one hpcpilot run."""
    base = {
        "eventservice.mode": "sleep",
        "node.cores": "1",
        "local.events_per_range": "1",
        "run.status_interval_s": "1000",
        # SIGUSR1 (how a run is cut) announces the end of the allocation: make it now
        "batch.warning_lead_s": "0",
        "batch.exit_margin_s": "0",
        **settings,
        **plan.hpcpilot_settings,
    }
    sets = [arg for key, value in base.items() for arg in ("--set", f"{key}={value}")]
    return [
        plan.mpiexec,
        "-n",
        str(plan.ranks),
        PYTHON,
        "-m",
        "hpcpilot",
        "run",
        "--workdir",
        str(workdir),
        *sets,
    ]


def throughput_settings(batch: int) -> dict[str, str]:
    """hpcpilot settings for the dispatch-throughput runs at one batch size.

    A slot's queue holds ``batch`` ranges, or hpcpilot's default (`DEFAULT_PREFETCH`) where that is
    more: at batch 1 each assignment is still one range (like the pool's chunk of 1), but a worker
    keeps its default two ranges queued per slot, as a user who sets only the batch size gets.
    """
    return {
        "parallel.batch_size": str(batch),
        "eventservice.prefetch_per_slot": str(max(batch, DEFAULT_PREFETCH)),
        "parallel.report_interval_s": "0.01",
    }


def journal_records(workdir: Path) -> list[dict[str, Any]]:
    """The run's journal records."""
    path = workdir / "journal.jsonl"
    if not path.exists():
        return []
    return [plain(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


class FirstAssigned:
    """Whether the journal (flushed about once a second) shows a range handed out yet.

    Reads only what was appended since the last look: the journal's head may hold megabytes of
    ``ranges`` records before the first ``assigned`` one.
    """

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "journal.jsonl"
        self.offset = 0
        self.tail = b""
        self.seen = False

    def __call__(self) -> bool:
        if self.seen:
            return True
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return False
        self.offset += len(data)
        window = self.tail + data
        self.tail = window[-32:]
        self.seen = b'"ev":"assigned"' in window
        return self.seen


def cut_after(proc: subprocess.Popen[bytes], plan: Plan, workdir: Path, max_s: float) -> None:
    """Send SIGUSR1 (drain) to rank 0 once work has been dispatched for ``max_s`` seconds.

    Without rank 0's process the signal goes to mpiexec, which forwards it to every rank. A run that
    has ended already (all of it, or rank 0) is left alone: `finish` says why it ended.
    """
    try:
        rank0 = rank_processes(proc, plan.ranks).get(0) or psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return
    started: float | None = None
    assigned = FirstAssigned(workdir)
    while proc.poll() is None:
        now = time.monotonic()
        if started is None and assigned():
            started = now
        if started is not None and now - started >= max_s:
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended on its own meanwhile
                rank0.send_signal(signal.SIGUSR1)
            return
        time.sleep(0.05)


def run_hpcpilot(
    plan: Plan, n: int, payload_s: float, batch: int, settings: dict[str, str], max_s: float = 0.0
) -> Run:
    """One hpcpilot run; cut (drained) after ``max_s`` seconds of dispatching when given."""
    with scratch_dir("bench-hpcpilot-") as workdir:
        (workdir / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): sleep_job(n, payload_s)}))
        log = workdir / "bench.log"
        launched = time.monotonic()
        proc = start(hpcpilot_cmd(plan, workdir, settings), log)
        if max_s:
            cut_after(proc, plan, workdir, max_s)
        finish(proc, log, ok_codes=(0, 3) if max_s else (0,), workdir=workdir)
        launch_s = time.monotonic() - launched
        summary_path = workdir / "summary.json"
        if not summary_path.exists():
            why = why_ended(command_of(proc), proc.returncode, read_text(log), run_logs(workdir))
            raise RunEndedError(f"{why}\n  (it wrote no summary.json)")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        result = hpcpilot_result(plan, journal_records(workdir), summary, n, payload_s, batch)
    if max_s:
        return result
    return replace(result, launch_utilisation=busy_fraction(result.n_done, payload_s, plan.workers, launch_s))


def busy_fraction(n_done: int, payload_s: float, workers: int, wall_s: float) -> float:
    """Payload seconds of ``n_done`` ranges over ``workers`` slots for ``wall_s`` seconds."""
    return n_done * payload_s / (workers * wall_s) if workers and wall_s > 0 else 0.0


def hpcpilot_result(
    plan: Plan, records: list[dict[str, Any]], summary: dict[str, Any], n: int, payload_s: float, batch: int
) -> Run:
    """Timing from the journal (first ``assigned`` to last ``finished`` record), and ``summary.json``."""
    assigned = [r["t"] for r in records if r["ev"] == "assigned"]
    finished = [r.get("t_end", r["t"]) for r in records if r["ev"] == "finished"]
    wall = max(finished) - min(assigned) if finished and assigned else 0.0
    done = sum(len(r["ids"]) for r in records if r["ev"] == "finished")  # one record per report
    return Run(
        system="hpcpilot",
        batch=batch,
        payload_s=payload_s,
        n_planned=n,
        n_done=done,
        wall_s=wall,
        rate=done / wall if wall > 0 else 0.0,
        utilisation=busy_fraction(done, payload_s, plan.workers, wall),
        summary_utilisation=float(summary["utilisation"]),
        workers=plan.workers,
    )


# --- bare dispatcher and MPIPoolExecutor ---------------------------------------------------------


def yardstick_cmd(
    system: str, plan: Plan, n: int, batch: int, payload_s: float, max_s: float, out: Path
) -> list[str]:
    """The mpiexec line of a bare or pool run."""
    options = {"--n": n, "--batch": batch, "--payload": payload_s, "--max-s": max_s, "--out": out}
    args = [str(arg) for item in options.items() for arg in item]
    if system == "bare":
        script = [str(BENCH_DIR / "bare_dispatcher.py")]
    else:
        script = ["-m", "mpi4py.futures", str(BENCH_DIR / "pool_workload.py")]
    return [plan.mpiexec, "-n", str(plan.ranks), PYTHON, *script, *args]


def run_yardstick(system: str, plan: Plan, n: int, batch: int, payload_s: float, max_s: float = 0.0) -> Run:
    """One run of the bare dispatcher or of the pool."""
    with scratch_dir(f"bench-{system}-") as tmp:
        out, log = tmp / "result.json", tmp / "bench.log"
        proc = start(yardstick_cmd(system, plan, n, batch, payload_s, max_s, out), log)
        finish(proc, log)
        if not out.exists():
            why = why_ended(command_of(proc), proc.returncode, read_text(log))
            raise RunEndedError(f"{why}\n  (no result file)")
        r = read_out(out)
    return Run(
        system=system,
        batch=batch,
        payload_s=payload_s,
        n_planned=n,
        n_done=int(r["n"]),
        wall_s=float(r["wall_s"]),
        rate=float(r["rate"]),
        utilisation=float(r["utilisation"]),
        workers=plan.workers,
    )


def run_system(
    system: str,
    plan: Plan,
    n: int,
    payload_s: float,
    batch: int,
    hpcpilot_settings: dict[str, str],
    max_s: float = 0.0,
) -> Run:
    """One run of any of the three systems."""
    if system == "hpcpilot":
        return run_hpcpilot(plan, n, payload_s, batch, hpcpilot_settings, max_s)
    return run_yardstick(system, plan, n, batch, payload_s, max_s)


# --- the parts -----------------------------------------------------------------------------------


def progress(run: Run) -> None:
    """One line per run on stderr."""
    print(
        f"  {run.system:8s} batch {run.batch:3d} payload {run.payload_s * 1000:5.0f} ms: "
        f"{run.n_done}/{run.n_planned} ranges in {run.wall_s:.2f} s, {run.rate:,.0f}/s, "
        f"utilisation {run.utilisation:.1%}",
        file=sys.stderr,
        flush=True,
    )


def failed(failures: list[str], what: str, exc: RunEndedError) -> None:
    """Note a run that ended early, and say why on stderr; the benchmark goes on."""
    failures.append(f"{what}: {exc}")
    print(f"  {what} ended early:\n{exc}", file=sys.stderr, flush=True)


def throughput_part(plan: Plan, failures: list[str]) -> list[Run]:
    """0 s payloads at each batch size (of the plan), every system."""
    runs = []
    for batch in BATCHES:
        if batch not in plan.throughput_n:
            continue
        for system in SYSTEMS:
            try:
                run = run_system(
                    system,
                    plan,
                    plan.throughput_n[batch],
                    0.0,
                    batch,
                    throughput_settings(batch),
                    plan.max_dispatch_s,
                )
            except RunEndedError as exc:
                failed(failures, f"{system} at batch {batch}", exc)
                continue
            progress(run)
            runs.append(run)
    return runs


def utilisation_part(plan: Plan, failures: list[str]) -> list[Run]:
    """10 and 100 ms payloads at ``plan.util_ranks``: hpcpilot with its defaults, bare and pool at batch 1."""
    plan = plan.for_utilisation()
    runs = []
    for payload_s in UTIL_PAYLOADS:
        n = plan.util_per_worker[payload_s] * plan.workers
        for system in SYSTEMS:
            batch = DEFAULT_BATCH if system == "hpcpilot" else 1
            try:
                run = run_system(system, plan, n, payload_s, batch, {})
            except RunEndedError as exc:
                failed(failures, f"{system} at {payload_s * 1000:.0f} ms payloads", exc)
                continue
            progress(run)
            runs.append(run)
    return runs


def sample_cpu(procs: dict[int, Any]) -> dict[int, float]:
    """User + system CPU seconds of each rank so far (a rank that has ended is left out)."""
    out = {}
    for rank, proc in procs.items():
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        out[rank] = times.user + times.system
    return out


def cpu_window(
    proc: subprocess.Popen[bytes], plan: Plan, ready: Callable[[], bool]
) -> tuple[dict[int, float], tuple[float, float]]:
    """Each rank's CPU fraction over ``plan.idle_window_s`` once ``ready()`` holds, and the window."""
    procs = rank_processes(proc, plan.ranks)
    deadline = time.monotonic() + 30.0
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    before, t0 = sample_cpu(procs), time.time()
    time.sleep(plan.idle_window_s)
    after, t1 = sample_cpu(procs), time.time()
    ranks = sorted(set(before) & set(after))
    return {rank: (after[rank] - before[rank]) / (t1 - t0) for rank in ranks}, (t0, t1)


def inside(window: tuple[float, float], records: list[dict[str, Any]]) -> bool:
    """Whether ``window`` lies between the first ``assigned`` and the last ``finished`` record."""
    assigned = [r["t"] for r in records if r["ev"] == "assigned"]
    finished = [r.get("t_end", r["t"]) for r in records if r["ev"] == "finished"]
    return bool(assigned and finished) and min(assigned) <= window[0] and window[1] <= max(finished)


def idle_hpcpilot(plan: Plan) -> IdleCpu:
    """hpcpilot with one long range: one worker busy, the others idle."""
    with scratch_dir("bench-idle-hpcpilot-") as workdir:
        job = sleep_job(1, plan.idle_payload_s)
        (workdir / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): job}))
        log = workdir / "bench.log"
        proc = start(hpcpilot_cmd(plan, workdir, {}), log)
        per_rank, window = cpu_window(proc, plan, FirstAssigned(workdir))
        finish(proc, log, workdir=workdir)
        records = journal_records(workdir)
    busy = [int(r["rank"]) for r in records if r["ev"] == "assigned"]
    return IdleCpu("hpcpilot", per_rank, busy, inside(window, records))


def idle_bare(plan: Plan) -> IdleCpu:
    """The bare dispatcher with one long range: its waiting ranks spin in a blocking recv."""
    with scratch_dir("bench-idle-bare-") as tmp:
        out, log = tmp / "result.json", tmp / "bench.log"
        proc = start(yardstick_cmd("bare", plan, 1, 1, plan.idle_payload_s, 0.0, out), log)
        settle = time.monotonic() + 1.0
        per_rank, _ = cpu_window(proc, plan, lambda: time.monotonic() >= settle)
        finish(proc, log)
        busy = [int(r) for r in read_out(out)["busy_ranks"]]
    return IdleCpu("bare", per_rank, busy)


def idle_part(plan: Plan, failures: list[str]) -> list[IdleCpu]:
    """CPU of idle worker ranks, hpcpilot and the bare dispatcher."""
    results = []
    for system, measure in (("hpcpilot", idle_hpcpilot), ("bare", idle_bare)):
        try:
            results.append(measure(plan))
        except RunEndedError as exc:
            failed(failures, f"{system} idle run", exc)
    for r in results:
        print(
            f"  {r.system:8s} idle: "
            + " ".join(f"r{k}={v:.1%}" for k, v in r.per_rank.items())
            + f" busy={r.busy_ranks} window in busy period: {r.window_in_busy_period}",
            file=sys.stderr,
            flush=True,
        )
    return results


# --- report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def find(runs: list[Run], system: str, payload_s: float, batch: int | None = None) -> Run | None:
    """The run of ``system`` at that payload (and batch size)."""
    for run in runs:
        if run.system == system and run.payload_s == payload_s and batch in (None, run.batch):
            return run
    return None


def ratio(a: float, b: float) -> float:
    """``a / b``, 0 when ``b`` is 0."""
    return a / b if b else 0.0


def throughput_targets(h: Run, b: Run | None, p: Run | None) -> dict[str, bool]:
    """Issue 16's dispatch targets at one batch size; a target whose yardstick run is missing fails."""
    at_pool = p is not None and h.rate >= POOL_RATIO_TARGET * p.rate
    targets = {f"dispatch batch {h.batch}: hpcpilot >= pool": at_pool}
    if h.batch == BARE_SHARE_BATCH:
        name = f"dispatch batch {h.batch}: hpcpilot >= {BARE_SHARE_TARGET:.0%} of bare"
        targets[name] = b is not None and ratio(h.rate, b.rate) >= BARE_SHARE_TARGET
    return targets


def throughput_table(runs: list[Run]) -> tuple[list[str], dict[str, bool]]:
    """Markdown table of the throughput part, and issue 16's targets (`throughput_targets`).

    A row per batch size hpcpilot ran at; a missing yardstick run shows as "-".
    """
    lines = [
        "| batch | hpcpilot ranges/s | pool ranges/s | bare ranges/s | ranges done (h/p/b) "
        "| hpcpilot / pool | hpcpilot / bare | target | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---|:---:|",
    ]
    targets: dict[str, bool] = {}
    for batch in BATCHES:
        h, b, p = (find(runs, s, 0.0, batch) for s in SYSTEMS)
        if h is None:
            continue
        found = throughput_targets(h, b, p)
        targets.update(found)
        wanted = "pool" + (f", >= {BARE_SHARE_TARGET:.0%} of bare" if batch == BARE_SHARE_BATCH else "")
        of_pool = f"{ratio(h.rate, p.rate):.2f}" if p else "-"
        of_bare = f"{ratio(h.rate, b.rate):.1%}" if b else "-"
        lines.append(
            f"| {batch} | {h.rate:,.0f} | {rate_of(p)} | {rate_of(b)} "
            f"| {h.n_done:,}/{done_of(p)}/{done_of(b)} | {of_pool} | {of_bare} "
            f"| >= {wanted} | {verdict(all(found.values()))} |"
        )
    return lines, targets


def rate_of(run: Run | None) -> str:
    """A run's rate for a table ('-' when there is no run)."""
    return f"{run.rate:,.0f}" if run else "-"


def done_of(run: Run | None) -> str:
    """A run's ranges done for a table ('-' when there is no run)."""
    return f"{run.n_done:,}" if run else "-"


def percent(value: float | None) -> str:
    """A fraction as a percentage for a table ('-' when unknown)."""
    return "-" if value is None else f"{value:.1%}"


def utilisation_table(runs: list[Run]) -> tuple[list[str], dict[str, bool]]:
    """Markdown table of the utilisation part, and issue 16's targets (hpcpilot's).

    The targets are judged on ``summary.json``'s utilisation: the whole run from rank 0's start,
    the workers' start-up and the shutdown included. The journal window (first assignment to last
    result) and the launch-to-exit figure are shown beside it; bare and pool are for contrast.
    """
    lines = [
        "| payload | slots | ranges | hpcpilot, whole run (summary.json) | hpcpilot, launch to exit "
        "| hpcpilot, journal window | bare | pool | target | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|:---:|",
    ]
    targets = {}
    for payload_s in UTIL_PAYLOADS:
        h, b, p = (find(runs, s, payload_s) for s in SYSTEMS)
        if h is None:
            continue
        wanted = UTIL_TARGETS[payload_s]
        ok = h.summary_utilisation is not None and h.summary_utilisation >= wanted
        targets[f"utilisation {payload_s * 1000:.0f} ms, whole run, {h.workers} slots >= {wanted:.0%}"] = ok
        lines.append(
            f"| {payload_s * 1000:.0f} ms | {h.workers} | {h.n_planned:,} | {percent(h.summary_utilisation)} "
            f"| {percent(h.launch_utilisation)} | {h.utilisation:.1%} "
            f"| {percent(b.utilisation if b else None)} | {percent(p.utilisation if p else None)} "
            f"| >= {wanted:.0%} | {verdict(ok)} |"
        )
    return lines, targets


def idle_table(results: list[IdleCpu]) -> tuple[list[str], dict[str, bool]]:
    """Markdown table of the idle part, and its target (hpcpilot only; the bare one is for contrast)."""
    lines = [
        "| system | rank 0 | busy worker | idle workers: median | idle workers: max | < 5 % |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    targets = {}
    for r in results:
        busy = max((r.per_rank.get(b, 0.0) for b in r.busy_ranks), default=0.0)
        ok = r.idle_max < IDLE_TARGET
        mark = verdict(ok)
        if r.system == "hpcpilot":
            targets["idle worker CPU < 5% of a core"] = ok
            if r.window_in_busy_period is False:
                mark += " (window not inside the busy period: rerun)"
        else:
            mark = f"({mark})"
        lines.append(
            f"| {r.system} | {r.per_rank.get(0, 0.0):.1%} | {busy:.1%} "
            f"| {r.idle_median:.1%} | {r.idle_max:.1%} | {mark} |"
        )
    return lines, targets


def report(
    plan: Plan, runs: list[Run], idle: list[IdleCpu], failures: Sequence[str] = ()
) -> tuple[str, dict[str, bool]]:
    """The markdown report and every target's outcome (and the runs that ended early)."""
    title = f"## Dispatch benchmark: {plan.ranks} ranks ({plan.workers} workers)"
    util = plan.for_utilisation()
    if util.ranks != plan.ranks:
        title += f"; utilisation at {util.ranks} ranks ({util.workers} slots)"
    out: list[str] = [title, ""]
    targets: dict[str, bool] = {}
    sections = [
        ("Dispatch throughput, 0 ms payloads", throughput_table(runs)),
        ("Slot utilisation", utilisation_table(runs)),
        ("CPU of idle ranks (fraction of one core)", idle_table(idle)),
    ]
    for title, (lines, found) in sections:
        if len(lines) > 2:
            out += [f"### {title}", "", *lines, ""]
            targets.update(found)
    out += ["### Targets", ""] + [f"- {verdict(ok)}: {name}" for name, ok in targets.items()]
    if failures:
        out += ["", "### Runs that ended early (their rows are missing above)", ""]
        out += ["```", *failures, "```"]
    return "\n".join(out) + "\n", targets


def hpcpilot_source() -> str:
    """Where the ranks' ``python -m hpcpilot`` imports hpcpilot from (the current directory first)."""
    code = "import hpcpilot; print(hpcpilot.__file__)"
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def machine() -> dict[str, Any]:
    """Where the benchmark ran (the MPI library's version is asked without initialising MPI here)."""
    import mpi4py

    mpi4py.rc.initialize = mpi4py.rc.finalize = False  # no singleton MPI in this process (root, CI)
    from mpi4py import MPI

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mpi": MPI.Get_library_version().splitlines()[0].strip(),
        "hpcpilot": hpcpilot_source(),
    }


def run_parts(plan: Plan, parts: Sequence[str], failures: list[str]) -> tuple[list[Run], list[IdleCpu]]:
    """Run the chosen parts in order; runs that end early go to ``failures``."""
    runs: list[Run] = []
    idle: list[IdleCpu] = []
    if "throughput" in parts:
        runs += throughput_part(plan, failures)
    if "utilisation" in parts:
        runs += utilisation_part(plan, failures)
    if "idle" in parts:
        idle = idle_part(plan, failures)
    return runs, idle


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8, help="MPI ranks per run (default 8)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller workloads (under a minute)")
    size.add_argument(
        "--ci",
        action="store_true",
        help="CI's check that every kind of run works with this MPI (seconds; no utilisation part)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra hpcpilot setting for every hpcpilot run (repeatable; to try tunings)",
    )
    parser.add_argument(
        "--util-ranks",
        type=int,
        metavar="N",
        help=f"MPI ranks of the utilisation runs (default {UTIL_RANKS}, i.e. the targets' 15 slots; "
        "with --quick, --ranks)",
    )
    add_mpiexec_option(parser)
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes SECTION.KEY=VALUE")
    if args.ranks < 2 or (args.util_ranks is not None and args.util_ranks < 2):
        parser.error("--ranks and --util-ranks must be at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; exit 0, or 1 if a run ended early (targets are not enforced)."""
    args = parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    plan = make_plan(
        args.ranks, args.quick, settings, find_mpiexec(args.mpiexec), ci=args.ci, util_ranks=args.util_ranks
    )
    parts = [p for p in args.only if p != "utilisation"] if args.ci else args.only
    started, load_before = time.monotonic(), os.getloadavg()[0]
    failures: list[str] = []
    runs, idle = run_parts(plan, parts, failures)
    text, targets = report(plan, runs, idle, failures)
    load = {"before": load_before, "after": os.getloadavg()[0]}
    info = machine() | {"mpiexec": plan.mpiexec}
    print(
        text + f"\n(total bench time {time.monotonic() - started:.0f} s; 1-minute load average "
        f"{load['before']:.1f} before, {load['after']:.1f} after; hpcpilot from {info['hpcpilot']}; "
        f"launcher {plan.mpiexec}, {info['mpi']})"
    )
    if args.json:
        data = {
            "machine": info,
            "load_average": load,
            "plan": asdict(plan) | {"quick": args.quick, "ci": args.ci},
            "runs": [asdict(r) for r in runs],
            "idle": [asdict(r) | {"idle_max": r.idle_max, "idle_median": r.idle_median} for r in idle],
            "targets": targets,
            "failures": failures,
        }
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
