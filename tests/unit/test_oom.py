"""The kernel's OOM killer tells itself by the cgroup's ``oom_kill`` counter: 1212, not 1200."""

from __future__ import annotations

import sys
from pathlib import Path

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.payload.exitcodes import OomCounter, killed_by_oom, oom_files, oom_kill_count
from hpcpilot.payload.per_range import PerRangeRunner
from hpcpilot.payload.streaming import StreamingRunner
from tests.unit.test_runners import context, es_job, range_item, wait

DATA = Path(__file__).resolve().parent.parent / "data" / "cgroup"
ROOT = Path("/sys/fs/cgroup")


def test_the_counter_is_read_from_v2_and_v1_files() -> None:
    assert oom_kill_count((DATA / "memory.events").read_text()) == 2
    assert oom_kill_count((DATA / "memory.oom_control").read_text()) == 5
    assert oom_kill_count("low 0\nhigh 0\n") is None


def test_the_cgroup_file_follows_proc_self_cgroup() -> None:
    v2 = oom_files((DATA / "proc_self_cgroup_v2").read_text(), ROOT)
    assert v2[0] == ROOT / "user.slice/user-1000.slice/session-3.scope/memory.events"
    assert ROOT / "memory.events" in v2
    v1 = oom_files((DATA / "proc_self_cgroup_v1").read_text(), ROOT)
    assert v1[0] == ROOT / "memory/slurm/uid_1000/job_42/step_0/memory.oom_control"


def test_the_counter_reads_through_the_injected_reader() -> None:
    files = {ROOT / "memory.events": (DATA / "memory.events").read_text()}

    def read(path: Path) -> str:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    # the cgroup's own directory is not visible (a cgroup namespace): the mount's root is read
    counter = OomCounter(read, (DATA / "proc_self_cgroup_v2").read_text(), ROOT)
    assert counter.count() == 2
    assert OomCounter(read, "", ROOT).count() is None


def test_only_an_unexplained_sigkill_with_a_grown_counter_is_the_oom_killer() -> None:
    assert killed_by_oom(-9, 2, 3) and killed_by_oom(137, 0, 1)
    assert not killed_by_oom(-9, 2, 2)
    assert not killed_by_oom(-15, 2, 3)
    assert not killed_by_oom(-9, None, 3)


class _Growing(OomCounter):
    """The counter grows by one at every read after the first: the kernel killed something."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.value = 0
        self.step = step

    def count(self) -> int | None:
        value = self.value
        self.value += self.step
        return value


def _sigkilled_range(tmp_path: Path, step: int) -> RangeResult:
    job = Job(
        panda_id=3,
        transformation=sys.executable,
        job_pars="-c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'",
        event_service=True,
        output_files=(FileSpec("out.h5"),),
    )
    runner = PerRangeRunner(context(tmp_path, job))
    runner._oom = _Growing(step)
    runner.submit(range_item(tmp_path, job, 1))
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.state is RangeState.FAILED
    return result


def test_a_payload_killed_by_the_kernel_fails_with_1212(tmp_path: Path) -> None:
    result = _sigkilled_range(tmp_path, step=1)
    assert result.error_code is ErrorCode.PAYLOAD_OUT_OF_MEMORY
    assert "OOM" in result.error_diag


def test_a_sigkill_without_an_oom_kill_stays_1200(tmp_path: Path) -> None:
    assert _sigkilled_range(tmp_path, step=0).error_code is ErrorCode.KILL_SIGNAL


def test_a_streaming_payload_killed_by_the_kernel_fails_its_range_with_1212(tmp_path: Path) -> None:
    job = es_job('-c "import os, signal, sys; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGKILL)"')
    runner = StreamingRunner(context(tmp_path, job))
    runner._oom = _Growing(1)
    runner.submit(range_item(tmp_path, job, 1))
    assert runner.pids() and runner.log_files()[0].name == "r0001-s000.out"
    [result] = wait(runner)
    assert isinstance(result, RangeResult) and result.error_code is ErrorCode.PAYLOAD_OUT_OF_MEMORY
    assert runner.pids() == ()


_IN_CGROUP = """
import json, os, sys
from pathlib import Path
Path(sys.argv[1], "cgroup.procs").write_text(str(os.getpid()))  # into the test's cgroup, payloads too
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.payload.per_range import PerRangeRunner
from tests.unit.test_runners import context, range_item, wait
tmp = Path(sys.argv[2])
job = Job(
    panda_id=3,
    transformation=sys.executable,
    job_pars="-c 'b = bytearray(1024 * 1024 * 1024)'",
    event_service=True,
    output_files=(FileSpec("out.h5"),),
)
runner = PerRangeRunner(context(tmp, job))
runner.submit(range_item(tmp, job, 1))
[result] = wait(runner, 60)
print(json.dumps({"code": int(result.error_code), "diag": result.error_diag}))
"""

LIMIT = 128 * 1024 * 1024


def _memory_cgroup(name: str) -> Path | None:
    """A new memory cgroup limited to `LIMIT` without swap (v1 or v2), or None if none may be made."""
    v1 = ROOT / "memory"
    v2 = ROOT / "cgroup.subtree_control"
    try:
        if (v1 / "memory.limit_in_bytes").exists():
            path = v1 / name
            path.mkdir()
            (path / "memory.limit_in_bytes").write_text(str(LIMIT))
            (path / "memory.swappiness").write_text("0")
            return path
        if "memory" in v2.read_text().split():
            path = ROOT / name
            path.mkdir()
            (path / "memory.max").write_text(str(LIMIT))
            (path / "memory.swap.max").write_text("0")
            return path
    except OSError:
        return None
    return None


def test_the_kernel_oom_killer_for_real_gives_1212(tmp_path: Path) -> None:
    """A payload over its cgroup's memory limit is killed by the kernel: the range fails with 1212."""
    import json
    import os
    import signal
    import subprocess

    from tests.conftest import REPO, need, pilot_env

    cgroup = _memory_cgroup(f"hpcpilot-oom-test-{os.getpid()}")
    need(cgroup is not None, "a memory cgroup this test may create (root, cgroup v1 or v2 memory)")
    assert cgroup is not None
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _IN_CGROUP, str(cgroup), str(tmp_path)],
            cwd=REPO,
            env=pilot_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the group this test ends, if it must
        )
        try:
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        assert child.returncode == 0, err[-2000:]
        result = json.loads(out.splitlines()[-1])
        assert result["code"] == int(ErrorCode.PAYLOAD_OUT_OF_MEMORY), result
        assert "OOM" in result["diag"]
    finally:
        cgroup.rmdir()
