"""What the monitors cost: dispatch rate and payload CPU with and without them, and one ``observe``.

Usage::

    .venv/bin/python bench/monitoring.py [--ranks 3] [--ranges 400] [--loops 300000] [--repeat 2]

1. **Runs.** The same event-service job under ``mpiexec -n RANKS`` (``node.cores=1``: one slot per
   worker), one process per range (``bench/monitor_payload.py``: a fixed loop of CPU work; it writes
   its own CPU time into its output), with ``monitor.plugins=""`` (none), ``psutil`` every 1 s and
   ``psutil`` every 0.1 s; the configurations alternate, ``--repeat`` times each. Figures: ranges/s
   (journal: first ``assigned`` to last ``finished``), payload CPU per range (the outputs), pilot CPU
   per range (all CPU of the run's processes, from ``RUSAGE_CHILDREN``, minus the payloads'), each as
   a ratio to the run without monitors.
2. **One observe.** `PsutilMonitor.observe` over N running items of one ``sleep`` process each, with
   and without PSS, mean of repeated calls; and the PSS of one process read from ``smaps_rollup``
   against psutil's full ``smaps`` (``memory_full_info``).

Prints markdown tables (docs/performance.md, "Monitoring").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from _launch import add_mpiexec_option, find_mpiexec, launch_env, why_ended  # noqa: E402

from hpcpilot.config.schema import MonitorSettings  # noqa: E402
from hpcpilot.model.job import Job  # noqa: E402
from hpcpilot.monitor.base import NodeContext, Watched  # noqa: E402
from hpcpilot.monitor.psutil_monitor import PsutilMonitor  # noqa: E402
from hpcpilot.runtime.journal import plain  # noqa: E402

PAYLOAD = Path(__file__).resolve().parent / "monitor_payload.py"
PANDA_ID = 88
CONFIGS: dict[str, dict[str, object]] = {
    "none": {"monitor.plugins": ""},
    "1 s": {"monitor.period_s": 1.0},
    "0.1 s": {"monitor.period_s": 0.1},
}


def job(n_ranges: int, loops: int) -> dict[str, Any]:
    """An event-service job of ``n_ranges`` one-event ranges, each a monitor_payload.py process."""
    return {
        "PandaID": PANDA_ID,
        "taskID": 1,
        "eventService": "True",
        "transformation": sys.executable,
        "jobPars": f"{PAYLOAD} {{outputFile}} {loops}",
        "coreCount": 1,
        "nEventsPerInputFile": n_ranges,
        "outFiles": "out.dat,log.tgz",
        "logFile": "log.tgz",
    }


def run(args: argparse.Namespace, config: str) -> dict[str, float]:
    """One run; its rate, payload CPU and pilot CPU per range."""
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        workdir = Path(tmp)
        (workdir / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): job(args.ranges, args.loops)}))
        sets = {
            "node.cores": 1,
            "local.events_per_range": 1,
            "eventservice.mode": "per_range",
            "eventservice.merger": "none",
            "run.status_mode": "lines",
            **CONFIGS[config],
        }
        mpiexec = find_mpiexec(args.mpiexec)
        cmd = [mpiexec, "-n", str(args.ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", tmp]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, env=_env(tmp))
        if done.returncode != 0:
            output = done.stdout + done.stderr
            raise SystemExit(f"a run ended early: {why_ended(cmd, done.returncode, output)}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        total_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        records = [plain(json.loads(x)) for x in (workdir / "journal.jsonl").read_text().splitlines() if x]
        first = min(r["t"] for r in records if r["ev"] == "assigned")
        last = max(r.get("t_end", r["t"]) for r in records if r["ev"] == "finished")
        paths = [p for r in records if r["ev"] == "finished" for p in r["paths"]]
        assert len(paths) == args.ranges, f"{len(paths)} of {args.ranges} ranges finished"
        payload_cpu = sum(float(Path(p).read_text().split()[0]) for p in paths)
    return {
        "rate": len(paths) / (last - first),
        "payload_cpu": payload_cpu / len(paths),
        "pilot_cpu": (total_cpu - payload_cpu) / len(paths),
    }


def _env(tmp: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return launch_env({"PYTHONPATH": path, "TMPDIR": tmp})


def runs(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeat):
        for name in CONFIGS:
            results[name].append(run(args, name))
    base = {k: statistics.median(r[k] for r in results["none"]) for k in ("rate", "payload_cpu", "pilot_cpu")}
    print(
        f"\n{args.ranges} ranges of {args.loops} loops, mpiexec -n {args.ranks}, node.cores=1, "
        f"{args.repeat} runs each\n"
    )
    print(
        "| monitors | ranges/s | rate / none | payload CPU/range (ms) | / none "
        "| pilot CPU/range (ms) | / none | ranges/s of each run |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in base}
        each = ", ".join(f"{r['rate']:.1f}" for r in rs)
        print(
            f"| {name} | {med['rate']:.1f} | {med['rate'] / base['rate']:.3f} | "
            f"{med['payload_cpu'] * 1e3:.1f} | "
            f"{med['payload_cpu'] / base['payload_cpu']:.3f} | {med['pilot_cpu'] * 1e3:.2f} | "
            f"{med['pilot_cpu'] / base['pilot_cpu']:.3f} | {each} |"
        )


def observe_cost(counts: list[int], calls: int) -> None:
    print("\n| items (1 process each) | observe, RSS only (ms) | observe, with PSS (ms) |")
    print("|---:|---:|---:|")
    node = NodeContext(1, platform.node(), 2, Path(tempfile.gettempdir()))
    job = Job(panda_id=1, transformation="sleep", event_service=True)
    for n in counts:
        procs = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(n)]
        try:
            now = time.monotonic()
            items = [Watched(f"s{i}", job, (p.pid,), now, node.workdir) for i, p in enumerate(procs)]
            cells = []
            for pss in (False, True):
                monitor = PsutilMonitor(MonitorSettings(pss=pss, looping_s=0), node)
                monitor.observe(time.monotonic(), items)
                start = time.perf_counter()
                for _ in range(calls):
                    monitor.observe(time.monotonic(), items)
                cells.append((time.perf_counter() - start) / calls * 1e3)
            print(f"| {n} | {cells[0]:.2f} | {cells[1]:.2f} |")
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGKILL)  # the sessions started here
                p.wait()


def pss_cost(calls: int) -> None:
    """PSS of one process: ``smaps_rollup`` against summing the full ``smaps`` (older kernels)."""
    pid = os.getpid()
    timings = {}
    for name in ("smaps_rollup", "smaps"):
        start = time.perf_counter()
        for _ in range(calls):
            with open(f"/proc/{pid}/{name}") as handle:
                pss = sum(float(line.split()[1]) for line in handle if line.startswith("Pss:"))
        timings[name] = (time.perf_counter() - start) / calls * 1e6
    maps = len(psutil.Process().memory_maps(grouped=False))
    print(
        f"\nPSS of this Python process ({maps} mappings, {pss:.0f} kB): "
        f"smaps_rollup {timings['smaps_rollup']:.0f} µs, full smaps {timings['smaps']:.0f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--ranges", type=int, default=400)
    parser.add_argument("--loops", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=("runs", "observe"), default=["runs", "observe"])
    add_mpiexec_option(parser)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if "observe" in args.only:
        observe_cost([1, 16, 64, 256], calls=20)
        pss_cost(200)
    if "runs" in args.only:
        runs(args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
