"""Range updates per second through the communicators (issue 3's figure).

Usage::

    .venv/bin/python bench/comm_updates.py [--ranks 4] [--ranges 20000] [--only isolated run]

Parts:

* ``isolated``: the ``harvester`` communicator alone, in this process: ``--isolated-n`` finished
  ranges with outputs are reported in batches of ``--batch`` (one ``report_ranges`` and one write of
  ``event_status.dump.json`` per batch, as the coordinator's flush does), while a stand-in Harvester
  takes the file every ``--consume-every`` writes (the worst case, never, is run too). Shows what the
  file protocol itself sustains.
* ``panda``: the same whole run with the ``panda`` communicator against the fake PanDA server
  (``tests/fakes/panda_server.py``, a real HTTP server on 127.0.0.1 in this process), every range
  served by ``acquire_event_ranges``; rate = ranges the server recorded ``finished`` per second of
  dispatching, counted once each, and the number of ``update_event_ranges`` calls.
* ``run``: the whole pilot under ``mpiexec -n RANKS`` with the ``harvester`` communicator, an
  event-service job of ``--ranges`` one-event ranges of the in-process ``sleep`` payload (0 s), all
  fed before the start (as Harvester pre-fetches), a stand-in Harvester thread that answers range
  requests with the empty list and takes the dump file every second. The rate is ranges reported
  (declared in consumed dump files) per second of dispatching (journal: first ``assigned`` to last
  ``finished``); every range must be declared exactly once.

Prints a markdown table with PASS/FAIL against the target (>= 1,000 range updates/s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dispatch import PANDA_ID, sleep_job

from hpcpilot.comm.harvester import HarvesterCommunicator
from hpcpilot.config.schema import HarvesterSettings, Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile, RangeResult

TARGET = 1000.0
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")


def isolated(n: int, batch: int, consume_every: int) -> dict[str, Any]:
    """Report ``n`` ranges in batches through a HarvesterCommunicator; time it."""
    with tempfile.TemporaryDirectory(prefix="bench-comm-") as tmp:
        ap = Path(tmp)
        job_dict = {
            "PandaID": PANDA_ID,
            "eventService": "True",
            "outFiles": "HITS.root,log.tgz",
            "logFile": "log.tgz",
        }
        (ap / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): job_dict}))
        settings = Settings(harvester=HarvesterSettings(report_interval_s=0.0, heartbeat_s=0.0, poll_s=3600))
        comm = HarvesterCommunicator(settings, WorkLayout(ap))
        (job,) = comm.fetch_jobs(1).jobs
        out_dir = ap / str(PANDA_ID)
        results = [
            RangeResult(
                PANDA_ID,
                f"1-{PANDA_ID}-1-{i}-1",
                RangeState.FINISHED,
                OutputFile(str(out_dir / f"HITS.root.1-{PANDA_ID}-1-{i}-1"), 20000 + i, f"{i:08x}"),
                n_events=1,
            )
            for i in range(1, n + 1)
        ]
        dump = ap / "event_status.dump.json"
        consumed = 0
        started = time.perf_counter()
        for k, first in enumerate(range(0, n, batch), start=1):
            comm.report_ranges(job, results[first : first + batch], [])
            comm.poll()
            if consume_every and k % consume_every == 0:
                read = dump.with_name(f"{dump.name}.read.{k}")
                os.rename(dump, read)
                consumed += len(json.loads(read.read_text())[str(PANDA_ID)])
                read.unlink()
        elapsed = time.perf_counter() - started
        if dump.exists():
            consumed += len(json.loads(dump.read_text())[str(PANDA_ID)])
    assert consumed == n, f"{consumed} declared, {n} reported"
    return {
        "part": "isolated",
        "consume_every": consume_every or "never",
        "updates": n,
        "writes": comm.dump_writes,
        "seconds": elapsed,
        "rate": n / elapsed,
    }


class StandInHarvester(threading.Thread):
    """Answers range requests with the end of the feed and takes the dump file every ``period_s``."""

    def __init__(self, ap: Path, period_s: float) -> None:
        super().__init__(daemon=True)
        self.ap, self.period_s = ap, period_s
        self.declared: list[str] = []
        self.files = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            self.look()
        self.look()

    def look(self) -> None:
        request = self.ap / "worker_requestevents.json"
        if request.exists():
            (self.ap / "JobsEventRanges.json").write_text(json.dumps({str(PANDA_ID): []}))
            request.unlink()
        dump = self.ap / "event_status.dump.json"
        read = dump.with_name(dump.name + ".read")
        try:
            os.rename(dump, read)
        except FileNotFoundError:
            return
        entries = json.loads(read.read_text())[str(PANDA_ID)]
        self.declared += [e["eventRangeID"] for e in entries if e.get("eventStatus") == "finished"]
        self.files += 1
        read.unlink()


def one_event_ranges(n: int) -> list[dict[str, Any]]:
    """``n`` one-event ranges of `sleep_job`, as served."""
    return [
        {
            "eventRangeID": f"1-{PANDA_ID}-1-{i}-1",
            "startEvent": i,
            "lastEvent": i,
            "LFN": "in",
            "GUID": "0f0f0f0f-0000-4000-8000-000000000001",
            "scope": "s",
        }
        for i in range(1, n + 1)
    ]


def dispatch_seconds(workdir: Path) -> float:
    """From the journal: first ``assigned`` to last ``finished`` record."""
    records = [json.loads(line) for line in (workdir / "journal.jsonl").read_text().splitlines() if line]
    t0 = min(r["t"] for r in records if r["ev"] == "assigned")
    t1 = max(r.get("t_end", r["t"]) for r in records if r["ev"] == "finished")
    return float(t1 - t0)


def full_run(ranks: int, n: int) -> dict[str, Any]:
    """The whole pilot with the harvester communicator at ``ranks`` MPI ranks."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        ap = Path(tmp)
        job_dict = sleep_job(n, 0.0)
        (ap / "HPCJobs.json").write_text(json.dumps({str(PANDA_ID): job_dict}))
        ranges = one_event_ranges(n)
        (ap / "JobsEventRanges.json").write_text(json.dumps({str(PANDA_ID): ranges}))
        harvester = StandInHarvester(ap, 1.0)
        harvester.start()
        sets = {
            "run.communicator": "harvester",
            "eventservice.mode": "sleep",
            "node.cores": "1",
            "run.status_interval_s": "1000",
            "harvester.poll_s": "0.2",
            "harvester.report_interval_s": "1",
        }
        argv = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", str(ap)]
        argv += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        harvester.stop.set()
        harvester.join()
        if proc.returncode != 0:
            raise RuntimeError(f"pilot exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        seconds = dispatch_seconds(ap)
        log_line = next(
            (line for line in proc.stderr.splitlines() if "entries in" in line and "write(s)" in line), ""
        )
    declared = harvester.declared
    assert len(declared) == n and len(set(declared)) == n, f"{len(declared)} declared for {n} ranges"
    return {
        "part": f"run, {ranks} ranks",
        "consume_every": "1 s",
        "updates": n,
        "writes": log_line.split(" write(s)")[0].rsplit(" ", 1)[-1] if log_line else "?",
        "seconds": seconds,
        "rate": n / seconds,
    }


def panda_run(ranks: int, n: int) -> dict[str, Any]:
    """The whole pilot with the panda communicator against the fake PanDA server."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fakes.panda_server import FakePandaServer

    job_dict = {**sleep_job(n, 0.0), "prodSourceLabel": "managed"}
    ranges = one_event_ranges(n)
    fake_server = FakePandaServer(range_update_bug=False)  # update_event_ranges as intended
    with tempfile.TemporaryDirectory(prefix="bench-panda-") as tmp, fake_server as fake:
        ap = Path(tmp)
        fake.add_job(job_dict, ranges)
        sets = {
            "run.communicator": "panda",
            "panda.url": fake.url,
            "panda.site_name": "BENCH",
            "panda.heartbeat_s": "600",
            "run.max_jobs": "1",
            "eventservice.mode": "sleep",
            "node.cores": "1",
            "run.status_interval_s": "1000",
        }
        argv = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", str(ap)]
        argv += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pilot exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        seconds = dispatch_seconds(ap)
        finished = fake.finished_ranges()
        calls = len(fake.calls_of("update_event_ranges"))
    assert len(finished) == n and set(finished.values()) == {1}, f"{len(finished)} of {n} reported once"
    return {
        "part": f"panda run, {ranks} ranks",
        "consume_every": "(HTTP)",
        "updates": n,
        "writes": f"{calls} calls",
        "seconds": seconds,
        "rate": n / seconds,
    }


def main() -> int:
    """Run the parts and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--ranges", type=int, default=20000)
    parser.add_argument("--isolated-n", type=int, default=200000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--consume-every", type=int, default=30)
    parts = ("isolated", "run", "panda")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts)
    args = parser.parse_args()
    rows = []
    if "isolated" in args.only:
        rows.append(isolated(args.isolated_n, args.batch, args.consume_every))
        rows.append(isolated(args.isolated_n, args.batch, 0))
    if "run" in args.only:
        rows.append(full_run(args.ranks, args.ranges))
    if "panda" in args.only:
        rows.append(panda_run(args.ranks, args.ranges))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        "\n| part | Harvester takes the file | range updates | dump writes | seconds | updates/s | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ok = "PASS" if row["rate"] >= TARGET else "FAIL"
        print(
            f"| {row['part']} | {row['consume_every']} | {row['updates']} | {row['writes']} | "
            f"{row['seconds']:.2f} | {row['rate']:,.0f} | {ok} |"
        )
    return 0 if all(r["rate"] >= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
