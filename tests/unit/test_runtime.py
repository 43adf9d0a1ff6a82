from __future__ import annotations

import json
import os
import signal
import sys
import time
import zlib
from pathlib import Path

from hpcpilot.data.checksums import adler32_of_file, md5_of_file
from hpcpilot.model.errors import ErrorCode
from hpcpilot.payload.exitcodes import error_for_exit
from hpcpilot.runtime.atomic import write_json_atomic
from hpcpilot.runtime.journal import Journal, read_journal
from hpcpilot.runtime.process import ProcessGroup


def test_journal_batches_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append("finished", job=1, id="a")
    journal.append("failed", job=1, id="b", code=1305)
    assert journal.pending == 2 and not path.read_text()  # nothing written before the flush
    journal.flush()
    assert journal.pending == 0 and journal.records_written == 2
    with path.open("a") as handle:
        handle.write('{"t": 1, "ev": "finis')  # a crash in the middle of a write
    records = list(read_journal(path))
    assert [(r["ev"], r["id"]) for r in records] == [("finished", "a"), ("failed", "b")]
    journal.close()
    assert list(read_journal(tmp_path / "missing.jsonl")) == []


def test_atomic_json_replaces_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_checksums(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert adler32_of_file(path) == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    import hashlib

    assert md5_of_file(path) == hashlib.md5(data).hexdigest()


def test_exit_codes_map_to_panda_codes() -> None:
    assert error_for_exit(0) == (None, "")
    assert error_for_exit(-signal.SIGTERM)[0] is ErrorCode.SIGTERM
    assert error_for_exit(-signal.SIGSEGV)[0] is ErrorCode.SIGSEGV
    assert error_for_exit(128 + signal.SIGINT)[0] is ErrorCode.SIGINT
    assert error_for_exit(-signal.SIGKILL)[0] is ErrorCode.KILL_SIGNAL
    code, diag = error_for_exit(3)
    assert code is ErrorCode.PAYLOAD_EXECUTION_FAILURE and "code 3" in diag


def test_process_group_stop_kills_the_whole_tree(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    with open(os.devnull, "wb") as null:
        group = ProcessGroup(
            [sys.executable, "-c", script], cwd=tmp_path, env=os.environ, stdout=null, stderr=null
        )
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())
    assert group.poll() is None
    info = group.stop(grace_s=2.0)
    assert info.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while _alive(grandchild):  # the grandchild got the group's SIGTERM too (reaped by init)
        assert time.monotonic() < deadline, "grandchild survived the group kill"
        time.sleep(0.01)


def test_process_group_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    out = tmp_path / "out"
    with out.open("wb") as handle:
        group = ProcessGroup(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=os.environ,
            stdout=handle,
            stderr=handle,
        )
    deadline = time.monotonic() + 30
    while not out.read_text():
        assert time.monotonic() < deadline, f"the payload never started (pid {group.pid})"
        time.sleep(0.01)
    info = group.stop(grace_s=0.2)
    assert info.returncode == -signal.SIGKILL  # it ignored SIGTERM: the grace ended in SIGKILL, not at 60 s


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_all_ends_every_live_group_it_started(tmp_path: Path) -> None:
    from hpcpilot.runtime import process

    with open(os.devnull, "wb") as null:
        groups = [
            ProcessGroup(
                [sys.executable, "-c", "import time; time.sleep(60)"],
                cwd=tmp_path,
                env=os.environ,
                stdout=null,
                stderr=null,
            )
            for _ in range(2)
        ]
    assert process.kill_all() >= 2
    for group in groups:
        info = group.wait(10)
        assert info is not None and info.returncode == -signal.SIGKILL
    assert not any(g in process._LIVE for g in groups)  # reaped groups are forgotten


def test_journal_collects_frequent_events_into_group_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.collect("assigned", 1, 2, ids=["a", "b"])
    journal.collect("finished", 1, 2, ids=["a"], fsize=[10])
    journal.collect("assigned", 1, 2, ids=["c"])
    journal.collect("finished", 1, 3, ids=["b"], fsize=[20])
    assert journal.pending == 3
    journal.append("failed", job=1, id="c")  # groups are closed first: the file keeps the order
    journal.collect("finished", 1, 2, ids=["d"], fsize=[5])
    journal.flush()
    records = list(read_journal(tmp_path / "j.jsonl"))
    assert [(r["ev"], r.get("rank"), r.get("ids", r.get("id"))) for r in records] == [
        ("assigned", 2, ["a", "b", "c"]),
        ("finished", 2, ["a"]),
        ("finished", 3, ["b"]),
        ("failed", None, "c"),
        ("finished", 2, ["d"]),
    ]
    assert records[0]["t"] <= records[0]["t_end"]
    assert records[2]["fsize"] == [20]
    journal.close()


_STARTER = """
import sys, time
from pathlib import Path
from hpcpilot.runtime.process import ProcessGroup
group = ProcessGroup(["sleep", "60"], cwd=Path("."), env={"PATH": "/usr/bin:/bin"}, stdout=-3, stderr=-3)
print(group.pid, flush=True)
time.sleep(60)
"""


def test_a_payload_dies_with_the_pilot_process_that_started_it(tmp_path: Path) -> None:
    """A pilot process killed with SIGKILL leaves no payload running on (PR_SET_PDEATHSIG)."""
    import subprocess

    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("parent-death signals are Linux only")
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert starter.stdout is not None
        payload = int(starter.stdout.readline())
        assert _alive(payload)
    finally:
        os.killpg(starter.pid, signal.SIGKILL)  # the group this test started (the payload has its own)
        starter.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(payload) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(payload), "the payload outlived the pilot process that started it"
