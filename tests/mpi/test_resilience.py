"""Fault injection at 4 MPI ranks: kill -9 and ``run --resume``, signals to the whole run, aborts.

Each test starts its ``mpiexec`` in a new session (``start_new_session``) and signals only that process
group, as a batch system signals a job step.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hpcpilot.demo.jobs import DEMO_OUTPUT, demo_job
from tests.conftest import RunPilot, finished_ranges, journal, summary, write_jobs
from tests.fakes.harvester import FakeHarvester
from tests.fakes.panda_server import FakePandaServer
from tests.mpi.test_harvester_e2e import (
    check_event_service_job,
    describe,
    pilot_args,
    raced_reports,
    start_pilot,
    unraced_violations,
)
from tests.mpi.test_mpi_runs import _rank_process
from tests.mpi.test_panda_e2e import check_event_service_run
from tests.mpi.test_panda_e2e import pilot_args as panda_args
from tests.plugins.gated_merger import gate, merging_marker
from tests.tmpfs import resize, tmpfs

pytestmark = pytest.mark.mpi
RANKS = 4
PANDA_ID = 91
N_EVENTS = 1200  # 120 ranges of 10 events
MERGED = f"{PANDA_ID}/HITS.demo._000001.h5"
GATED = "tests.plugins.gated_merger:GatedMerger"


def _job() -> dict[str, Any]:
    return demo_job(panda_id=PANDA_ID, n_events=N_EVENTS, sleep_per_event=0.01)


def _records_so_far(workdir: Path) -> list[dict[str, Any]]:
    try:
        return journal(workdir)
    except (FileNotFoundError, ValueError):  # not there yet, or a line being written
        return []


def _start(workdir: Path, launcher_tmp: Path, *extra: str) -> subprocess.Popen[str]:
    return _launch(launcher_tmp, "run", "--workdir", str(workdir), *extra)


def _launch(launcher_tmp: Path, *args: str) -> subprocess.Popen[str]:
    """``mpiexec -n RANKS python -m hpcpilot ARGS`` in a session of its own."""
    return start_pilot(args, launcher_tmp)


def _wait_for(
    proc: subprocess.Popen[str], workdir: Path, ready: Callable[[list[dict[str, Any]]], bool]
) -> None:
    deadline = time.monotonic() + 90
    while not ready(_records_so_far(workdir)):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            raise AssertionError(f"the run ended or stalled before the fault: {err[-2000:]}")
        time.sleep(0.05)


def _reported(records: list[dict[str, Any]]) -> list[str]:
    return [rid for r in records if r["ev"] == "reported" for rid in r["ids"]]


def _after_last_run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    starts = [i for i, r in enumerate(records) if r["ev"] == "run"]
    return records[starts[-1] :]


def _events(path: Path) -> np.ndarray:
    """The merged output's events, in event-number order (the order ranges finish in varies)."""
    with h5py.File(path) as f:
        events = np.asarray(f["events"][()])
    return np.sort(events, order="event_number")


def _undisturbed(run_pilot: RunPilot, workdir: Path) -> np.ndarray:
    write_jobs(workdir, [_job()])
    result = run_pilot(["run", "--workdir", str(workdir)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    return _events(workdir / MERGED)


def test_kill_9_then_resume_loses_nothing_and_reruns_nothing_reported(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    work = tmp_path / "killed"
    write_jobs(work, [_job()])
    proc = _start(work, launcher_tmp)
    _wait_for(proc, work, lambda records: len(set(_reported(records))) >= 10)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole MPI job, no chance to flush anything
    proc.communicate(timeout=30)
    before = journal(work)
    assert not any(r["ev"] == "end" for r in before)
    reported_before = set(_reported(before))
    finished_before = dict(finished_ranges(before))
    unreported_before = set(finished_before) - reported_before
    received = {rid for r in before if r["ev"] == "ranges" for rid in r["ids"]}
    assert set(finished_before) <= received  # every range handed out was journaled first
    assert len(finished_before) < N_EVENTS // 10, "the kill came too late to test anything"

    result = run_pilot(["run", "--resume", "--workdir", str(work)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "open job(s) taken up" in result.stderr
    records = journal(work)
    resumed = _after_last_run(records)
    assert resumed[0]["resume"] is True and resumed[-1]["ev"] == "end"
    rerun = {rid for r in resumed if r["ev"] == "assigned" for rid in r["ids"]}
    assert not rerun & set(finished_before), "a range finished before the kill ran again"
    reported_after = Counter(_reported(resumed))
    assert not set(reported_after) & reported_before, "a range reported before the kill was reported again"
    assert unreported_before <= set(reported_after)  # verified, then reported
    finished = Counter(rid for rid, _ in finished_ranges(records))
    assert len(finished) == N_EVENTS // 10 and set(finished.values()) == {1}
    assert Counter(_reported(records)) == finished  # every range reported finished exactly once
    for rid, path in finished_before.items():
        assert path is not None and Path(path).is_file(), rid
    [job] = summary(work)["jobs"]
    assert job["state"] == "finished" and job["n_events"] == N_EVENTS
    assert np.array_equal(_events(work / MERGED), _undisturbed(run_pilot, tmp_path / "undisturbed"))


def test_resume_reruns_a_journaled_range_whose_output_changed(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    write_jobs(tmp_path, [_job()])
    proc = _start(tmp_path, launcher_tmp)
    _wait_for(proc, tmp_path, lambda records: len(finished_ranges(records)) >= 5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # as if killed before any report: every finished range is journaled but unreported
    records = [r for r in journal(tmp_path) if r["ev"] != "reported"]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    done = finished_ranges(records)
    rid, path = done[0]
    Path(str(path)).write_bytes(b"garbage")  # its output is no longer what was journaled
    result = run_pilot(["run", "--resume", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"output of range {rid} is missing or changed: run again" in result.stderr
    resumed = _after_last_run(journal(tmp_path))
    rerun = {i for r in resumed if r["ev"] == "assigned" for i in r["ids"]}
    assert rid in rerun and not rerun & {i for i, _ in done[1:]}  # the others verified, not rerun
    assert {i for i, _ in done[1:]} <= set(_reported(resumed))
    events = _events(tmp_path / MERGED)["event_number"]
    assert np.array_equal(events, np.arange(1, N_EVENTS + 1))


def test_worker_exception_then_resume_completes(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=41, n_events=200, sleep_per_event=0)])
    crash = ["--set", "eventservice.mode=tests.plugins.crashing:CrashingRunner"]
    result = run_pilot(["run", "--workdir", str(tmp_path), *crash], ranks=RANKS, timeout=120)
    assert result.returncode != 0
    assert "unexpected RuntimeError on rank" in result.stderr
    assert "injected crash in a worker" in result.stderr
    assert any(r["ev"] == "ranges" for r in journal(tmp_path))
    result = run_pilot(["run", "--resume", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    finished = Counter(rid for rid, _ in finished_ranges(journal(tmp_path)))
    assert len(finished) == 20 and set(finished.values()) == {1}
    events = _events(tmp_path / "41" / "HITS.demo._000001.h5")["event_number"]
    assert np.array_equal(events, np.arange(1, 201))


def test_run_without_resume_keeps_the_earlier_journal_aside(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=42, n_events=40, sleep_per_event=0)])
    for _ in range(2):
        result = run_pilot(["run", "--workdir", str(tmp_path)], ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "an earlier run's journal is kept as journal." in result.stderr
    [aside] = tmp_path.glob("journal.*.jsonl")
    assert len(finished_ranges(journal(tmp_path))) == 4
    assert sum(1 for line in aside.read_text().splitlines() if '"ev":"run"' in line) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_to_the_whole_run_drains_and_reports_every_finished_range(
    mpiexec: Path, tmp_path: Path, launcher_tmp: Path, signum: int
) -> None:
    write_jobs(tmp_path, [_job()])
    proc = _start(tmp_path, launcher_tmp, "--set", "batch.warning_lead_s=2", "--set", "batch.exit_margin_s=1")
    _wait_for(proc, tmp_path, lambda records: len(finished_ranges(records)) >= 3)
    os.killpg(proc.pid, signum)  # as the batch system does: every process of the job step
    _, err = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert f"received {name}" in err
    records = journal(tmp_path)
    assert records[-1]["ev"] == "end"
    finished = Counter(rid for rid, _ in finished_ranges(records))
    assert finished and set(finished.values()) == {1}
    assert Counter(_reported(records)) == finished  # every finished range reported, once
    s = summary(tmp_path)
    assert s["ranges"]["finished"] == len(finished)
    assert s["ranges"]["finished"] + s["ranges"]["not_done"] == s["ranges"]["total"]
    [job] = s["jobs"]
    if signum == signal.SIGTERM:
        assert proc.returncode == 3 and s["drained_by"] == "SIGTERM" and job["error_code"] == 1201
    else:
        assert proc.returncode == 0, err[-2000:]  # the end of the allocation is a normal outcome
        assert s["drained_by"] == "REACHED_MAX_TIME" and job["error_code"] == 1213


def test_the_end_announced_to_rank_0_alone_ends_every_rank_cleanly(
    tmp_path: Path, launcher_tmp: Path
) -> None:
    """SIGUSR1 with no lead time to rank 0 only: workers of instant ranges stop at once, rank 0 later.

    A worker must not finalize MPI with a message of rank 0 still unread (MPICH fails MPI_Finalize,
    and its launcher then kills every rank before rank 0 writes its summary): it waits for rank 0's
    farewell, and rank 0 takes back what crossed the worker's bye.
    """
    job = {
        "PandaID": 91,
        "transformation": "sleep",
        "jobPars": "0.0",
        "eventService": "True",
        "nEventsPerInputFile": 200000,
        "outFiles": "out.dat,log.tgz",
        "logFile": "log.tgz",
    }
    write_jobs(tmp_path, [job])
    settings = ("eventservice.mode=sleep", "local.events_per_range=1", "node.cores=1")
    extra = [arg for item in settings for arg in ("--set", item)]
    extra += ["--set", "batch.warning_lead_s=0", "--set", "batch.exit_margin_s=0"]
    proc = _start(tmp_path, launcher_tmp, *extra)
    try:
        _wait_for(proc, tmp_path, lambda records: len(finished_ranges(records)) >= 1000)
        _rank_process(proc, 0).send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    records = journal(tmp_path)
    assert records[-1]["ev"] == "end"
    finished = Counter(rid for rid, _ in finished_ranges(records))
    assert set(finished.values()) == {1}
    s = summary(tmp_path)
    assert s["drained_by"] == "REACHED_MAX_TIME"
    assert s["ranges"]["finished"] == len(finished)
    assert s["ranges"]["finished"] + s["ranges"]["not_done"] == s["ranges"]["total"]


def test_harvester_kill_9_then_resume_reports_every_range_once(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    """kill -9 mid-job, once Harvester has taken some reports: the resumed run reports each range once.

    The job lasts about 8 s at 6 slots; the kill comes about 2 s in (the first dump Harvester takes).
    Only a range whose report the kill raced (`raced_reports`) may be reported twice: at-least-once.
    """
    n_ranges = 150
    job = demo_job(panda_id=61, n_events=10 * n_ranges, mode="streaming", sleep_per_event=0.03)
    with FakeHarvester(tmp_path / "ap", [job], prefeed=12, period_s=0.5) as fake:
        args = pilot_args(fake, "--set", "node.cores=2")
        proc = _launch(launcher_tmp, *args)
        try:
            assert fake.wait_for(lambda: len(fake.finished_ranges(61)) >= 5, timeout=90), describe(fake)
            assert proc.poll() is None, describe(fake)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        ap = fake.access_point
        before = journal(ap)
        finished_before = {rid for rid, _ in finished_ranges(before)}
        assert not any(r["ev"] == "job" and "code" in r for r in before), "the kill came after the job's end"
        assert len(finished_before) < n_ranges, "the kill came too late to test anything"
        raced = raced_reports(fake, 61, before)
        result = run_pilot([*args, "--resume"], ranks=RANKS)
        assert result.returncode == 0, describe(fake, result.stderr)
        assert "1 open job(s) taken up" in result.stderr
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    assert unraced_violations(fake, raced) == [], describe(fake, result.stderr)
    check_event_service_job(fake, 61, raced=raced)  # every served range reported finished once
    resumed = _after_last_run(journal(ap))
    rerun = {rid for r in resumed if r["ev"] == "assigned" for rid in r["ids"]}
    assert rerun and not rerun & finished_before
    assert np.array_equal(_events(ap / "61" / DEMO_OUTPUT)["event_number"], np.arange(1, 10 * n_ranges + 1))


def _job_ended(panda_id: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda records: any(
        r["ev"] == "job" and r["job"] == panda_id and r.get("state") in ("finished", "failed")
        for r in records
    )


@pytest.mark.parametrize("moment", ["merging", "final_report"])
def test_harvester_kill_9_as_the_job_ends_then_resume_ends_too(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path, moment: str
) -> None:
    """kill -9 while the job merges (every range done), or once its final report is journaled.

    Before: a resumed run whose one job had ended before the kill counted no job read from the access
    point, and waited ``harvester.job_wait_s`` (600 s) for a job spec Harvester never writes again.
    Wherever the kill lands after its final record (closing, even after the ``end`` record), the
    resumed run ends at once; killed while merging, it merges and reports the job. Nothing is
    reported twice (but what the kill raced: `raced_reports`).
    """
    n_ranges = 40
    job = demo_job(panda_id=62, n_events=10 * n_ranges, mode="streaming", sleep_per_event=0.005)
    with FakeHarvester(tmp_path / "ap", [job], prefeed=12, period_s=0.5) as fake:
        ap = fake.access_point
        merged = ap / "62" / DEMO_OUTPUT
        args = pilot_args(fake, "--set", "node.cores=2", "--set", f"eventservice.merger={GATED}")
        if moment == "final_report":
            gate(merged).parent.mkdir()
            gate(merged).touch()
        proc = _launch(launcher_tmp, *args)
        try:
            if moment == "final_report":
                _wait_for(proc, ap, _job_ended(62))
            else:  # the merger waits for its gate: no final report can come before the kill
                _wait_for(proc, ap, lambda _: merging_marker(merged).exists())
        finally:
            with contextlib.suppress(ProcessLookupError):  # the run may have ended meanwhile
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        before = journal(ap)
        finished_before = {rid for rid, _ in finished_ranges(before)}
        assert len(finished_before) == n_ranges
        assert _job_ended(62)(before) is (moment == "final_report")
        raced = raced_reports(fake, 62, before)
        gate(merged).touch()
        result = run_pilot([*args, "--resume"], ranks=RANKS, timeout=90)
        assert result.returncode == 0, describe(fake, result.stderr)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    assert unraced_violations(fake, raced) == [], describe(fake, result.stderr)
    check_event_service_job(fake, 62, raced=raced)  # the ranges, the merged output and the log: once
    assert fake.status_sequence(62)[-1] == "finished"
    assert not _resumed_assignments(ap), "a range finished before the kill ran again"
    [done] = summary(ap)["jobs"]
    assert done["state"] == "finished" and done["n_events"] == 10 * n_ranges
    assert np.array_equal(_events(merged)["event_number"], np.arange(1, 10 * n_ranges + 1))


# --- the PanDA server: a long outage; kill -9 and resume --------------------------------------------


def test_panda_server_down_for_many_retry_cycles_loses_nothing(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    outage_s = 8.0  # at least 16 retry cycles at panda.backoff_max_s=0.5
    with FakePandaServer(range_reply_shape="dict", range_update_bug=False) as fake:
        fake.add_job(demo_job(panda_id=53, n_events=300, mode="per_range", sleep_per_event=0.01))
        went_down = threading.Event()

        def outage_after_first_range_update() -> None:
            deadline = time.monotonic() + 120
            while not fake.range_updates and time.monotonic() < deadline:
                time.sleep(0.05)
            fake.down_for(outage_s)
            went_down.set()

        watcher = threading.Thread(target=outage_after_first_range_update, daemon=True)
        watcher.start()
        args = panda_args(fake, tmp_path, "--set", "panda.give_up_s=120")
        result = run_pilot(args, ranks=RANKS)
        watcher.join(timeout=10)
        assert result.returncode == 0, result.stderr[-3000:]
        assert went_down.is_set()
        assert "wait in the outbox; next try in" in result.stderr  # one clear line when it starts
        assert "the PanDA server takes updates again" in result.stderr  # and one when it is over
        assert "Traceback" not in result.stderr
        check_event_service_run(fake, tmp_path, 53, 30)


def test_panda_kill_9_then_resume_reports_every_range_once(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    with FakePandaServer(range_reply_shape="dict", range_update_bug=False) as fake:
        fake.add_job(demo_job(panda_id=54, n_events=600, mode="streaming", sleep_per_event=0.01))
        args = panda_args(fake, tmp_path)
        proc = _launch(launcher_tmp, *args)
        try:
            deadline = time.monotonic() + 90
            while len(fake.finished_ranges()) < 5:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        finished_before = {rid for rid, _ in finished_ranges(journal(tmp_path))}
        # an update the server applied just before the kill, but still in the outbox, goes again
        in_outbox = frozenset(
            entry["eventRangeID"]
            for path in (tmp_path / "panda_outbox").glob("*.json")
            for entry in json.loads(path.read_text())["payload"].get("eventRanges", [])
        )
        result = run_pilot([*args, "--resume"], ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
        check_event_service_run(fake, tmp_path, 54, 60, in_outbox)  # once, or twice if left in the outbox
        resumed = _after_last_run(journal(tmp_path))
        assert not {rid for r in resumed if r["ev"] == "assigned" for rid in r["ids"]} & finished_before


def test_resume_skips_done_jobs_served_again_and_finishes_the_open_one(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=81, n_events=50, sleep_per_event=0), _job()])
    result = run_pilot(["run", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    # as if killed while job 91 was still running: its final record, the end and its last reports gone
    records = journal(tmp_path)
    final = next(
        i for i, r in enumerate(records) if r["ev"] == "job" and r["job"] == PANDA_ID and "code" in r
    )
    kept = [r for r in records[:final] if r["ev"] != "end"]
    reported = [i for i, r in enumerate(kept) if r["ev"] == "reported" and r["job"] == PANDA_ID]
    del kept[reported[-1]]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    finished_before = {rid for rid, _ in finished_ranges(kept)}
    result = run_pilot(["run", "--resume", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 job(s) done before are skipped, 1 open job(s) taken up" in result.stderr
    resumed = _after_last_run(journal(tmp_path))
    assert not [r for r in resumed if r.get("job") == 81], "the done job was taken up again"
    assert not {rid for r in resumed if r["ev"] == "assigned" for rid in r["ids"]} & finished_before
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["81"]["jobStatus"] == "finished" and results["91"]["jobStatus"] == "finished"
    assert np.array_equal(_events(tmp_path / MERGED)["event_number"], np.arange(1, N_EVENTS + 1))


# --- a full disk during the merge; resume and drain semantics (issue 13) ----------------------------


def _resumed_assignments(workdir: Path) -> set[str]:
    return {rid for r in _after_last_run(journal(workdir)) if r["ev"] == "assigned" for rid in r["ids"]}


def test_a_merge_short_of_disk_fails_cleanly_and_resume_merges_once_there_is_room(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    """A 5 MB disk holds the range outputs (3.5 MB) but not their merge as well."""
    with tmpfs(tmp_path / "disk", "5m") as work:
        write_jobs(work, [demo_job(panda_id=71, n_events=2000, sleep_per_event=0)])
        args = ["run", "--workdir", str(work), "--set", "monitor.min_free_disk_mb=1"]
        result = run_pilot(args, ranks=RANKS)
        assert result.returncode == 3, result.stderr[-3000:]
        [job] = summary(work)["jobs"]
        assert job["state"] == "failed" and job["error_code"] == 1098  # not 1305 from a crashed merger
        assert "not enough free space to merge" in job["error_diag"] and job["resumable"]
        assert job["ranges"]["finished"] == 200
        assert not (work / "71" / DEMO_OUTPUT).exists()
        # a merge killed mid-write leaves its temporary file (named as atomic_path names them)
        fd, left = tempfile.mkstemp(prefix=f".{DEMO_OUTPUT}.", suffix=".tmp", dir=work / "71")
        os.close(fd)
        foreign = work / "71" / f".{DEMO_OUTPUT}.notes.tmp"  # not the merger's: left alone
        foreign.write_text("x")

        resize(work, "64m")
        result = run_pilot([*args, "--resume"], ranks=RANKS)
        assert result.returncode == 0, result.stderr[-3000:]
        [job] = summary(work)["jobs"]
        assert job["state"] == "finished" and job["n_events"] == 2000
        assert not _resumed_assignments(work)  # merged from the intact range outputs, none rerun
        assert not Path(left).exists() and foreign.exists()
        events = _events(work / "71" / DEMO_OUTPUT)["event_number"]
        assert np.array_equal(events, np.arange(1, 2001))


def test_resume_of_a_run_that_ended_keeps_its_summary(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    write_jobs(tmp_path, [demo_job(panda_id=72, n_events=40, sleep_per_event=0)])
    result = run_pilot(["run", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    before = summary(tmp_path)
    result = run_pilot(["run", "--resume", "--workdir", str(tmp_path)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    after = summary(tmp_path)
    assert after["jobs"] == before["jobs"] and after["ranges"]["finished"] == 4  # not `jobs: []`
    assert after["runs"] == 2
    assert "job 72: finished" in result.stdout


def test_sigterm_in_local_mode_then_resume_finishes_the_job(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    """No one else hands out the work of a local job a drain cut short: ``--resume`` finishes it."""
    n_ranges = 300  # more than rank 0 fetches at once
    job = demo_job(panda_id=PANDA_ID, n_events=10 * n_ranges, sleep_per_event=0.005)
    work = tmp_path / "cut"
    write_jobs(work, [job])
    proc = _start(work, launcher_tmp)
    _wait_for(proc, work, lambda records: len(finished_ranges(records)) >= 20)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 3
    cut = summary(work)
    [failed] = cut["jobs"]
    assert failed["error_code"] == 1201 and failed["resumable"]
    assert cut["ranges"]["total"] == n_ranges == failed["ranges"]["total"]  # not only those fetched
    assert cut["ranges"]["finished"] + cut["ranges"]["not_done"] == n_ranges
    finished_before = {rid for rid, _ in finished_ranges(journal(work))}
    assert 0 < len(finished_before) < n_ranges

    result = run_pilot(["run", "--resume", "--workdir", str(work)], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the run before ended it early" in result.stderr
    assert not _resumed_assignments(work) & finished_before
    finished = Counter(rid for rid, _ in finished_ranges(journal(work)))
    assert len(finished) == n_ranges and set(finished.values()) == {1}
    [done] = summary(work)["jobs"]
    assert done["state"] == "finished" and done["ranges"]["finished"] == n_ranges
    assert json.loads((work / "results.json").read_text())[str(PANDA_ID)]["jobStatus"] == "finished"
    write_jobs(tmp_path / "undisturbed", [job])
    result = run_pilot(["run", "--workdir", str(tmp_path / "undisturbed")], ranks=RANKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(_events(work / MERGED), _events(tmp_path / "undisturbed" / MERGED))


def test_sigusr1_lets_running_ranges_that_end_before_the_exit_margin_finish(
    tmp_path: Path, launcher_tmp: Path
) -> None:
    """The end 4 s away, ranges of 1.5 s, a kill grace of 10 s: none is killed, none is lost."""
    write_jobs(tmp_path, [demo_job(panda_id=PANDA_ID, n_events=600, sleep_per_event=0.15)])
    settings = ("batch.warning_lead_s=4", "batch.exit_margin_s=1", "payload.kill_grace_s=10")
    proc = _start(tmp_path, launcher_tmp, *(arg for item in settings for arg in ("--set", item)))
    _wait_for(proc, tmp_path, lambda records: len(finished_ranges(records)) >= 6)
    os.killpg(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    records = journal(tmp_path)
    assert [r for r in records if r["ev"] == "failed"] == []  # before: all 6 running were killed (1213)
    s = summary(tmp_path)
    assert s["drained_by"] == "REACHED_MAX_TIME" and s["ranges"]["cut"] == 0
    finished = Counter(rid for rid, _ in finished_ranges(records))
    assert set(finished.values()) == {1} and s["ranges"]["finished"] == len(finished) > 6
    assert Counter(_reported(records)) == finished
