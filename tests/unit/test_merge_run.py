"""Running a merge from rank 0: the space it needs, what a killed merge left, how a failure is read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.payload.merge import MergeInput
from hpcpilot.payload.merge_cli import EXIT_MERGE_FAILED, EXIT_NO_SPACE
from hpcpilot.payload.merge_run import (
    MERGE_SLACK_BYTES,
    MergeProcess,
    merge_failure,
    merge_space_needed,
)
from hpcpilot.runtime.atomic import leftover_temporaries
from tests.conftest import pilot_env
from tests.tmpfs import tmpfs
from tests.unit.test_merge_hdf5 import make_range


def test_a_merge_needs_its_inputs_with_slack_and_the_floor_kept_free() -> None:
    assert merge_space_needed(0) == MERGE_SLACK_BYTES
    assert merge_space_needed(100 << 20) == (105 << 20) + MERGE_SLACK_BYTES
    assert merge_space_needed(100 << 20, 500 << 20) == (605 << 20) + MERGE_SLACK_BYTES


def test_a_merge_that_cannot_fit_fails_at_once_with_1098_and_may_be_retried(tmp_path: Path) -> None:
    output = tmp_path / "out.h5"
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(PayloadError) as caught:
        MergeProcess("hdf5", [], output, tmp_path, input_bytes=free)
    error = caught.value
    assert error.code is ErrorCode.NO_LOCAL_SPACE and error.retryable
    assert "not enough free space to merge" in str(error) and "MiB free" in str(error)
    assert not (tmp_path / "merge_inputs.json").exists()  # nothing was started


def _leave_a_temporary(output: Path) -> Path:
    """Kill a process inside `atomic_path` for ``output``: what a merge killed mid-write leaves."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from hpcpilot.runtime.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half a merge')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(output)], env=pilot_env(), check=False)
    assert done.returncode == -9
    [left] = leftover_temporaries(output)
    return left


def test_only_the_temporaries_of_the_output_itself_are_leftovers(tmp_path: Path) -> None:
    output = tmp_path / "HITS.pool.h5"
    left = _leave_a_temporary(output)
    assert left.name.startswith(".HITS.pool.h5.") and left.name.endswith(".tmp")
    others = [
        tmp_path / ".HITS.pool.h5.notes.tmp",  # not the random part of a temporary
        tmp_path / ".HITS.pool.h5.abcdefgh.tmp.1",
        tmp_path / "HITS.pool.h5.abcdefgh.tmp",  # not hidden
        tmp_path / "HITS.pool.h5.1-7-1-1-1",  # a range output
        tmp_path / "HITS.pool.h5",
    ]
    fd, other_output = tempfile.mkstemp(prefix=".HITS.pool.h5.1.", suffix=".tmp", dir=tmp_path)
    for path in others:
        path.write_text("x")
    assert leftover_temporaries(output) == [left]
    assert leftover_temporaries(tmp_path / "missing" / "x.h5") == []
    assert Path(other_output).exists() and fd


def test_a_merge_removes_what_a_killed_merge_of_its_output_left(tmp_path: Path) -> None:
    output = tmp_path / "HITS.pool.h5"
    left = _leave_a_temporary(output)
    keep = tmp_path / ".HITS.pool.h5.notes.tmp"
    keep.write_text("not a merge's")
    inputs = [make_range(tmp_path, f"1-1-1-{i}-1", i * 10 + 1, i * 10 + 10) for i in range(3)]
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    merge = MergeProcess("hdf5", inputs, output, log_dir, input_bytes=3 * 20000)
    assert not left.exists() and keep.exists()
    merge._proc.wait(60)
    merged = merge.poll()
    assert merged is not None and merged.path == str(output) and output.is_file()


@pytest.mark.parametrize(
    ("returncode", "code", "retryable"),
    [
        (EXIT_NO_SPACE, ErrorCode.NO_LOCAL_SPACE, True),  # the merger met a full disk
        (-9, ErrorCode.KILL_SIGNAL, True),  # killed (the end of the run, a resumed run's kill -9)
        (-15, ErrorCode.SIGTERM, True),
        (-11, ErrorCode.SIGSEGV, True),  # libhdf5 on a full disk
        (EXIT_MERGE_FAILED, ErrorCode.PAYLOAD_EXECUTION_FAILURE, False),  # bad inputs: again is no better
        (1, ErrorCode.PAYLOAD_EXECUTION_FAILURE, False),
    ],
)
def test_a_merge_failure_that_may_pass_is_retryable(
    returncode: int, code: ErrorCode, retryable: bool, tmp_path: Path
) -> None:
    error = merge_failure(returncode, "the tail", tmp_path / "out.h5")
    assert error.code is code and error.retryable is retryable
    assert "the tail" in str(error)


def test_the_merger_on_a_full_disk_exits_3_and_leaves_no_temporary(tmp_path: Path) -> None:
    inputs = [make_range(tmp_path, f"1-1-1-{i}-1", i * 100 + 1, i * 100 + 100) for i in range(16)]
    assert sum(i.path.stat().st_size for i in inputs) > 1 << 20
    listing = tmp_path / "inputs.json"
    listing.write_text(json.dumps([_entry(i) for i in inputs]))
    with tmpfs(tmp_path / "disk", "1m") as disk:
        argv = ["--merger", "hdf5", "--inputs", str(listing), "--output", str(disk / "out.h5")]
        done = subprocess.run(
            [sys.executable, "-m", "hpcpilot.payload.merge_cli", *argv],
            capture_output=True,
            text=True,
            env=pilot_env(),
            check=False,
        )
        assert done.returncode == EXIT_NO_SPACE, done.stderr[-2000:]  # not a crash of libhdf5
        assert "no space left on device" in done.stderr
        assert list(disk.iterdir()) == []


def _entry(item: MergeInput) -> dict[str, object]:
    return {
        "path": str(item.path),
        "range_id": item.range_id,
        "start_event": item.start_event,
        "last_event": item.last_event,
        "adler32": item.adler32,
    }
