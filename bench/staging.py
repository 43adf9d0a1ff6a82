"""Async stage-out benchmark: does staging out on rank 0 slow the dispatch of event ranges?

Usage::

    .venv/bin/python bench/staging.py [--ranks 3] [--ranges 20000] [--files 8] [--mb 256] [--repeat 2]

Two runs of the same workload under ``mpiexec -n RANKS`` (the ``mpiexec`` next to ``sys.executable``):
an event-service job of RANGES one-event ranges of the in-process ``sleep`` payload at 0 s (so the run
is bound by dispatch alone), and FILES plain jobs that each "produce" an output of MB megabytes (a hard
link to one prepared file, so they end at once). In the ``off`` run outputs stay in the job directory;
in the ``on`` run they are staged out with ``cp`` to another directory (``data.stageout_destination``),
each copy verified by adler32, in rank 0's background pool (``data.async_workers``) while ranges are
dispatched. In the ``beside`` run another process makes the same copies and checksums meanwhile, so
the machine is as busy as in ``on``. The figure is the range rate of ``on`` over ``beside`` (target: at
least 0.8): what doing the stage-out inside rank 0 costs dispatch beyond the load of the copies
themselves; ``on`` over ``off`` is printed too, with the seconds the stage-out took, which a
synchronous stage-out would have taken from dispatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _launch import add_mpiexec_option, find_mpiexec, launch_env, why_ended

from hpcpilot.runtime.journal import plain

PYTHON = sys.executable
ES_ID = 9001


def jobs(n_ranges: int, n_files: int, big: Path) -> list[dict[str, Any]]:
    """The event-service job and the plain jobs whose outputs are staged out."""
    es = {
        "PandaID": ES_ID,
        "transformation": "sleep",
        "jobPars": "0",
        "eventService": "True",
        "nEventsPerInputFile": n_ranges,
        "outFiles": "es.dat",
    }
    plain = [
        {
            "PandaID": 9100 + i,
            "transformation": "ln",
            "jobPars": f"{big} out{i}.dat",
            "outFiles": f"out{i}.dat",
            "scopeOut": "bench",
        }
        for i in range(n_files)
    ]
    return [*plain, es]


#: The same copies and checksums as the stage-out, in a process of their own beside the pilot.
COPY_BESIDE = """
import os, shutil, sys
from pathlib import Path
from hpcpilot.data.checksums import adler32_of_file
os.setpriority(os.PRIO_PROCESS, 0, 10)
big, dest, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
dest.mkdir(parents=True)
for i in range(n):
    adler32_of_file(big)
    shutil.copyfile(big, dest / f"out{i}.dat")
    adler32_of_file(dest / f"out{i}.dat")
"""


def run(
    workdir: Path,
    n_ranges: int,
    n_files: int,
    big: Path,
    ranks: int,
    dest: Path | None,
    beside: Path | None = None,
    mpiexec: str = "mpiexec",
) -> dict[str, float]:
    """One run; returns the range rate and the stage-out window.

    ``dest``: stage out there. ``beside``: copy the same files there from a separate process meanwhile.
    """
    workdir.mkdir(parents=True)
    (workdir / "HPCJobs.json").write_text(
        json.dumps({str(j["PandaID"]): j for j in jobs(n_ranges, n_files, big)})
    )
    settings = {
        "eventservice.mode": "sleep",
        "eventservice.merger": "none",
        "local.events_per_range": "1",
        "run.status_interval_s": "1000",
        "parallel.batch_size": "64",
        "eventservice.prefetch_per_slot": "64",
        "node.cores": str(2 * max(ranks - 1, 1)),  # the node's cores: two slots per worker
    }
    if dest is not None:
        settings["data.stageout_destination"] = f"{dest}/{{scope}}/{{lfn}}"
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    argv = [mpiexec, "-n", str(ranks), PYTHON, "-m", "hpcpilot", "run", "--workdir", str(workdir), *sets]
    copier = None
    if beside is not None:
        copy_argv = [PYTHON, "-c", COPY_BESIDE, str(big), str(beside), str(n_files)]
        copier = subprocess.Popen(copy_argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, env=launch_env())
    if copier is not None:
        copier.wait(timeout=600)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        raise SystemExit(f"a run ended early: {why_ended(argv, done.returncode, output)}")
    records = [
        plain(json.loads(line)) for line in (workdir / "journal.jsonl").read_text().splitlines() if line
    ]
    assigned = [r["t"] for r in records if r["ev"] == "assigned"]
    finished = [r.get("t_end", r["t"]) for r in records if r["ev"] == "finished"]
    n_done = sum(len(r["ids"]) for r in records if r["ev"] == "finished")
    start = min(assigned)
    wall = max(finished) - start
    plain_done = [
        r["t"] for r in records if r["ev"] == "job" and r.get("job") != ES_ID and r["state"] == "finished"
    ]
    if dest is not None:
        copies = list(dest.rglob("out*.dat"))
        assert len(copies) == n_files, f"{len(copies)} of {n_files} outputs staged out"
    return {
        "rate": n_done / wall,
        "wall_s": wall,
        "plain_done_s": max(plain_done) - start if plain_done else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both variants ``--repeat`` times, interleaved, and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--ranges", type=int, default=20000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    add_mpiexec_option(parser)
    args = parser.parse_args(argv)
    mpiexec = find_mpiexec(args.mpiexec)
    results: dict[str, list[dict[str, float]]] = {"off": [], "beside": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="hpcpilot-bench-staging-") as tmp:
        root = Path(tmp)
        big = root / "big.dat"
        with big.open("wb") as handle:
            block = os.urandom(1 << 20)
            for _ in range(args.mb):
                handle.write(block)
        for i in range(args.repeat):
            for variant, runs_of in results.items():
                dest = root / f"dest-{variant}-{i}"
                work = root / f"work-{variant}-{i}"
                staged = dest if variant == "on" else None
                beside = dest if variant == "beside" else None
                runs_of.append(run(work, args.ranges, args.files, big, args.ranks, staged, beside, mpiexec))
                shutil.rmtree(work)
                shutil.rmtree(dest, ignore_errors=True)
    rate = {v: statistics.median(r["rate"] for r in results[v]) for v in results}
    window = statistics.median(r["plain_done_s"] for r in results["on"])
    runs = {v: ", ".join(f"{r['rate']:,.0f}" for r in results[v]) for v in results}
    print(f"{args.ranges} ranges of 0 s, {args.files} outputs of {args.mb} MB, {args.ranks} ranks\n")
    print("| stage-out | ranges/s (median) | runs |")
    print("|---|---|---|")
    print(f"| none | {rate['off']:,.0f} | {runs['off']} |")
    print(f"| the same copies in another process, at nice 10 | {rate['beside']:,.0f} | {runs['beside']} |")
    print(f"| by rank 0 in the background | {rate['on']:,.0f} | {runs['on']} |")
    print(f"\nplain jobs reported (stage-out done) {window:.1f} s after the first range was handed out")
    ratio = rate["on"] / rate["beside"]
    print(
        f"rate, stage-out by rank 0 / the same copies beside it: {ratio:.2f} "
        f"({'PASS' if ratio >= 0.8 else 'FAIL'}, target >= 0.80)"
    )
    print(f"rate, stage-out by rank 0 / no stage-out at all: {rate['on'] / rate['off']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
