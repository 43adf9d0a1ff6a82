"""The payload runners, driven directly as the worker drives them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from hpcpilot.config.schema import PayloadSettings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import PayloadResult, RangeResult
from hpcpilot.payload.base import ItemResult, SlotContext, SlotRunner, WorkItem
from hpcpilot.payload.per_range import PerRangeRunner
from hpcpilot.payload.plain import PlainRunner
from hpcpilot.payload.sleep import SleepRunner
from hpcpilot.payload.streaming import StreamingRunner

PY = sys.executable


def context(tmp_path: Path, job: Job, timeout_s: float = 0.0) -> SlotContext:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return SlotContext(
        job,
        tmp_path,
        tmp_path / "logs",
        "r0001-s000",
        PayloadSettings(kill_grace_s=1.0, timeout_s=timeout_s),
        dict(os.environ),
    )


def wait(runner: SlotRunner, timeout: float = 30.0) -> list[ItemResult]:
    deadline = time.monotonic() + timeout
    while True:
        results = runner.poll()
        if results:
            return results
        assert time.monotonic() < deadline, f"runner never finished in {timeout} s"
        time.sleep(0.005)


def range_item(tmp_path: Path, job: Job, i: int, attempt: int = 1) -> WorkItem:
    rng = EventRange(f"1-{job.panda_id}-1-{i}-1", 10 * i + 1, 10 * i + 10, "in.root")
    return WorkItem(job, rng, tmp_path / f"out.h5.{rng.range_id}", attempt)


def es_job(pars: str) -> Job:
    return Job(
        panda_id=3,
        transformation=PY,
        job_pars=pars,
        event_service=True,
        output_files=(FileSpec("out.h5"),),
    )


def test_per_range_fills_placeholders_and_checksums_output(tmp_path: Path) -> None:
    job = es_job(
        "-m hpcpilot.demo.simulate --range-id {eventRangeID} --first {startEvent} "
        "--last {lastEvent} --output {outputFile} --lfn {LFN}"
    )
    runner = PerRangeRunner(context(tmp_path, job))
    item = range_item(tmp_path, job, 2)
    runner.submit(item)
    assert runner.busy
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.state is RangeState.FINISHED
    assert result.output is not None and result.output.path == str(item.output)
    assert result.output.adler32 == adler32_of_file(Path(result.output.path))
    assert result.n_events == 10 and not runner.busy
    log = (tmp_path / "logs" / "r0001-s000.out").read_text()
    assert "=== range 1-3-1-2-1 attempt 1" in log


def test_per_range_failure_carries_code_and_stderr(tmp_path: Path) -> None:
    job = es_job("-c \"import sys; sys.stderr.write('no luck {eventRangeID}'); sys.exit(5)\"")
    runner = PerRangeRunner(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.state is RangeState.FAILED
    assert result.error_code is ErrorCode.PAYLOAD_EXECUTION_FAILURE
    assert "code 5" in result.error_diag and "no luck 1-3-1-1-1" in result.error_diag


def test_per_range_missing_output_is_1165(tmp_path: Path) -> None:
    runner = PerRangeRunner(context(tmp_path, es_job("-c pass")))
    runner.submit(range_item(tmp_path, es_job("-c pass"), 1))
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.MISSING_OUTPUT_FILE


def test_per_range_time_limit_kills_the_group(tmp_path: Path) -> None:
    job = es_job('-c "import time; time.sleep(60)"')
    runner = PerRangeRunner(context(tmp_path, job, timeout_s=0.3))
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)  # within wait's deadline: killed, not waited for the 60 s
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.REACHED_MAX_TIME


def test_missing_executable_fails_the_range_not_the_worker(tmp_path: Path) -> None:
    job = Job(panda_id=3, transformation="/nonexistent/payload", event_service=True)
    runner = PerRangeRunner(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.SETUP_FAILURE
    assert "/nonexistent/payload" in result.error_diag


def test_streaming_runs_many_ranges_in_one_process(tmp_path: Path) -> None:
    job = es_job("-m hpcpilot.demo.simulate --stream --fail-events 25")
    runner = StreamingRunner(context(tmp_path, job))
    states = []
    pids = set()
    for i in range(4):
        runner.submit(range_item(tmp_path, job, i))
        [result] = wait(runner)
        assert isinstance(result, RangeResult)
        states.append(result.state)
        assert runner._proc is not None
        pids.add(runner._proc.pid)
    assert states == [
        RangeState.FINISHED,
        RangeState.FINISHED,
        RangeState.FAILED,
        RangeState.FINISHED,
    ]
    assert len(pids) == 1  # one long-lived payload
    runner.close()
    deadline = time.monotonic() + 10
    while not runner.closed:
        runner.poll()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_streaming_payload_that_dies_fails_the_range_and_restarts(tmp_path: Path) -> None:
    job = es_job('-c "import sys; sys.stdin.readline(); sys.exit(7)"')
    runner = StreamingRunner(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.state is RangeState.FAILED
    assert "code 7" in result.error_diag
    assert runner.closed
    runner.submit(range_item(tmp_path, job, 2))  # a new process is started
    [again] = wait(runner)
    assert isinstance(again, RangeResult) and again.range_id.endswith("-2-1")


def test_plain_job_outputs_and_missing_outputs(tmp_path: Path) -> None:
    writes_one = Job(
        panda_id=4,
        transformation=PY,
        job_pars="-c \"open('a.dat','w').write('x'*10)\"",
        output_files=(FileSpec("a.dat"), FileSpec("b.dat")),
    )
    runner = PlainRunner(context(tmp_path, writes_one))
    runner.submit(WorkItem(writes_one, None, None))
    [result] = wait(runner)
    assert isinstance(result, PayloadResult) and not result.ok
    assert result.error_code is ErrorCode.MISSING_OUTPUT_FILE and "b.dat" in result.error_diag
    assert [Path(o.path).name for o in result.outputs] == ["a.dat"]
    good = Job(
        panda_id=5,
        transformation=PY,
        job_pars="-c \"open('a.dat','w').write('y')\"",
        output_files=(FileSpec("a.dat"),),
    )
    runner = PlainRunner(context(tmp_path, good))
    runner.submit(WorkItem(good, None, None))
    [result] = wait(runner)
    assert isinstance(result, PayloadResult) and result.ok and result.exit_code == 0


def test_sleep_runner_finishes_after_its_duration(tmp_path: Path) -> None:
    job = Job(panda_id=6, transformation="sleep", job_pars="0.05", event_service=True)
    runner = SleepRunner(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    assert runner.poll() == []
    wake = runner.wake_in_s()
    assert wake is not None and 0 < wake <= 0.05
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.state is RangeState.FINISHED
    assert result.wall_s >= 0.05


def test_sleep_runner_rejects_a_non_number(tmp_path: Path) -> None:
    from hpcpilot.model.errors import PayloadError

    with pytest.raises(PayloadError, match="jobPars"):
        SleepRunner(context(tmp_path, Job(panda_id=6, job_pars="soon", event_service=True)))


def test_streaming_range_over_the_time_limit_is_killed(tmp_path: Path) -> None:
    job = es_job('-c "import sys, time; sys.stdin.readline(); time.sleep(60)"')
    runner = StreamingRunner(context(tmp_path, job, timeout_s=0.3))
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)  # within wait's deadline: killed, not waited for the 60 s
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.REACHED_MAX_TIME
    assert runner.closed


@pytest.mark.parametrize("runner_class", [PerRangeRunner, StreamingRunner])
def test_kill_stops_the_running_item_with_the_given_code(
    tmp_path: Path, runner_class: type[SlotRunner]
) -> None:
    job = es_job('-c "import sys, time; sys.stdin.readline(); time.sleep(60)"')
    runner = runner_class(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    time.sleep(0.2)
    assert runner.poll() == []
    runner.kill(ErrorCode.KILLED_BY_PANDA, "tobekilled")
    [result] = wait(runner)  # within wait's deadline: killed, not waited for the 60 s
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.KILLED_BY_PANDA
    assert result.error_diag.startswith("tobekilled")
    assert runner.closed


def test_kill_ends_a_sleep_range_at_once(tmp_path: Path) -> None:
    job = Job(panda_id=3, job_pars="60", event_service=True)
    runner = SleepRunner(context(tmp_path, job))
    runner.submit(range_item(tmp_path, job, 1))
    runner.kill(ErrorCode.KILLED_BY_PANDA, "tobekilled")
    [result] = runner.poll()
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.KILLED_BY_PANDA
