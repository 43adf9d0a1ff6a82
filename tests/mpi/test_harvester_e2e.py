"""End-to-end runs at 4 MPI ranks driven by the fake Harvester (``tests/fakes/harvester.py``).

The pilot runs as Harvester starts it (``--workdir`` = the access point, ``run.communicator=harvester``);
the fake polls the access point on its own period, feeds jobs and ranges the way Harvester's
SharedFileMessenger does (non-atomically, on request), consumes what the pilot declares, and collects
every breach of the protocol in ``fake.violations``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import psutil
import pytest

from hpcpilot.demo.jobs import DEMO_LOG, DEMO_OUTPUT, demo_job
from tests.conftest import REPO, RunPilot, finished_ranges, journal, pilot_env
from tests.fakes.harvester import UNKNOWN_PANDA_ID, FakeHarvester, Fault, HarvesterFiles, MapType

pytestmark = pytest.mark.mpi
RANKS = 4
FAST = [
    "--set",
    "harvester.poll_s=0.2",
    "--set",
    "harvester.report_interval_s=1",
    "--set",
    "harvester.heartbeat_s=1",
]


def pilot_args(fake: FakeHarvester, *extra: str) -> list[str]:
    """``hpcpilot run`` arguments for a pilot in the fake's access point."""
    return [
        "run",
        "--workdir",
        str(fake.access_point),
        "--set",
        "run.communicator=harvester",
        "--set",
        "run.status_mode=lines",
        *FAST,
        *extra,
    ]


def start_pilot(args: Sequence[str], launcher_tmp: Path) -> subprocess.Popen[str]:
    """Start ``mpiexec -n 4 python -m hpcpilot ARGS`` in a session of its own, without waiting for it.

    Its own process group: a test may signal that group, and only it.
    """
    argv = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(RANKS), sys.executable, "-m", "hpcpilot"]
    return subprocess.Popen(
        [*argv, *args],
        cwd=REPO,
        env=pilot_env({"TMPDIR": str(launcher_tmp)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float, fake: FakeHarvester) -> str:
    """Wait for the run to end and return its stderr; on a timeout, kill the whole tree and fail."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        _, err = proc.communicate()
        pytest.fail(f"the run did not end within {timeout} s\n{describe(fake, err)}")
    return err


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """Kill the launcher and every process under it (payloads included)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.kill()


def log_lines(workdir: Path, stderr: str) -> list[str]:
    """Rank 0's log lines and the run's stderr."""
    rank0 = workdir / "logs" / "rank-0000.log"
    text = rank0.read_text(errors="replace") if rank0.exists() else ""
    return [*text.splitlines(), *stderr.splitlines()]


def problem_lines(lines: list[str], *needles: str) -> list[str]:
    """Warning and error lines holding every needle."""
    return [
        line
        for line in lines
        if ("WARNING" in line or "ERROR" in line) and all(needle in line for needle in needles)
    ]


def describe(fake: FakeHarvester, stderr: str = "") -> str:
    return f"{fake.summary()}\n--- pilot stderr (tail) ---\n{stderr[-3000:]}"


def plain_job(panda_id: int, script: str, *, inputs: bool = False) -> dict[str, Any]:
    job: dict[str, Any] = {
        "PandaID": panda_id,
        "taskID": 77,
        "jobsetID": 5,
        "attemptNr": 1,
        "prodSourceLabel": "managed",
        "transformation": sys.executable,
        "jobPars": f'-c "{script}"',
        "coreCount": 1,
        "outFiles": f"out.txt,log.{panda_id}.tgz",
        "logFile": f"log.{panda_id}.tgz",
        "logGUID": f"1a2b3c4d-0000-0000-0000-{panda_id:012d}",
    }
    if inputs:
        job.update(
            inFiles=f"in.{panda_id}.txt",
            GUID=f"2b3c4d5e-0000-0000-0000-{panda_id:012d}",
            scopeIn="user.test",
        )
    return job


def copy_job(panda_id: int) -> dict[str, Any]:
    """A plain job that copies its input (symlinked by Harvester into its directory) to out.txt."""
    script = f"import shutil, time; time.sleep(0.3); shutil.copyfile('in.{panda_id}.txt', 'out.txt')"
    return plain_job(panda_id, script, inputs=True)


def storage(tmp_path: Path, panda_ids: Sequence[int]) -> Path:
    """Input files as a storage element would hold them (Harvester symlinks them into job directories)."""
    path = tmp_path / "storage"
    path.mkdir(exist_ok=True)
    for pid in panda_ids:
        (path / f"in.{pid}.txt").write_text(f"input of {pid}\n")
    return path


def check_event_service_job(
    fake: FakeHarvester, panda_id: int, *, packed: bool = False, raced: Collection[str] = ()
) -> None:
    """Every served range finished exactly once, with its output declared; merged output and log.

    ``raced``: ranges whose report a kill raced (`raced_reports`), which may be declared twice.
    """
    served = fake.served_ranges(panda_id)
    finished = Counter(fake.finished_ranges(panda_id))
    assert fake.ranges_left(panda_id) == 0 and fake.told_no_more(panda_id), describe(fake)
    assert set(finished) == set(served), describe(fake)
    assert all(n == 1 or (n == 2 and rid in raced) for rid, n in finished.items()), describe(fake)
    kind = "zip_output" if packed else "es_output"
    declared = fake.declared_outputs(panda_id, kind)
    assert Counter(d.range_id or "" for d in declared) == finished
    assert not fake.declared_outputs(panda_id, "zip_output" if not packed else "es_output")
    if not packed:
        assert all(Path(d.path).name == f"{DEMO_OUTPUT}.{d.range_id}" for d in declared)
        assert all(Path(d.path).parent == fake.access_point / str(panda_id) for d in declared)
    else:
        assert all(d.is_zip == 1 for d in declared)
        assert len({d.path for d in declared}) < len(declared), "one tar per batch, not per range"
    [merged] = fake.declared_outputs(panda_id, "output")
    assert Path(merged.path).name == DEMO_OUTPUT
    [log] = fake.declared_outputs(panda_id, "log")
    assert Path(log.path).name == DEMO_LOG


def raced_reports(fake: FakeHarvester, panda_id: int, records: list[dict[str, Any]]) -> set[str]:
    """Ranges a killed run declared to Harvester but had not journaled ``reported`` yet.

    Reporting is at-least-once (docs/resilience.md): a kill between a dump file and its ``reported``
    record (milliseconds) makes the resumed run declare those ranges again. Called after the kill,
    once Harvester has taken what the killed run left (two more looks at the access point).
    """
    fake.wait_cycles(2)
    reported = {rid for r in records if r["ev"] == "reported" for rid in r["ids"]}
    return set(fake.finished_ranges(panda_id)) - reported


def unraced_violations(fake: FakeHarvester, raced: Collection[str]) -> list[str]:
    """The fake's violations, less a second report of a range in ``raced``."""
    twice = {f"range {rid} reported finished twice" for rid in raced}
    return [v for v in fake.violations if not any(v.endswith(t) for t in twice)]


def merged_events(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return np.asarray(f["events"]["event_number"])


# --- (a) OneToOne event service: pre-fed ranges, more on request, custom file names -----------------


@pytest.mark.parametrize("pack_ranges", [False, True], ids=["es_output", "zip_output"])
def test_one_to_one_event_service_job(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, pack_ranges: bool
) -> None:
    files = HarvesterFiles.custom()
    job = demo_job(panda_id=31, n_events=300, mode="per_range", sleep_per_event=0)
    with FakeHarvester(
        tmp_path / "ap", [job], prefeed=8, period_s=1.0, files=files, write_config=True
    ) as fake:
        result = run_pilot(
            pilot_args(
                fake,
                "--harvester-config",
                str(fake.config_path),
                "--set",
                "node.cores=1",
                "--set",
                "harvester.request_threshold=3",
                "--set",
                "harvester.request_ranges=6",
                "--set",
                f"harvester.pack_ranges={str(pack_ranges).lower()}",
            ),
            ranks=RANKS,
        )
        assert result.returncode == 0, describe(fake, result.stderr)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    ap = fake.access_point
    assert fake.violations == [], describe(fake, result.stderr)
    assert len(fake.served_ranges(31)) == 30
    check_event_service_job(fake, 31, packed=pack_ranges)
    # ranges were pre-fed, then fed on request (several times: 6 or so per request)
    assert fake.event_feeds[0].prefed and len(fake.event_feeds[0].ranges[31]) == 8
    assert len(fake.event_feeds) >= 3 and fake.event_feeds[-1].ranges == {31: []}
    assert all(set(r.content) == {"31"} for r in fake.event_requests)
    # the final state, the job report, the heartbeat
    final = fake.final_attributes(31)
    assert final is not None and final["jobStatus"] == "finished" and final.get("pilotErrorCode", 0) == 0
    assert final.get("nEvents") == 300
    assert fake.status_sequence(31)[-1] == "finished" and len(fake.status_sequence(31)) >= 2
    assert isinstance(fake.job_report(31), dict)
    assert fake.heartbeats, "worker_heartbeat.json (the usual name: the configuration does not set it)"
    # the names of the configuration file, and none of the usual names it changes
    assert (ap / files.workerAttributesFile).exists() and (ap / files.killWorkerFile).exists()
    assert list(ap.glob(f"{files.eventStatusDumpJsonFile}.read.*"))
    for usual in (
        "worker_attributes.json",
        "kill_worker.json",
        "jobReport.json",
        "worker_requestevents.json",
    ):
        assert not (ap / usual).exists(), usual
    assert not list(ap.glob("event_status.dump.json*")) and not list(ap.glob("JobsEventRanges.json*"))
    # the merged output holds every event
    events = merged_events(ap / "31" / DEMO_OUTPUT)
    assert np.array_equal(np.sort(events), np.arange(1, 301))
    assert {r for r, _ in finished_ranges(journal(ap))} == set(fake.finished_ranges(31))


# --- (b) ManyToOne: several plain jobs in per-job directories, more on request -------------------


@pytest.mark.parametrize("spec_format", ["json", "cgi"])
def test_many_to_one_plain_jobs(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path, spec_format: str) -> None:
    first, more = [201, 202, 203, 204, 205], [206, 207]
    inputs = storage(tmp_path, first + more)
    with FakeHarvester(
        tmp_path / "ap",
        [copy_job(pid) for pid in first],
        map_type=MapType.MANY_TO_ONE,
        more_jobs=[copy_job(pid) for pid in more],
        period_s=1.0,
        job_spec_format=spec_format,
        input_dir=inputs,
    ) as fake:
        result = run_pilot(
            pilot_args(
                fake,
                "--set",
                f"harvester.job_spec_format={spec_format}",
                "--set",
                "harvester.request_jobs=true",
                "--set",
                "harvester.job_wait_s=4",
                "--set",
                "node.cores=2",
            ),
            ranks=RANKS,
        )
        assert result.returncode == 0, describe(fake, result.stderr)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    ap = fake.access_point
    assert fake.violations == [], describe(fake, result.stderr)
    assert fake.panda_ids() == first + more, "the jobs asked for were fed"
    assert fake.job_requests and len(fake.job_feeds) >= 2
    for pid in first + more:
        final = fake.final_attributes(pid)
        assert final is not None and final["jobStatus"] == "finished", (pid, fake.attributes(pid))
        assert (ap / str(pid) / "worker_attributes.json").exists()
        assert (ap / str(pid) / "out.txt").read_text() == f"input of {pid}\n"
        [out] = fake.declared_outputs(pid, "output")
        assert out.path == str(ap / str(pid) / "out.txt")
        [log] = fake.declared_outputs(pid, "log")
        assert Path(log.path).name == f"log.{pid}.tgz" and log.guid == f"1a2b3c4d-0000-0000-0000-{pid:012d}"
        assert isinstance(fake.job_report(pid), dict)
    assert not (ap / "worker_attributes.json").exists(), "per-job files live in <accessPoint>/<PandaID>/"
    assert not (ap / "event_status.dump.json").exists()


# --- (c) bad input: half-written, garbage and foreign feeds; an unknown PandaID listed --------------


def test_bad_range_feeds_lose_nothing(run_pilot: RunPilot, mpiexec: Path, tmp_path: Path) -> None:
    job = demo_job(panda_id=41, n_events=200, mode="streaming", sleep_per_event=0.002)
    with FakeHarvester(
        tmp_path / "ap",
        [job],
        prefeed=6,
        period_s=0.5,
        event_faults=[Fault.HALF, Fault.GARBAGE, Fault.FOREIGN],
        half_pause_s=1.5,
    ) as fake:
        result = run_pilot(
            pilot_args(fake, "--set", "harvester.request_ranges=6", "--set", "harvester.request_threshold=3"),
            ranks=RANKS,
        )
        assert result.returncode == 0, describe(fake, result.stderr)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    assert [f.fault for f in fake.event_feeds[:3]] == [Fault.HALF, Fault.GARBAGE, Fault.FOREIGN]
    assert fake.violations == [], describe(fake, result.stderr)
    check_event_service_job(fake, 41)
    assert len(fake.served_ranges(41)) == 20
    lines = log_lines(fake.access_point, result.stderr)
    name = fake.files.eventRangesFile
    assert problem_lines(lines, name), "the bad feeds are logged, naming the file"
    assert problem_lines(lines, name, str(UNKNOWN_PANDA_ID)), "the unknown PandaID is logged"
    final = fake.final_attributes(41)
    assert final is not None and final["jobStatus"] == "finished"


def test_unknown_panda_id_listed_and_half_written_job_feed(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    first, more = [301, 302], [303]
    inputs = storage(tmp_path, first + more)
    with FakeHarvester(
        tmp_path / "ap",
        [copy_job(pid) for pid in first],
        map_type=MapType.MANY_TO_ONE,
        more_jobs=[copy_job(pid) for pid in more],
        period_s=0.5,
        job_faults=[Fault.FOREIGN, Fault.HALF],
        half_pause_s=1.5,
        input_dir=inputs,
    ) as fake:
        result = run_pilot(
            pilot_args(
                fake,
                "--set",
                "harvester.request_jobs=true",
                "--set",
                "harvester.job_wait_s=4",
                "--set",
                "node.cores=2",
            ),
            ranks=RANKS,
        )
        assert result.returncode in (0, 3), describe(fake, result.stderr)  # 3: the unknown job failed
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    assert fake.violations == [], describe(fake, result.stderr)
    assert [f.fault for f in fake.job_feeds] == [Fault.FOREIGN, Fault.HALF]
    for pid in first + more:
        final = fake.final_attributes(pid)
        assert final is not None and final["jobStatus"] == "finished", (pid, fake.attributes(pid))
    lines = log_lines(fake.access_point, result.stderr)
    named = [
        line
        for line in problem_lines(lines, str(UNKNOWN_PANDA_ID))
        if fake.files.pandaIDsFile in line or fake.files.jobSpecFile in line
    ]
    assert named, "the PandaID listed without a job spec is logged, naming the file"
    assert "Traceback" not in result.stderr


# --- (d) an operator's softkill mid-run ----------------------------------------------------------------


def test_softkill_drains_and_reports_every_finished_range(
    mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    # 6000 ranges: far more than the pilot's deep cache holds before the softkill
    job = demo_job(panda_id=51, n_events=60000, mode="streaming", sleep_per_event=0.01)
    with FakeHarvester(tmp_path / "ap", [job], prefeed=12, period_s=0.5) as fake:
        proc = start_pilot(pilot_args(fake, "--set", "node.cores=2"), launcher_tmp)
        try:
            reported = fake.wait_for(lambda: len(fake.finished_ranges(51)) >= 3, timeout=90)
            assert reported and proc.poll() is None, describe(fake)
            fake.operator_command("softkill")
            softkill_at = time.time()
            err = finish(proc, 120, fake)
        finally:
            if proc.poll() is None:
                kill_tree(proc)
                proc.communicate()
        assert proc.returncode == 0, describe(fake, err)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, err)
    assert fake.violations == [], describe(fake, err)
    finished = Counter(fake.finished_ranges(51))
    assert set(finished.values()) == {1}
    journal_finished = {rid for rid, _ in finished_ranges(journal(fake.access_point))}
    assert set(finished) == journal_finished, "every range finished here is reported, exactly once"
    assert len(finished) < 600 and fake.ranges_left(51) > 0, "drained early"
    assert all(d.range_id in finished for d in fake.declared_outputs(51, "es_output"))
    final = fake.final_attributes(51)
    assert final is not None and final["jobStatus"] == "finished", fake.attributes(51)
    assert problem_lines(log_lines(fake.access_point, err), "softkill")
    late = [r for r in fake.event_requests if r.at > softkill_at + fake.period_s + 2.0]
    assert not late, f"ranges requested after the softkill: {late}"


# --- (e) tobekilled --------------------------------------------------------------------------------------


def test_tobekilled_fails_every_job_with_1144(mpiexec: Path, tmp_path: Path, launcher_tmp: Path) -> None:
    pids = [601, 602, 603]
    sleeper = "import time; time.sleep(300)"
    with FakeHarvester(
        tmp_path / "ap",
        [plain_job(pid, sleeper) for pid in pids],
        map_type=MapType.MANY_TO_ONE,
        period_s=0.5,
    ) as fake:
        proc = start_pilot(
            pilot_args(fake, "--set", "node.cores=1", "--set", "payload.kill_grace_s=3"), launcher_tmp
        )
        try:
            running = fake.wait_for(lambda: all(fake.attributes(pid) for pid in pids), timeout=60)
            assert running and proc.poll() is None, describe(fake)
            time.sleep(1.0)
            fake.operator_command("tobekilled")
            err = finish(proc, 40, fake)  # the payloads are killed (3 s grace), not waited for
        finally:
            if proc.poll() is None:
                kill_tree(proc)
                proc.communicate()
        assert proc.returncode == 3, describe(fake, err)
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, err)
    assert fake.violations == [], describe(fake, err)
    for pid in pids:
        final = fake.final_attributes(pid)
        assert final is not None, (pid, fake.attributes(pid))
        assert final["jobStatus"] == "failed" and final["pilotErrorCode"] == 1144, final
    assert problem_lines(log_lines(fake.access_point, err), "tobekilled")


# --- (f) issue 14, 1 and 1b: a OneToOne job whose spec the pilot cannot find ----------------------------


def test_one_to_one_job_that_never_starts_is_reported_where_harvester_reads_and_the_run_ends(
    mpiexec: Path, tmp_path: Path, launcher_tmp: Path
) -> None:
    # Harvester's jobSpecFile is pandaJobData.out (a site's setting); the pilot is not given the config
    files = HarvesterFiles(jobSpecFile="pandaJobData.out")
    job = plain_job(7001, "print('never runs')")
    with FakeHarvester(tmp_path / "ap", [job], files=files, period_s=0.5) as fake:
        # job_wait_s far beyond the test's patience: the run must end because its one job has ended
        proc = start_pilot(pilot_args(fake, "--set", "harvester.job_wait_s=3600"), launcher_tmp)
        try:
            err = finish(proc, 120, fake)
        finally:
            if proc.poll() is None:
                kill_tree(proc)
                proc.communicate()
        assert proc.returncode == 3, describe(fake, err)  # a job failed
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, err)
    assert fake.violations == [], describe(fake, err)  # none misplaced, final status before kill_worker
    final = fake.final_attributes(7001)
    assert final is not None and final["jobStatus"] == "failed", describe(fake, err)
    assert final["pilotErrorCode"] == 1008 and "pandaJobData.out" in final["pilotErrorDiag"]
    assert "harvester.config_file" in final["pilotErrorDiag"]
    assert isinstance(fake.job_report(7001), dict)
    assert fake.misplaced_reports() == []
    assert not (fake.access_point / "7001" / "worker_attributes.json").exists()
