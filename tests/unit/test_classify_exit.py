"""One chain decides why an item's process ended: `classify_exit`, used by both process runners."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from hpcpilot.config.schema import PayloadSettings
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.ranges import EventRange
from hpcpilot.model.results import RangeResult
from hpcpilot.payload.base import ItemResult, SlotContext, SlotRunner, WorkItem
from hpcpilot.payload.exitcodes import classify_exit
from hpcpilot.payload.per_range import PerRangeRunner
from hpcpilot.payload.streaming import StreamingRunner

KILL = (ErrorCode.KILLED_BY_PANDA, "tobekilled")


# --- the pure function, one test per rule --------------------------------------------------------


def test_a_kill_by_the_pilot_wins_over_everything() -> None:
    got = classify_exit(-signal.SIGKILL, killed=KILL, timed_out=True, limit_s=5, oom_before=0, oom_after=1)
    assert got == KILL


def test_a_time_limit_wins_over_the_oom_killer_and_the_signal() -> None:
    code, diag = classify_exit(-signal.SIGKILL, timed_out=True, limit_s=5, oom_before=0, oom_after=1)
    assert code is ErrorCode.REACHED_MAX_TIME and diag == "payload exceeded its time limit of 5 s"
    assert classify_exit(-signal.SIGTERM, timed_out=True, limit_s=2, subject="range")[1] == (
        "range exceeded its time limit of 2 s"
    )


@pytest.mark.parametrize("returncode", [-signal.SIGKILL, 128 + signal.SIGKILL])
def test_sigkill_while_the_oom_counter_grew_is_out_of_memory(returncode: int) -> None:
    assert classify_exit(returncode, oom_before=3, oom_after=4)[0] is ErrorCode.PAYLOAD_OUT_OF_MEMORY


@pytest.mark.parametrize(("before", "after"), [(3, 3), (None, 4), (3, None)])
def test_sigkill_without_a_grown_counter_is_a_signal(before: int | None, after: int | None) -> None:
    code, diag = classify_exit(-signal.SIGKILL, oom_before=before, oom_after=after)
    assert code is ErrorCode.KILL_SIGNAL and diag == "payload killed by SIGKILL"


def test_other_signals_and_exit_codes_follow_the_exit_status() -> None:
    assert classify_exit(-signal.SIGSEGV, oom_before=0, oom_after=1)[0] is ErrorCode.SIGSEGV
    assert classify_exit(7) == (ErrorCode.PAYLOAD_EXECUTION_FAILURE, "payload exited with code 7")


def test_exit_0_without_the_item_delivered_is_1305() -> None:
    assert classify_exit(0) == (
        ErrorCode.PAYLOAD_EXECUTION_FAILURE,
        "payload exited without reporting the range",
    )


# --- both runners give the same code for the same end -------------------------------------------


class GrowingCounter:
    """An OOM-kill counter that grows on every read (the kernel killed something in between)."""

    def __init__(self) -> None:
        self.n = 0

    def count(self) -> int:
        self.n += 1
        return self.n


def _context(tmp_path: Path, job: Job, timeout_s: float) -> SlotContext:
    (tmp_path / "logs").mkdir(exist_ok=True)
    settings = PayloadSettings(kill_grace_s=1.0, timeout_s=timeout_s)
    return SlotContext(job, tmp_path, tmp_path / "logs", "r0001-s000", settings, dict(os.environ))


def _wait(runner: SlotRunner) -> ItemResult:
    deadline = time.monotonic() + 30
    while not (results := runner.poll()):
        assert time.monotonic() < deadline, "the runner never finished"
        time.sleep(0.01)
    [result] = results
    return result


# what the payload does once it has its range (the streaming runner's comes on stdin)
ENDS = {
    "exit 7": ("sys.exit(7)", 0.0, False, False, ErrorCode.PAYLOAD_EXECUTION_FAILURE),
    "SIGSEGV": ("os.kill(os.getpid(), signal.SIGSEGV)", 0.0, False, False, ErrorCode.SIGSEGV),
    "SIGKILL": ("os.kill(os.getpid(), signal.SIGKILL)", 0.0, False, False, ErrorCode.KILL_SIGNAL),
    "OOM": ("os.kill(os.getpid(), signal.SIGKILL)", 0.0, True, False, ErrorCode.PAYLOAD_OUT_OF_MEMORY),
    "timeout": ("time.sleep(60)", 0.3, True, False, ErrorCode.REACHED_MAX_TIME),
    "kill": ("time.sleep(60)", 0.0, True, True, ErrorCode.KILLED_BY_PANDA),
}


@pytest.mark.parametrize("end", list(ENDS))
@pytest.mark.parametrize("runner_class", [PerRangeRunner, StreamingRunner])
def test_both_runners_give_the_same_code_for_the_same_end(
    tmp_path: Path, runner_class: type[PerRangeRunner | StreamingRunner], end: str
) -> None:
    action, timeout_s, oom_grows, kill, expected = ENDS[end]
    code = f"import os, signal, sys, time; sys.stdin.readline(); {action}"
    job = Job(
        panda_id=3,
        transformation=sys.executable,
        job_pars=f'-c "{code}"',
        event_service=True,
        output_files=(FileSpec("out.h5"),),
    )
    runner = runner_class(_context(tmp_path, job, timeout_s))
    if oom_grows:
        runner._oom = GrowingCounter()  # type: ignore[assignment]  # the cgroup's counter, grown
    rng = EventRange("1-3-1-1-1", 1, 10, "in.root")
    runner.submit(WorkItem(job, rng, tmp_path / "out.h5.1", 1))
    if kill:
        time.sleep(0.2)
        runner.kill(*KILL)
    result = _wait(runner)
    assert isinstance(result, RangeResult) and result.error_code is expected
