"""What a worker rank costs to start: its imports and plugin look-ups, and launch to first assignment.

Usage::

    .venv/bin/python bench/worker_start.py [--against DIR] [--rounds 5] [--ranks 8] [--only PART]

``--against DIR`` names a second source tree of hpcpilot (for instance main's:
``git archive main | tar -x -C /tmp/main-src``); both trees run with this virtualenv's Python (the tree
comes first on ``PYTHONPATH``), alternately, round after round, so that both see the same load. The
figures are medians; the ratio is ``DIR / this tree``.

Parts:

* ``imports``: a fresh interpreter imports what a worker rank imports (``hpcpilot.cli``,
  ``hpcpilot.pilot``) and loads the plugins a worker loads by name (the ``streaming`` payload, the
  ``psutil`` monitor), as a worker does it: from rank 0's entry-point table where the tree has one
  (`hpcpilot.plugins.use_entry_point_table`), else from the installed metadata. Reports the time of
  that, in the process (``time.perf_counter``), the modules it ends up with, and which heavy ones.
* ``launch``: ``mpiexec -n RANKS python -m hpcpilot run`` of a job of 0.2 s ``sleep`` ranges: from just
  before ``mpiexec`` starts to the journal's first ``assigned`` record, and to the first ``assigned``
  record of the last worker rank to get one (every rank has started by then).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MPIEXEC = os.environ.get("MPIEXEC") or str(Path(sys.executable).parent / "mpiexec")
HEAVY = ("numpy", "h5py", "yaml", "importlib.metadata", "mpi4py", "hpcpilot.comm")

# run in a fresh interpreter with PYTHONPATH=<tree>; argv[1]: rank 0's entry-point table (JSON)
WORKER = """\
import sys, time
t0 = time.perf_counter()
HEAVY = HEAVY_NAMES
import json
import hpcpilot.cli, hpcpilot.pilot
from hpcpilot import plugins
if hasattr(plugins, "use_entry_point_table"):
    plugins.use_entry_point_table(json.loads(sys.argv[1]))
from hpcpilot.monitor.base import Monitor
from hpcpilot.payload.base import SlotRunner
plugins.load_plugin("payloads", "streaming", SlotRunner)
plugins.load_plugin("monitors", "psutil", Monitor)
elapsed = time.perf_counter() - t0
heavy = [m for m in HEAVY if m in sys.modules]
print(json.dumps({"s": elapsed, "modules": len(sys.modules), "heavy": heavy, "file": hpcpilot.__file__}))
"""


def tree_env(tree: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run of ``tree``'s code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH", "")]))
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.pop("HPCPILOT_CONFIG", None)
    env.update(extra or {})
    return env


def entry_point_table() -> str:
    """Rank 0's table, read the way this tree's rank 0 reads it (JSON)."""
    from hpcpilot.plugins import entry_point_table as read

    return json.dumps(read())


def one_import(tree: Path, table: str) -> dict[str, Any]:
    """One fresh worker interpreter of ``tree``; its figures, and its whole life as seen from outside."""
    start = time.perf_counter()
    code = WORKER.replace("HEAVY_NAMES", repr(HEAVY))
    # cwd: ``-c`` and ``-m`` put it first on sys.path
    out = subprocess.run(
        [PYTHON, "-c", code, table], capture_output=True, text=True, check=True, env=tree_env(tree), cwd=tree
    ).stdout
    result: dict[str, Any] = json.loads(out)
    result["process_s"] = time.perf_counter() - start
    if not result["file"].startswith(str(tree)):
        raise SystemExit(f"{tree}: imported hpcpilot from {result['file']}")
    return result


def sleep_job(n: int, payload_s: float) -> dict[str, Any]:
    """An event-service job of ``n`` one-event ranges of ``sleep`` payloads (as bench/dispatch.py)."""
    return {
        "PandaID": 4242,
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


def one_launch(tree: Path, ranks: int, scratch: Path) -> dict[str, float]:
    """One ``mpiexec`` run of ``tree``: seconds from launch to the first assignment and to the last rank's."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    # 0.2 s ranges, 4 per worker: every worker gets some in its first request (3 with the prefetch)
    (work / "HPCJobs.json").write_text(json.dumps({"4242": sleep_job(4 * ranks, 0.2)}))
    sets = {
        "eventservice.mode": "sleep",
        "node.cores": "1",
        "local.events_per_range": "1",
        "run.status_interval_s": "1000",
    }
    argv = [MPIEXEC, "-n", str(ranks), PYTHON, "-m", "hpcpilot", "run", "--workdir", str(work)]
    argv += [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    start = time.time()
    env = tree_env(tree, {"TMPDIR": str(scratch)})
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the run failed ({done.returncode}): {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (work / "journal.jsonl").read_text().splitlines() if line]
    first: dict[int, float] = {}
    for r in records:
        if r["ev"] == "assigned":
            first.setdefault(int(r["rank"]), float(r["t"]))
    if len(first) < ranks - 1:
        raise SystemExit(f"{tree}: only {len(first)} of {ranks - 1} workers got work")
    return {"first_s": min(first.values()) - start, "all_s": max(first.values()) - start}


def median(rows: list[dict[str, Any]], key: str) -> float:
    """The median of one figure over the rounds."""
    return statistics.median(float(r[key]) for r in rows)


def main() -> int:
    """Run the parts; print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="another hpcpilot source tree to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--only", choices=("imports", "launch"))
    args = parser.parse_args()
    trees = {"this tree": REPO}
    if args.against is not None:
        trees["--against"] = args.against.resolve()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    if args.only in (None, "imports"):
        table = entry_point_table()
        imports: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                imports[name].append(one_import(tree, table))
        print(f"\n### A worker's imports and plugin look-ups (median of {args.rounds})\n")
        print("| tree | in process | whole interpreter | modules | heavy modules |")
        print("|---|---:|---:|---:|---|")
        for name, rows in imports.items():
            heavy = ", ".join(rows[-1]["heavy"]) or "none"
            print(
                f"| {name} | {1e3 * median(rows, 's'):.0f} ms | {1e3 * median(rows, 'process_s'):.0f} ms "
                f"| {median(rows, 'modules'):.0f} | {heavy} |"
            )
        if args.against is not None:
            ratio = median(imports["--against"], "s") / median(imports["this tree"], "s")
            print(f"\nin-process time, --against / this tree: {ratio:.2f}")
    if args.only in (None, "launch"):
        launches: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        with tempfile.TemporaryDirectory(prefix="hpcpilot-worker-start-") as scratch:
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    launches[name].append(one_launch(tree, args.ranks, Path(scratch)))
        print(f"\n### Launch to first assignment, {args.ranks} ranks (median of {args.rounds})\n")
        print("| tree | to the first assignment | to the last worker's first |")
        print("|---|---:|---:|")
        for name, rows in launches.items():
            print(f"| {name} | {median(rows, 'first_s'):.2f} s | {median(rows, 'all_s'):.2f} s |")
        if args.against is not None:
            ratio = median(launches["--against"], "all_s") / median(launches["this tree"], "all_s")
            print(f"\nlaunch to the last worker's first assignment, --against / this tree: {ratio:.2f}")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
