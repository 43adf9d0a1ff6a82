"""The end of an allocation: ranges lost, idle slots at the end, and seconds from SIGTERM to exit.

Usage::

    .venv/bin/python bench/drain.py [--ranks 4] [--cores 2] [--mean 2.0] [--walltime 30]

An event-service job of many per-range payloads of varied length (``bench/drain_payload.py``: a
deterministic pseudo-random duration between 0.5 and 1.5 times ``--mean`` per range; it writes its
output atomically and logs its start and end) runs under ``mpiexec -n RANKS`` twice:

* ``walltime``: with ``--walltime`` (the pilot's own end-time drain: no work handed out that would not
  finish before ``end - exit margin``);
* ``sigterm``: without a walltime, SIGTERM to mpiexec (which forwards it to every rank) after
  ``--term-after`` seconds, as a batch system does at its limit.

Figures per scenario:

* ``lost``: ranges whose payload finished (output written, end logged) but that the journal does not
  hold as finished, plus journal entries without their output (target: 0);
* ``idle slot-s / slot``: from the moment the slots stop being all busy for good to the pilot's exit,
  the idle slot-seconds, per slot, in units of the mean payload (target <= 1);
* ``cut``: payloads killed at the end (their ranges reported failed, handed out again);
* ``exit``: for walltime, seconds left before the end when the pilot had exited; for sigterm, seconds
  from SIGTERM to exit (target <= 30 s).

Prints a markdown table with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _launch import add_mpiexec_option, find_mpiexec, launch_env, why_ended

from hpcpilot.runtime.journal import plain

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = Path(__file__).resolve().parent / "drain_payload.py"
PANDA_ID = 77


def job(n_ranges: int, mean_s: float) -> dict[str, Any]:
    """An event-service job of ``n_ranges`` one-event ranges, each a drain_payload.py process."""
    args = f"{PAYLOAD} {{eventRangeID}} {{startEvent}} {{outputFile}} {mean_s}"
    return {
        "PandaID": PANDA_ID,
        "taskID": 1,
        "eventService": "True",
        "transformation": sys.executable,
        "jobPars": args,
        "coreCount": 1,
        "nEventsPerInputFile": n_ranges,
        "outFiles": "out.dat,log.tgz",
        "logFile": "log.tgz",
    }


def run(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    """One run of one scenario; the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        workdir = Path(tmp)
        n = int(args.walltime * 4 * (args.ranks - 1) * args.cores / args.mean) + 50  # never runs out
        (workdir / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): job(n, args.mean)}))
        mpiexec = find_mpiexec(args.mpiexec)
        cmd = [mpiexec, "-n", str(args.ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", tmp]
        sets = {
            "node.cores": args.cores * max(args.ranks - 1, 1),  # the node's: each worker gets args.cores
            "local.events_per_range": 1,
            "eventservice.mode": "per_range",
            "eventservice.merger": "none",
            "batch.exit_margin_s": args.exit_margin,
            "payload.kill_grace_s": args.kill_grace,
            "run.status_mode": "lines",
        }
        if scenario == "walltime":
            cmd += ["--walltime", f"{args.walltime}s"]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
        env = launch_env({"PYTHONPATH": str(ROOT), "BENCH_DRAIN_LOG": str(workdir / "timings.log")})
        log = (workdir / "run.log").open("w")
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        term_at = None
        if scenario == "sigterm":
            time.sleep(args.term_after)
            term_at = time.time()
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=args.walltime * 4 + 120)
        exited = time.time()
        log.close()
        if not (workdir / "journal.jsonl").exists():
            output = (workdir / "run.log").read_text(errors="replace")
            raise SystemExit(f"the {scenario} run ended early: {why_ended(cmd, proc.returncode, output)}")
        figures = measure(workdir, args, exited)
        if term_at is not None:
            figures["exit"] = exited - term_at
        else:
            figures["exit"] = started + args.walltime - exited
        figures["scenario"], figures["returncode"] = scenario, proc.returncode
        figures["slots"] = (args.ranks - 1) * args.cores
        return figures


def measure(workdir: Path, args: argparse.Namespace, exited: float) -> dict[str, Any]:
    """Lost ranges, idle slot-seconds at the end and cut payloads, from the payloads' log and journal."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    timings = workdir / "timings.log"
    for line in timings.read_text().splitlines() if timings.exists() else []:
        kind, rid, stamp = line.split()
        (starts if kind == "start" else ends)[rid] = float(stamp)
    records = [plain(json.loads(x)) for x in (workdir / "journal.jsonl").read_text().splitlines() if x]
    finished = {
        rid: path
        for r in records
        if r["ev"] == "finished"
        for rid, path in zip(r["ids"], r["paths"], strict=True)
    }
    written = {rid for rid in ends if any(workdir.glob(f"{PANDA_ID}/out.dat.{rid}"))}
    lost = len(written - set(finished)) + sum(1 for p in finished.values() if not p or not Path(p).exists())
    slots = (args.ranks - 1) * args.cores
    intervals = [(starts[rid], ends.get(rid, exited)) for rid in starts]
    return {
        "lost": lost,
        "finished": len(finished),
        "cut": len(set(starts) - set(ends)),
        "idle_per_slot": idle_at_end(intervals, slots, exited) / slots / args.mean,
    }


def idle_at_end(intervals: list[tuple[float, float]], slots: int, exited: float) -> float:
    """Idle slot-seconds from the last moment all ``slots`` were busy to ``exited``."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    busy, last_full, series = 0, events[0][0] if events else exited, []
    for t, step in events:
        busy += step
        series.append((t, busy))
        if busy >= slots:
            last_full = t
    idle, prev_t, prev_busy = 0.0, last_full, slots
    for t, b in series:
        if t <= last_full:
            prev_busy = b
            continue
        idle += (slots - min(prev_busy, slots)) * (t - prev_t)
        prev_t, prev_busy = t, b
    return idle + (slots - min(prev_busy, slots)) * (exited - prev_t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2, help="payload slots per worker rank")
    parser.add_argument("--mean", type=float, default=2.0, help="mean payload seconds")
    parser.add_argument("--walltime", type=float, default=30.0, help="walltime of the walltime scenario")
    parser.add_argument("--exit-margin", type=float, default=5.0, help="batch.exit_margin_s")
    parser.add_argument("--kill-grace", type=float, default=2.0, help="payload.kill_grace_s")
    parser.add_argument("--term-after", type=float, default=12.0, help="SIGTERM after this many seconds")
    add_mpiexec_option(parser)
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.ranks} ranks x {args.cores} slots, payloads {0.5 * args.mean:g}-{1.5 * args.mean:g} s\n")
    print("| scenario | finished | lost | cut | idle slot-s at end / slot (mean payloads) | exit | result |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for scenario in ("walltime", "sigterm"):
        f = run(args, scenario)
        if scenario == "walltime":
            exit_text = f"{f['exit']:.1f} s before the end"
            passed = f["lost"] == 0 and f["idle_per_slot"] <= 1.0 and f["exit"] > 0
        else:
            exit_text = f"{f['exit']:.1f} s after SIGTERM"
            passed = f["lost"] == 0 and f["exit"] <= 30
        ok &= passed
        print(
            f"| {scenario} | {f['finished']} | {f['lost']} | {f['cut']} | {f['idle_per_slot']:.2f} "
            f"| {exit_text} | {'PASS' if passed else 'FAIL'} (rc {f['returncode']}) |"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
