"""Range updates per second through the communicators (issue 3's figure).

Usage::

    .venv/bin/python bench/comm_updates.py [--ranks 4] [--ranges 20000] [--only isolated run]
    .venv/bin/python bench/comm_updates.py --only client [--calls 300] [--rounds 5]

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

* ``client``: calls per second of the PanDA HTTP client alone (issue 14), the former urllib client
  (``bench/_urllib_client.py``: a new connection and TLS handshake per call) against the current one
  (``comm/http.py``: pooled keep-alive connections), in this process, one after the other in
  ``--rounds`` alternating rounds of ``--calls`` ``acquire_jobs`` calls (v1, gzipped JSON, an empty
  queue), against the fake PanDA server run as a separate process on 127.0.0.1: HTTPS with an RSA-2048
  and with an EC P-256 server certificate, each without and with an X.509 proxy as client certificate
  (the server then asks for it and checks it), and plain http. The rate of each client is the median
  of its rounds; the target is the new client at >= 3x the old one's calls/s over TLS.

Prints a markdown table with PASS/FAIL against the target (>= 1,000 range updates/s; for ``client``
>= 3x the old client's calls/s over TLS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _launch import add_mpiexec_option, find_mpiexec, launch_env, why_ended
from dispatch import PANDA_ID, sleep_job

from hpcpilot.comm.harvester import HarvesterCommunicator
from hpcpilot.config.schema import HarvesterSettings, Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile, RangeResult

TARGET = 1000.0
CLIENT_TARGET = 3.0  # new client calls/s / old client calls/s, over TLS


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


def full_run(ranks: int, n: int, mpiexec: str) -> dict[str, Any]:
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
        argv = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", str(ap)]
        argv += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=600, check=False, env=launch_env()
        )
        harvester.stop.set()
        harvester.join()
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            raise SystemExit(f"the run ended early: {why_ended(argv, proc.returncode, output)}")
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


def panda_run(ranks: int, n: int, mpiexec: str) -> dict[str, Any]:
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
        argv = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcpilot", "run", "--workdir", str(ap)]
        argv += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=600, check=False, env=launch_env()
        )
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            raise SystemExit(f"the run ended early: {why_ended(argv, proc.returncode, output)}")
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


def client_rates(calls: int, rounds: int, rtt_ms: float) -> list[dict[str, Any]]:
    """Calls/s of the old (urllib) and the new (requests) PanDA client against the fake server."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from _urllib_client import UrllibClient

    from hpcpilot.comm import panda_api
    from hpcpilot.comm.http import HttpClient
    from hpcpilot.config.schema import PandaSettings
    from tests.fakes import certs

    request = panda_api.acquire_jobs(panda_api.Api.V1, site_name="BENCH", n_jobs=1, node="n").encode()

    def parse(reply: Any) -> object:
        return panda_api.parse_acquire_jobs(panda_api.Api.V1, json.loads(reply.body))

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        d = Path(tmp)
        setups: list[tuple[str, str | None, bool]] = [
            (f"https {kind.upper()}{', X.509 proxy' if proxy else ''}", kind, proxy)
            for kind in certs.KINDS
            for proxy in (False, True)
        ]
        setups.append(("plain http", None, False))
        for name, kind, proxy in setups:
            argv = [sys.executable, "-m", "tests.fakes.panda_server"]
            options: dict[str, Any] = {"timeout_s": 10.0, "retries": 1}
            if kind is not None:
                ca = certs.make_ca(d, f"ca-{kind}", kind)
                server = certs.issue(ca, d, f"server-{kind}", kind)
                argv += ["--tls", str(server.cert), str(server.key)]
                options["ca_path"] = str(ca.cert)
                if proxy:
                    argv += ["--client-ca", str(ca.cert)]
                    pilot = certs.issue(ca, d, f"pilot-{kind}", kind, client=True)
                    options["proxy"] = str(pilot.combined(d / f"x509up-{kind}"))
            fake = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=root)
            relay: subprocess.Popen[str] | None = None
            try:
                assert fake.stdout is not None
                url = fake.stdout.readline().split()[-1]
                if rtt_ms:  # a relay in front of the fake: the network's round trips
                    port = url.rsplit(":", 1)[1]
                    relay_argv = [
                        sys.executable,
                        str(root / "bench" / "_latency_relay.py"),
                        port,
                        str(rtt_ms),
                    ]
                    relay = subprocess.Popen(relay_argv, stdout=subprocess.PIPE, text=True)
                    assert relay.stdout is not None
                    url = url.rsplit(":", 1)[0] + ":" + relay.stdout.readline().split()[-1]
                settings = PandaSettings(url=url, **options)
                clients = {"old": UrllibClient(settings, {}), "new": HttpClient(settings, {})}
                rates: dict[str, list[float]] = {"old": [], "new": []}
                for client in clients.values():  # warm up: imports, first connection
                    client.call(request, parse)
                for _ in range(rounds):
                    for which, client in clients.items():
                        started = time.perf_counter()
                        for _ in range(calls):
                            client.call(request, parse)
                        rates[which].append(calls / (time.perf_counter() - started))
            finally:
                if relay is not None:
                    relay.terminate()
                    relay.wait(timeout=30)
                fake.terminate()
                out, _ = fake.communicate(timeout=30)
            connections = out.strip().rsplit(" ", 1)[-1]
            old, new = statistics.median(rates["old"]), statistics.median(rates["new"])
            rows.append(
                {
                    "setup": f"{name}, RTT {rtt_ms:g} ms" if rtt_ms else name,
                    "tls": kind is not None,
                    "old": old,
                    "new": new,
                    "ratio": new / old,
                    "calls": 2 * (rounds * calls + 1),
                    "connections": connections,
                    "spread": (
                        f"{min(rates['old']):,.0f}-{max(rates['old']):,.0f} / "
                        f"{min(rates['new']):,.0f}-{max(rates['new']):,.0f}"
                    ),
                }
            )
    return rows


def print_client_rows(rows: list[dict[str, Any]]) -> bool:
    """The ``client`` table; whether every TLS row meets the target."""
    print(
        "\n| setup | old calls/s | new calls/s | new/old | target | rounds (old / new, min-max) "
        "| calls / TCP connections at the server |"
    )
    print("|---|---|---|---|---|---|---|")
    ok = True
    for row in rows:
        verdict = "n/a (no handshake)"
        if row["tls"]:
            verdict = "PASS" if row["ratio"] >= CLIENT_TARGET else "FAIL"
            ok = ok and row["ratio"] >= CLIENT_TARGET
        print(
            f"| {row['setup']} | {row['old']:,.0f} | {row['new']:,.0f} | {row['ratio']:.2f}x | {verdict} "
            f"| {row['spread']} | {row['calls']} / {row['connections']} |"
        )
    return ok


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
    parser.add_argument("--calls", type=int, default=300, help="client: calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="client: rounds per client")
    parser.add_argument(
        "--rtt-ms", type=float, default=0.0, help="client: a round trip this long between client and server"
    )
    parts = ("isolated", "run", "panda", "client")
    # client: only when asked for (make bench runs it on its own line, its verdict does not stop make)
    parser.add_argument("--only", nargs="*", choices=parts, default=parts[:3])
    add_mpiexec_option(parser)
    args = parser.parse_args()
    rows = []
    client_ok = True
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if "client" in args.only:
        load = os.getloadavg()
        client_rows = client_rates(args.calls, args.rounds, args.rtt_ms)
        print(f"load average before the client part: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        client_ok = print_client_rows(client_rows)
    if "isolated" in args.only:
        rows.append(isolated(args.isolated_n, args.batch, args.consume_every))
        rows.append(isolated(args.isolated_n, args.batch, 0))
    if "run" in args.only:
        rows.append(full_run(args.ranks, args.ranges, find_mpiexec(args.mpiexec)))
    if "panda" in args.only:
        rows.append(panda_run(args.ranks, args.ranges, find_mpiexec(args.mpiexec)))
    if not rows:
        return 0 if client_ok else 1
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
    return 0 if client_ok and all(r["rate"] >= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
