"""The PBS plugin against recorded qsub/qstat output (PBS Pro and Torque)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcpilot.batch.pbs import (
    PbsBatchSystem,
    parse_nodefile,
    parse_pbs_time,
    parse_qstat_full,
    pbs_end_time,
    pbs_state,
)
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.model.errors import BatchSystemError
from tests.fakes.batchq import Replay, recorded

S = BatchJobState
NOW = datetime(2026, 11, 25, 10, 20, 50).timestamp()


@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("R", S.RUNNING),
        ("E", S.RUNNING),
        ("C", S.FINISHED),
        ("H", S.FINISHED),
        ("Q", S.SUBMITTED),
        ("W", S.SUBMITTED),
        ("S", S.SUBMITTED),
        ("B", S.RUNNING),
        ("F", S.FINISHED),
        ("X", S.FINISHED),
        ("T", S.SUBMITTED),
        ("M", S.SUBMITTED),
        ("U", S.FAILED),
        ("?", S.FAILED),
    ],
)
def test_state_mapping(code: str, state: BatchJobState) -> None:
    assert pbs_state(code) is state


def test_plugin_facts() -> None:
    assert (PbsBatchSystem.name, PbsBatchSystem.template, PbsBatchSystem.default_launcher) == (
        "pbs",
        "pbs.sh",
        "mpiexec",
    )
    assert PbsBatchSystem.in_allocation({"PBS_JOBID": "1.s"})
    assert not PbsBatchSystem.in_allocation({"SLURM_JOB_ID": "1"})


# --- parsers --------------------------------------------------------------------------------------


def test_qstat_full_pbspro_with_continuation_lines() -> None:
    jobs = parse_qstat_full(recorded("qstat/full_pbspro_running.txt"))
    assert list(jobs) == ["1234.pbs01"]
    fields = jobs["1234.pbs01"]
    assert fields["job_state"] == "R"
    assert fields["stime"] == "Wed Nov 25 10:00:00 2026"
    assert fields["Resource_List.walltime"] == "01:00:00"
    assert fields["exec_vnode"] == "(x3001c0s13b0n0:ncpus=64:ngpus=4)+(x3001c0s13b1n0:ncpus=64:ngpus=4)"
    assert fields["Variable_List"].endswith("PBS_O_QUEUE=workq,PBS_O_HOST=login01.example.org")
    assert fields["project"] == "_pbs_project_default"
    assert pbs_end_time(fields, NOW) == datetime(2026, 11, 25, 11, 0, 0).timestamp()


def test_qstat_full_torque_uses_walltime_remaining() -> None:
    fields = parse_qstat_full(recorded("qstat/full_torque_running.txt"))["5678.torque01.example.org"]
    assert fields["Walltime.Remaining"] == "5950"
    assert pbs_end_time(fields, NOW) == NOW + 5950
    # without Walltime.Remaining: Torque's start_time + walltime
    del fields["Walltime.Remaining"]
    assert pbs_end_time(fields, NOW) == datetime(2026, 11, 25, 12, 0, 0).timestamp()


def test_qstat_full_several_jobs_and_states() -> None:
    run = PbsBatchSystem(Replay(), {})
    assert run.parse_status(recorded("qstat/full_torque_mixed.txt")) == {
        "68350.mycluster": S.SUBMITTED,
        "69301.mycluster": S.RUNNING,
        "69302.mycluster": S.FINISHED,
        "70001.mycluster": S.FINISHED,
    }
    jobs = parse_qstat_full(recorded("qstat/full_torque_mixed.txt"))
    assert jobs["68350.mycluster"]["Error_Path"].endswith("/PTOscaletest/testjob.err")
    assert pbs_end_time(jobs["68350.mycluster"], NOW) is None  # queued: no start yet
    assert pbs_end_time(jobs["69301.mycluster"], NOW) == datetime(2013, 4, 23, 1, 36, 59).timestamp()


def test_finished_job_from_history() -> None:
    states = PbsBatchSystem(Replay(), {}).parse_status(recorded("qstat/full_pbspro_finished.txt"))
    assert states == {"1234.pbs01": S.FINISHED}


def test_qstat_garbage_names_command_and_field() -> None:
    with pytest.raises(BatchSystemError, match="before any 'Job Id:'") as info:
        parse_qstat_full("qstat: cannot connect to server pbs01 (errno=111)\n")
    assert info.value.context == {"command": "qstat -f", "field": "Job Id"}
    with pytest.raises(BatchSystemError, match="without job_state") as err:
        PbsBatchSystem(Replay(), {}).parse_status("Job Id: 1.s\n    queue = q\n")
    assert err.value.context["field"] == "job_state"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"Walltime.Remaining": "soon"}, "Walltime.Remaining"),
        (
            {"Resource_List.walltime": "an hour", "stime": "Wed Nov 25 10:00:00 2026"},
            "Resource_List.walltime",
        ),
        ({"Resource_List.walltime": "01:00:00", "stime": "25.11.2026 10:00"}, "stime"),
    ],
)
def test_end_time_garbage_names_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(BatchSystemError) as info:
        pbs_end_time(fields, NOW)
    assert info.value.context == {"command": "qstat -f", "field": field}


def test_parse_pbs_time_forms() -> None:
    assert (
        parse_pbs_time("Tue Apr  9 15:01:47 2013", field="ctime")
        == datetime(2013, 4, 9, 15, 1, 47).timestamp()
    )
    assert parse_pbs_time("1795600869", field="history_timestamp") == 1795600869.0


def test_parse_nodefile_torque_and_pbspro() -> None:
    assert parse_nodefile("n1\nn1\nn2\nn2\n") == (("n1", "n2"), {"n1": 2, "n2": 2})
    assert parse_nodefile("n2\nn1\n\n") == (("n2", "n1"), {"n2": 1, "n1": 1})


def test_submit_argv_and_parse() -> None:
    pbs = PbsBatchSystem(Replay(), {})
    argv = pbs.submit_argv(Path("/a b/pilot.sh"), Path("/w; rm -rf x"), ["-A", "p 1"])
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["qsub", "/w; rm -rf x", "/a b/pilot.sh", "-A", "p 1"]
    assert pbs.parse_submit(recorded("qsub/pbspro.txt")) == "1234.pbs01"
    assert pbs.parse_submit(recorded("qsub/torque.txt")) == "5678.torque01.example.org"
    assert pbs.parse_submit("12[].pbs01\n") == "12[].pbs01"
    with pytest.raises(BatchSystemError, match="qsub printed no job id") as info:
        pbs.parse_submit("qsub: Unknown queue\n")
    assert info.value.context["command"] == "qsub"
    assert pbs.status_argv(["1", "2.s"]) == ["qstat", "-f", "1", "2.s"]
    assert pbs.cancel_argv("1.s") == ["qdel", "1.s"]


# --- discovery ------------------------------------------------------------------------------------


def _env(tmp_path: Path, lines: str, **extra: str) -> dict[str, str]:
    nodefile = tmp_path / "nodes"
    nodefile.write_text(lines)
    return {"PBS_JOBID": "1234.pbs01", "PBS_NODEFILE": str(nodefile), "PBS_QUEUE": "workq", **extra}


def test_discover_pbspro(tmp_path: Path) -> None:
    run = Replay({("qstat", "-f", "1234.pbs01"): recorded("qstat/full_pbspro_running.txt")})
    env = _env(tmp_path, "x3001c0s13b0n0\nx3001c0s13b1n0\n", NCPUS="64", PBS_ACCOUNT="proj01")
    alloc = PbsBatchSystem(run, env, clock=lambda: NOW).discover()
    assert alloc.batch_system == "pbs"
    assert alloc.job_id == "1234.pbs01"
    assert alloc.nodes == ("x3001c0s13b0n0", "x3001c0s13b1n0")
    assert alloc.cores_per_node == 64
    assert alloc.gpus_per_node == 4  # ngpus 8 over nodect 2
    assert (alloc.queue, alloc.account) == ("workq", "proj01")
    assert alloc.end_time == datetime(2026, 11, 25, 11, 0, 0).timestamp()


def test_discover_torque_counts_cores_in_the_nodefile(tmp_path: Path) -> None:
    run = Replay({("qstat", "-f", "5678"): recorded("qstat/full_torque_running.txt")})
    env = _env(tmp_path, "node025\n" * 4 + "node026\n" * 4, PBS_JOBID="5678", PBS_QUEUE="")
    alloc = PbsBatchSystem(run, env, clock=lambda: NOW).discover()
    assert alloc.nodes == ("node025", "node026")
    assert alloc.cores_per_node == 4
    assert alloc.gpus_per_node == 0
    assert alloc.queue == "batch"  # from qstat when PBS_QUEUE is empty
    assert alloc.end_time == NOW + 5950


def test_discover_ppn_beats_nodefile(tmp_path: Path) -> None:
    run = Replay({("qstat", "-f", "1234.pbs01"): recorded("qstat/full_torque_running.txt")})
    alloc = PbsBatchSystem(run, _env(tmp_path, "a\nb\n", PBS_NUM_PPN="16"), clock=lambda: NOW).discover()
    assert alloc.cores_per_node == 16


def test_discover_errors(tmp_path: Path) -> None:
    run = Replay({("qstat", "-f", "1234.pbs01"): recorded("qstat/full_pbspro_running.txt")})
    with pytest.raises(BatchSystemError, match="cannot read the node file") as info:
        PbsBatchSystem(run, {"PBS_JOBID": "1234.pbs01", "PBS_NODEFILE": str(tmp_path / "none")}).discover()
    assert info.value.context["field"] == "PBS_NODEFILE"
    with pytest.raises(BatchSystemError, match="not a number") as err:
        PbsBatchSystem(run, _env(tmp_path, "a\n", NCPUS="many")).discover()
    assert err.value.context["field"] == "NCPUS"
    with pytest.raises(BatchSystemError, match="empty"):
        PbsBatchSystem(run, _env(tmp_path, "\n")).discover()
    failing = Replay()
    failing.add(["qstat", "-f", "1234.pbs01"], "", code=1, stderr="qstat: cannot connect to server")
    with pytest.raises(BatchSystemError, match="cannot connect") as fail:
        PbsBatchSystem(failing, _env(tmp_path, "a\n")).discover()
    assert fail.value.context["command"] == "qstat -f 1234.pbs01"


# --- poll -----------------------------------------------------------------------------------------


def test_poll_matches_short_ids_and_looks_up_history() -> None:
    run = Replay()
    run.add(
        ["qstat", "-f", "69301", "1234.pbs01", "99.pbs01"],
        recorded("qstat/full_torque_mixed.txt").split("\n\nJob Id: 69302")[0] + "\n",
        code=153,
        stderr=recorded("qstat/finished_no_history.stderr") + recorded("qstat/unknown_job.stderr"),
    )
    run.add(
        ["qstat", "-x", "-f", "1234.pbs01", "99.pbs01"],
        recorded("qstat/full_pbspro_finished.txt"),
        code=153,
        stderr=recorded("qstat/unknown_job.stderr"),
    )
    states = PbsBatchSystem(run, {}).poll(["69301", "1234.pbs01", "99.pbs01"])
    assert states == {"69301": S.RUNNING, "1234.pbs01": S.FINISHED}


def test_poll_without_history_leaves_jobs_out() -> None:
    run = Replay()
    run.add(["qstat", "-f", "7"], "", code=153, stderr="qstat: Unknown Job Id 7.torque01\n")
    run.add(["qstat", "-x", "-f", "7"], "<Data><Job><Job_Id>7.torque01</Job_Id></Job></Data>")  # Torque XML
    assert PbsBatchSystem(run, {}).poll(["7"]) == {}


def test_poll_real_errors_raise() -> None:
    run = Replay()
    run.add(["qstat", "-f", "7"], "", code=2, stderr="qstat: cannot connect to server pbs01 (errno=111)")
    with pytest.raises(BatchSystemError, match="errno=111") as info:
        PbsBatchSystem(run, {}).poll(["7"])
    assert info.value.retryable


def test_submit_failure_names_qsub() -> None:
    run = Replay()
    argv = PbsBatchSystem(run, {}).submit_argv(Path("/s.sh"), Path("/w"))
    run.add(argv, "", code=1, stderr="qsub: Unknown queue")
    with pytest.raises(BatchSystemError, match="qsub failed: qsub: Unknown queue"):
        PbsBatchSystem(run, {}).submit(Path("/s.sh"), Path("/w"))
