"""End-to-end runs at 4 MPI ranks against the fake PanDA server (``tests/fakes/panda_server.py``).

The fake runs in the test process; the pilot is started as a site would start it with
``run.communicator=panda`` and ``panda.url`` pointing at the fake. Short back-off and heartbeat
settings keep the runs quick.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.demo.jobs import DEMO_OUTPUT, demo_job
from tests.conftest import RunPilot
from tests.fakes.panda_server import FakePandaServer

pytestmark = pytest.mark.mpi
RANKS = 4
QUEUE = "TEST_QUEUE"


def pilot_args(fake: FakePandaServer, workdir: Path, *extra: str) -> list[str]:
    settings = {
        "run.communicator": "panda",
        "panda.url": fake.url,
        "panda.site_name": QUEUE,
        "panda.timeout_s": "2",
        "panda.retries": "2",
        "panda.backoff_s": "0.1",
        "panda.backoff_max_s": "0.5",
        "panda.heartbeat_s": "1",
        "panda.close_wait_s": "30",
    }
    args = ["run", "--workdir", str(workdir)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args + list(extra)


def outputs_of(fake: FakePandaServer, panda_id: int) -> dict[str, Any]:
    final = fake.final_update(panda_id)
    assert final is not None, f"job {panda_id} has no final update"
    report: dict[str, Any] = json.loads(final.fields["xml"])
    return report


def check_output(report: dict[str, Any], path: Path) -> None:
    entry = report[path.name]
    assert entry["fsize"] == path.stat().st_size
    assert entry["adler32"] == adler32_of_file(path)
    assert entry["guid"]


def check_event_service_run(
    fake: FakePandaServer,
    workdir: Path,
    panda_id: int,
    n_ranges: int,
    resendable: frozenset[str] = frozenset(),
) -> None:
    """Every range finished exactly once at the server, but those in ``resendable``: at most twice.

    ``resendable``: ranges whose update was still in the outbox when a run was killed. The server may
    have applied it before the kill, and the resumed run sends it again: at least once, as PanDA allows.
    """
    served = {f"42-{panda_id}-1-{k}-1" for k in range(1, n_ranges + 1)}
    counts = fake.finished_ranges()
    assert set(counts) == served
    assert {rid: n for rid, n in counts.items() if n != 1 and not (n == 2 and rid in resendable)} == {}
    states = fake.states(panda_id)
    assert states[0] == "starting" and states[-1] == "finished" and states.count("finished") == 1
    assert set(states[1:-1]) <= {"running"}
    check_output(outputs_of(fake, panda_id), workdir / str(panda_id) / DEMO_OUTPUT)
    assert not list((workdir / "panda_outbox").glob("*.json")), "updates left unsent"
    assert fake.violations == []


def test_event_service_job(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    with FakePandaServer(range_update_bug=False) as fake:  # update_event_ranges as intended
        fake.add_job(demo_job(panda_id=51, n_events=200, mode="per_range", sleep_per_event=0))
        result = run_pilot(pilot_args(fake, tmp_path), ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
        check_event_service_run(fake, tmp_path, 51, 20)
        assert len(fake.calls_of("update_event_ranges")) < 20  # batched, not one call per range
        final = fake.final_update(51)
        assert final is not None and final.fields["nEvents"] == 200 and final.fields["siteName"] == QUEUE


def test_several_plain_jobs_in_one_run(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    script = "import os, time; time.sleep(0.3); open('out.txt', 'w').write(os.environ['HPCPILOT_SLOT'] * 7)"
    with FakePandaServer(range_reply_shape="dict", range_update_bug=False) as fake:
        for i in range(6):
            fake.add_job(
                {
                    "PandaID": 300 + i,
                    "attemptNr": 1,
                    "transformation": sys.executable,
                    "jobPars": f'-c "{script}"',
                    "coreCount": 1,
                    "outFiles": "out.txt",
                    "prodSourceLabel": "managed",
                }
            )
        result = run_pilot(pilot_args(fake, tmp_path, "--set", "node.cores=2"), ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
        for i in range(6):
            panda_id = 300 + i
            assert fake.states(panda_id)[-1] == "finished"
            check_output(outputs_of(fake, panda_id), tmp_path / str(panda_id) / "out.txt")
        assert max(int(c.params["n_jobs"]) for c in fake.calls_of("acquire_jobs")) > 1  # asked per free slot
        assert fake.calls_of("acquire_jobs")[-1].status == 200  # the run ended on "no jobs"
        assert fake.violations == []


def test_server_errors_and_an_outage_lose_nothing(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    with FakePandaServer(range_reply_shape="dict", range_update_bug=False) as fake:
        fake.add_job(demo_job(panda_id=52, n_events=300, mode="per_range", sleep_per_event=0.01))
        fake.fail_next(2, 500, call="acquire_event_ranges")
        fake.fail_next(2, 500, call="update_event_ranges")
        went_down = threading.Event()

        def outage_after_first_range_update() -> None:
            deadline = time.monotonic() + 120
            while not fake.range_updates and time.monotonic() < deadline:
                time.sleep(0.05)
            fake.down_for(3.0)
            went_down.set()

        watcher = threading.Thread(target=outage_after_first_range_update, daemon=True)
        watcher.start()
        result = run_pilot(pilot_args(fake, tmp_path), ranks=RANKS)
        watcher.join(timeout=10)
        assert result.returncode == 0, result.stderr[-3000:]
        assert went_down.is_set()
        assert [c.status for c in fake.calls_of("update_event_ranges")][:2] == [500, 500]
        check_event_service_run(fake, tmp_path, 52, 30)


# --- a current PanDA server (issue 14): its update_event_ranges bug, its commands --------------------


def test_a_current_server_gets_the_full_final_update_despite_its_range_update_500s(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    with FakePandaServer() as fake:  # v1 only; update_event_ranges answers 500 after applying
        assert fake.range_update_bug and fake.apis == ("v1",)
        fake.add_job(demo_job(panda_id=55, n_events=200, mode="per_range", sleep_per_event=0.005))
        result = run_pilot(pilot_args(fake, tmp_path), ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
        served = {f"42-55-1-{k}-1" for k in range(1, 21)}
        assert set(fake.finished_ranges()) == served  # every range applied (some more than once)
        assert {c.status for c in fake.calls_of("update_event_ranges")} == {500}
        final = fake.final_update(55)
        assert final is not None and final.state == "finished" and fake.states(55).count("finished") == 1
        fields = final.fields
        report = json.loads(fields["metaData"])  # the job report, as Pilot 3 sends it
        assert report["resource"]["transform"]["processedEvents"] == 200
        assert fields["exeErrorCode"] == 0 and fields["nInputFiles"] == 0
        assert isinstance(fields["cpuConversionFactor"], float) and "finished=20" in fields["jobMetrics"]
        check_output(outputs_of(fake, 55), tmp_path / "55" / DEMO_OUTPUT)
        assert result.stderr.count("server bug") == 1  # the repeated 500 is logged once, with the reason
        assert not list((tmp_path / "panda_outbox").glob("*.json")), "updates left unsent"
        assert fake.violations == []


@pytest.mark.parametrize("word", ["alreadydone", "badattemptnr"])
def test_a_job_the_server_abandons_stops_and_is_never_reported_again(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, word: str
) -> None:
    with FakePandaServer() as fake:
        fake.add_job(demo_job(panda_id=56, n_events=3000, mode="per_range", sleep_per_event=0.05))

        def abandon_once_running() -> None:
            deadline = time.monotonic() + 120
            while not fake.range_updates and time.monotonic() < deadline:
                time.sleep(0.05)
            fake.command(56, word)  # with the reply to the next heartbeat

        watcher = threading.Thread(target=abandon_once_running, daemon=True)
        watcher.start()
        result = run_pilot(pilot_args(fake, tmp_path), ranks=RANKS)
        watcher.join(timeout=10)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert fake.final_update(56) is None  # nothing after the command: not even a final update
        assert len(fake.finished_ranges()) < 300  # the work stopped
        assert f"({word})" in result.stderr and "nothing more is reported for it" in result.stderr
        assert fake.violations == []  # the fake flags any update of the job after the command
