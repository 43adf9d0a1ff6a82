"""The Slurm plugin against recorded sbatch/squeue/scontrol output."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcpilot.batch.slurm import (
    SlurmBatchSystem,
    parse_scontrol_job,
    parse_slurm_time,
    scontrol_end_time,
    slurm_state,
)
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.model.errors import BatchSystemError
from tests.fakes.batchq import Replay, recorded

S = BatchJobState
END = datetime(2026, 11, 25, 14, 3, 12).timestamp()
ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "nid00[0099,0156-0157]",
    "SLURM_JOB_CPUS_PER_NODE": "64(x3)",
    "SLURM_CPUS_ON_NODE": "64",
    "SLURM_JOB_PARTITION": "regular",
    "SLURM_JOB_ACCOUNT": "m1234",
}
SQUEUE_END = ("squeue", "-h", "-j", "4242", "-o", "%e")
SCONTROL = ("scontrol", "show", "job", "4242")


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("RUNNING", S.RUNNING),
        ("COMPLETING", S.RUNNING),
        ("SUSPENDED", S.RUNNING),
        ("COMPLETED", S.FINISHED),
        ("PREEMPTED", S.FINISHED),
        ("TIMEOUT", S.FINISHED),
        ("CANCELLED", S.CANCELLED),
        ("CANCELLED by 0", S.CANCELLED),
        ("CANCELLED+", S.CANCELLED),
        ("PENDING", S.SUBMITTED),
        ("CONFIGURING", S.SUBMITTED),
        ("FAILED", S.FAILED),
        ("NODE_FAIL", S.FAILED),
        ("OUT_OF_MEMORY", S.FAILED),
        ("BOOT_FAIL", S.FAILED),
        ("DEADLINE", S.FAILED),
        ("running", S.RUNNING),
    ],
)
def test_state_mapping(name: str, state: BatchJobState) -> None:
    assert slurm_state(name) is state


def test_plugin_facts() -> None:
    assert (SlurmBatchSystem.name, SlurmBatchSystem.template, SlurmBatchSystem.default_launcher) == (
        "slurm",
        "slurm.sh",
        "srun",
    )
    assert SlurmBatchSystem.in_allocation({"SLURM_JOB_ID": "1"})
    assert not SlurmBatchSystem.in_allocation({"PBS_JOBID": "1"})


# --- builders and parsers -----------------------------------------------------------------------


def test_submit_argv_and_parse() -> None:
    slurm = SlurmBatchSystem(Replay(), {})
    assert slurm.submit_argv(Path("/a/pilot.sh"), Path("/w d")) == ["sbatch", "-D", "/w d", "/a/pilot.sh"]
    assert slurm.submit_argv(Path("/s"), Path("/w"), ["--account", "m1"]) == [
        "sbatch",
        "--account",
        "m1",
        "-D",
        "/w",
        "/s",
    ]
    assert slurm.parse_submit(recorded("sbatch/submitted.txt")) == "4242"
    assert slurm.parse_submit(recorded("sbatch/parsable_cluster.txt")) == "4242"
    assert slurm.parse_submit("Submitted batch job 77 on cluster c2\n") == "77"


def test_parse_submit_garbage_names_the_command() -> None:
    with pytest.raises(BatchSystemError, match="sbatch printed no job id") as info:
        SlurmBatchSystem(Replay(), {}).parse_submit("sbatch: error: Batch job submission failed\n")
    assert info.value.context["command"] == "sbatch"
    assert info.value.context["field"] == "job id"


def test_status_argv_and_recorded_states() -> None:
    slurm = SlurmBatchSystem(Replay(), {})
    assert slurm.status_argv(["1", "2"]) == ["squeue", "-h", "-t", "all", "-j", "1,2", "-o", "%i %T"]
    assert slurm.parse_status(recorded("squeue/states.txt")) == {
        "4242": S.RUNNING,
        "4243": S.SUBMITTED,
        "4244": S.RUNNING,
        "4245": S.CANCELLED,
        "4246": S.FINISHED,
        "4247": S.FAILED,
        "4248": S.SUBMITTED,
    }
    assert slurm.cancel_argv("4242") == ["scancel", "4242"]


def test_parse_status_garbage() -> None:
    with pytest.raises(BatchSystemError, match="not 'JOBID STATE'") as info:
        SlurmBatchSystem(Replay(), {}).parse_status("4242\n")
    assert info.value.context["field"] == "state"


def test_scontrol_fields_of_a_running_job() -> None:
    fields = parse_scontrol_job(recorded("scontrol/show_job_running.txt"))
    assert fields["JobId"] == "4242"
    assert fields["JobState"] == "RUNNING"
    assert fields["NodeList"] == "n[1-2]"
    assert fields["WorkDir"] == "/work/run one"  # runs to the end of its line
    assert fields["Command"] == "/work/run one/pilot.sh"
    assert fields["TimeLimit"] == "01:00:00"
    assert scontrol_end_time(fields) == END


@pytest.mark.parametrize(
    ("name", "end"),
    [
        ("show_job_unlimited.txt", None),
        # EndTime=Unknown: StartTime + TimeLimit (1-00:30:00)
        ("show_job_no_endtime.txt", datetime(2026, 11, 25, 13, 3, 12).timestamp() + 86400 + 1800),
    ],
)
def test_scontrol_end_time_variants(name: str, end: float | None) -> None:
    assert scontrol_end_time(parse_scontrol_job(recorded(f"scontrol/{name}"))) == end


def test_scontrol_garbage_names_the_field() -> None:
    with pytest.raises(BatchSystemError, match="no JobId") as info:
        parse_scontrol_job("slurm_load_jobs error: Socket timed out\n")
    assert info.value.context["field"] == "JobId"
    with pytest.raises(BatchSystemError, match="EndTime") as err:
        scontrol_end_time({"JobId": "1", "TimeLimit": "01:00:00", "EndTime": "tomorrow"})
    assert err.value.context == {"command": "scontrol show job", "field": "EndTime"}


@pytest.mark.parametrize(
    ("text", "value"),
    [("2026-11-25T14:03:12\n", END), ("N/A", None), ("NONE", None), ("UNLIMITED", None), ("Unknown", None)],
)
def test_parse_slurm_time(text: str, value: float | None) -> None:
    assert parse_slurm_time(text, command="squeue", field="EndTime") == value


def test_parse_slurm_time_garbage() -> None:
    with pytest.raises(BatchSystemError, match="not a Slurm time") as info:
        parse_slurm_time("25/11/2026", command="squeue -o %e", field="EndTime")
    assert info.value.context == {"command": "squeue -o %e", "field": "EndTime"}


# --- discovery ------------------------------------------------------------------------------------


def test_discover_from_env_and_squeue() -> None:
    run = Replay({SQUEUE_END: recorded("squeue/end_time.txt")})
    alloc = SlurmBatchSystem(run, ENV).discover()
    assert alloc.batch_system == "slurm"
    assert alloc.job_id == "4242"
    assert alloc.nodes == ("nid000099", "nid000156", "nid000157")
    assert alloc.cores_per_node == 64
    assert alloc.gpus_per_node == 0
    assert (alloc.queue, alloc.account) == ("regular", "m1234")
    assert alloc.end_time == END
    assert run.calls == [SQUEUE_END]


def test_discover_falls_back_to_scontrol() -> None:
    run = Replay({SCONTROL: recorded("scontrol/show_job_running.txt")})
    run.add(SQUEUE_END, "", code=1, stderr="squeue: error: slurm_receive_msg: Socket timed out")
    alloc = SlurmBatchSystem(run, ENV).discover()
    assert alloc.end_time == END
    assert run.calls == [SQUEUE_END, SCONTROL]


def test_discover_pending_end_asks_scontrol() -> None:
    run = Replay(
        {
            SQUEUE_END: recorded("squeue/end_time_pending.txt"),
            SCONTROL: recorded("scontrol/show_job_unlimited.txt"),
        }
    )
    assert SlurmBatchSystem(run, ENV).discover().end_time is None
    assert run.calls == [SQUEUE_END, SCONTROL]


def test_discover_no_limit() -> None:
    run = Replay({SQUEUE_END: recorded("squeue/end_time_none.txt")})
    assert SlurmBatchSystem(run, ENV).discover().end_time is None
    assert run.calls == [SQUEUE_END]


def test_discover_fails_when_no_query_answers() -> None:
    run = Replay()
    with pytest.raises(BatchSystemError, match="scontrol failed") as info:
        SlurmBatchSystem(run, ENV).discover()
    assert info.value.context["command"] == "scontrol show job 4242"


@pytest.mark.parametrize(
    ("extra", "cores", "gpus"),
    [
        ({"SLURM_JOB_CPUS_PER_NODE": "4(x2),2"}, 2, 0),
        ({"SLURM_JOB_CPUS_PER_NODE": "", "SLURM_CPUS_ON_NODE": "8"}, 8, 0),
        ({"SLURM_JOB_CPUS_PER_NODE": "", "SLURM_CPUS_ON_NODE": ""}, None, 0),
        ({"SLURM_GPUS_ON_NODE": "4"}, 64, 4),
        ({"SLURM_GPUS_PER_NODE": "a100:4"}, 64, 4),
        ({"SLURM_GPUS_PER_NODE": "2"}, 64, 2),
        ({"SLURM_JOB_GPUS": "0,1,2"}, 64, 3),
    ],
)
def test_discover_cores_and_gpus(extra: dict[str, str], cores: int | None, gpus: int) -> None:
    run = Replay({SQUEUE_END: "NONE\n"})
    alloc = SlurmBatchSystem(run, {**ENV, **extra}).discover()
    assert (alloc.cores_per_node, alloc.gpus_per_node) == (cores, gpus)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"SLURM_JOB_NODELIST": "n[1-"}, "SLURM_JOB_NODELIST"),
        ({"SLURM_JOB_CPUS_PER_NODE": "lots"}, "SLURM_JOB_CPUS_PER_NODE"),
        ({"SLURM_JOB_CPUS_PER_NODE": "", "SLURM_CPUS_ON_NODE": "x"}, "SLURM_CPUS_ON_NODE"),
        ({"SLURM_GPUS_PER_NODE": "a100:many"}, "SLURM_GPUS_PER_NODE"),
        ({"SLURM_JOB_ID": ""}, "env"),
    ],
)
def test_discover_bad_env_names_the_variable(extra: dict[str, str], field: str) -> None:
    with pytest.raises(BatchSystemError) as info:
        SlurmBatchSystem(Replay({SQUEUE_END: "NONE\n"}), {**ENV, **extra}).discover()
    assert info.value.context["field"] == field


def test_discover_with_old_nodelist_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "SLURM_JOB_NODELIST"} | {"SLURM_NODELIST": "n[1-2]"}
    alloc = SlurmBatchSystem(Replay({SQUEUE_END: "NONE\n"}), env).discover()
    assert alloc.nodes == ("n1", "n2")


# --- submit / poll / cancel through the runner -------------------------------------------------


def test_submit_and_cancel_through_the_runner() -> None:
    run = Replay({("sbatch", "-D", "/w", "/s.sh"): recorded("sbatch/submitted.txt"), ("scancel", "4242"): ""})
    slurm = SlurmBatchSystem(run, {})
    assert slurm.submit(Path("/s.sh"), Path("/w")) == "4242"
    slurm.cancel("4242")
    assert run.calls[-1] == ("scancel", "4242")


def test_submit_failure_is_retryable_and_names_the_command() -> None:
    run = Replay()
    run.add(["sbatch", "-D", "/w", "/s.sh"], "", code=1, stderr="sbatch: error: invalid partition")
    with pytest.raises(BatchSystemError, match="invalid partition") as info:
        SlurmBatchSystem(run, {}).submit(Path("/s.sh"), Path("/w"))
    assert info.value.retryable
    assert info.value.context["command"] == "sbatch -D /w /s.sh"


def _squeue(ids: str) -> tuple[str, ...]:
    return ("squeue", "-h", "-t", "all", "-j", ids, "-o", "%i %T")


def test_poll_asks_scontrol_for_jobs_squeue_forgot() -> None:
    run = Replay({_squeue("1,2,3"): "1 RUNNING\n"})
    run.add(["scontrol", "show", "job", "2"], recorded("scontrol/show_job_completed.txt"))
    run.add(["scontrol", "show", "job", "3"], "", code=1, stderr=recorded("scontrol/invalid_job.stderr"))
    states = SlurmBatchSystem(run, {}).poll(["1", "2", "3"])
    assert states == {"1": S.RUNNING, "2": S.FINISHED}
    assert run.calls[1:] == [("scontrol", "show", "job", "2"), ("scontrol", "show", "job", "3")]


def test_poll_when_squeue_knows_none_of_them() -> None:
    run = Replay()
    run.add(_squeue("9"), "", code=1, stderr=recorded("squeue/invalid_job.stderr"))
    run.add(["scontrol", "show", "job", "9"], recorded("scontrol/show_job_cancelled.txt"))
    assert SlurmBatchSystem(run, {}).poll(["9"]) == {"9": S.CANCELLED}


def test_poll_other_squeue_errors_raise() -> None:
    run = Replay()
    run.add(_squeue("9"), "", code=1, stderr="squeue: error: Unable to contact slurm controller")
    with pytest.raises(BatchSystemError, match="contact slurm controller") as info:
        SlurmBatchSystem(run, {}).poll(["9"])
    assert info.value.context["exit_code"] == 1


def test_poll_nothing_runs_nothing() -> None:
    run = Replay()
    assert SlurmBatchSystem(run, {}).poll([]) == {}
    assert run.calls == []


# --- real recordings of slurm-wlm 22.05.8 (tests/data/*/real_*.txt) -----------------------------


@pytest.mark.parametrize(
    ("name", "state", "end"),
    [
        ("running", S.RUNNING, "2026-11-25T00:40:43"),
        ("unlimited", S.RUNNING, None),  # TimeLimit=UNLIMITED, EndTime=Unknown
        ("pending", S.SUBMITTED, "2026-11-25T00:54:40"),  # --begin: the planned end
        ("held", S.SUBMITTED, None),  # StartTime=Unknown EndTime=Unknown
        ("timeout", S.FINISHED, "2026-11-25T00:41:04"),
        ("failed", S.FAILED, "2026-11-25T00:39:43"),
        ("cancelled", S.CANCELLED, None),  # unlimited job, cancelled
        ("completed", S.FINISHED, "2026-11-25T00:39:43"),
    ],
)
def test_real_scontrol_records(name: str, state: BatchJobState, end: str | None) -> None:
    fields = parse_scontrol_job(recorded(f"scontrol/real_{name}.txt"))
    assert slurm_state(fields["JobState"]) is state
    expected = None if end is None else datetime.fromisoformat(end).timestamp()
    assert scontrol_end_time(fields) == expected


@pytest.mark.parametrize(
    ("name", "end"),
    [
        ("running", "2026-11-25T00:40:43"),
        ("pending", "2026-11-25T00:54:40"),
        ("unlimited", None),
        ("held", None),
    ],
)
def test_real_squeue_end_times(name: str, end: str | None) -> None:
    text = recorded(f"squeue/real_end_{name}.txt")
    expected = None if end is None else datetime.fromisoformat(end).timestamp()
    assert parse_slurm_time(text, command="squeue -o %e", field="EndTime") == expected


def test_real_poll_of_a_finished_job_squeue_no_longer_lists() -> None:
    run = Replay({_squeue("26"): ""})  # squeue without the job: empty output, exit 0
    run.add(["scontrol", "show", "job", "26"], recorded("scontrol/real_completed.txt"))
    assert SlurmBatchSystem(run, {}).poll(["26"]) == {"26": S.FINISHED}
