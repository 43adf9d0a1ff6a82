"""The pieces of the full-disk policy: recognising ENOSPC, the journal's retried writes, the reserve,
ranges that keep their attempts, resuming a job a full disk ended, a worker that pauses, rank 0 waiting.

Real full disks where one is needed: a tmpfs of a few hundred kB mounted by the test (skipped where
mounting is not allowed, failed under ``CI=true``).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from hpcpilot.comm.local import LocalCommunicator
from hpcpilot.config.schema import (
    DiskSettings,
    EventServiceSettings,
    MonitorSettings,
    NodeSettings,
    ParallelSettings,
    RunSettings,
    Settings,
)
from hpcpilot.demo.jobs import demo_job
from hpcpilot.model.errors import DiskFullError, ErrorCode, StagingError
from hpcpilot.model.job import FileSpec, Job, job_record, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState, range_columns
from hpcpilot.model.results import RangeResult
from hpcpilot.parallel import run as par
from hpcpilot.parallel.books import Books
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.diskspace import FullDisk, NodeDisk, may_be_disk_full
from hpcpilot.parallel.messages import Assignment, NodeInfo, WorkerUpdate
from hpcpilot.parallel.resume import resume_state
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.worker import Worker
from hpcpilot.runtime.diskspace import Reserve, free_mb, is_disk_full, mentions_disk_full, takes_writes
from hpcpilot.runtime.journal import Journal, plain, read_journal
from hpcpilot.runtime.signals import SignalFlag
from tests.conftest import write_jobs
from tests.ranges import all_ids, batches_in, fed, handed, ids_of, results_of
from tests.tmpfs import tmpfs


def fill_up(path: Path) -> int:
    """Write ballast to ``path`` until the disk is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        chunk = bytes(4096)
        while True:
            written += os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return written


# --- recognising a full disk --------------------------------------------------------------------


def test_a_full_disk_is_recognised_by_errno_cause_and_text() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise StagingError("copy failed") from exc
    except StagingError as wrapped:
        assert is_disk_full(wrapped)
    assert mentions_disk_full("head: error writing 'standard output': No space left on device")
    assert mentions_disk_full("write failed: Disk quota exceeded") and not mentions_disk_full("I/O error")
    assert may_be_disk_full(ErrorCode.PAYLOAD_EXECUTION_FAILURE) and may_be_disk_full(ErrorCode.SIGBUS)
    assert not may_be_disk_full(ErrorCode.REACHED_MAX_TIME) and not may_be_disk_full(None)


# --- the journal ---------------------------------------------------------------------------------


def test_a_journal_write_on_a_full_disk_leaves_no_partial_line_and_is_written_once_later(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "disk", "256k") as disk:
        jnl = Journal(disk / "journal.jsonl")
        jnl.append("run", host="h", pid=1, ranks=1, resume=False)
        jnl.flush()
        before = (disk / "journal.jsonl").read_bytes()
        ballast = disk / "ballast"
        fill_up(ballast)
        os.truncate(ballast, ballast.stat().st_size - 32 * 1024)  # 32 kB free: the write is cut short
        ids = [f"1-7-1-{i}-1" for i in range(3000)]  # about 50 kB of records
        for rid in ids:
            jnl.append("returned", job=7, ids=[rid])
        with pytest.raises(DiskFullError) as caught:
            jnl.flush()
        assert caught.value.code is ErrorCode.NO_LOCAL_SPACE and caught.value.retryable
        assert (disk / "journal.jsonl").read_bytes() == before  # cut back: no partial record
        assert jnl.pending == len(ids)
        ballast.unlink()  # space comes back
        jnl.flush()
        jnl.close()
        lines = (disk / "journal.jsonl").read_text().splitlines()
        records = [plain(json.loads(line)) for line in lines]  # every line whole
        assert [r["ids"][0] for r in records[1:]] == ids  # each record once, in order


def test_when_even_the_cut_fails_the_next_flush_completes_the_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "disk", "256k") as disk:
        jnl = Journal(disk / "journal.jsonl")
        ballast = disk / "ballast"
        fill_up(ballast)
        os.truncate(ballast, ballast.stat().st_size - 8 * 1024)
        for i in range(1000):
            jnl.append("returned", job=7, ids=[f"1-7-1-{i}-1"])

        def broken(fd: int, size: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "ftruncate", broken)  # a filesystem that cannot cut the file back
        with pytest.raises(DiskFullError):
            jnl.flush()
        monkeypatch.undo()
        torn = (disk / "journal.jsonl").read_text()
        assert torn and jnl.pending == 1  # part of it reached the file: a torn line for now
        ballast.unlink()
        jnl.append("end", drained_by=None)
        jnl.flush()
        jnl.close()
        records = [plain(json.loads(line)) for line in (disk / "journal.jsonl").read_text().splitlines()]
        assert [r["ids"][0] for r in records[:-1]] == [f"1-7-1-{i}-1" for i in range(1000)]  # once each
        assert records[-1]["ev"] == "end"


# --- the space held back --------------------------------------------------------------------------


def test_the_reserve_holds_space_and_gives_it_back(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        empty = free_mb(disk)
        assert empty is not None
        reserve = Reserve(disk / ".hpcpilot-reserve", 3)
        assert reserve.make() and reserve.held
        held = free_mb(disk)
        assert held is not None and empty - held == pytest.approx(3, abs=0.1)
        fill_up(disk / "ballast")
        assert not takes_writes(disk)  # full
        assert reserve.release() and not reserve.held and not reserve.release()
        assert takes_writes(disk)  # the reserve's space is there for the last records
        assert not Reserve(disk / "too-big", 64).make()  # cannot be had: a warning, no file
        assert not (disk / "too-big").exists()


# --- the books -----------------------------------------------------------------------------------


#: A range handed out: (PandaID, range id, attempt).
Handed = tuple[int, str, int]


def _books(n_ranges: int, attempts: int = 2) -> tuple[Books, Handed]:
    books = Books(max_attempts=attempts, batch_size=8)
    books.worker(1).node = NodeInfo(1, "n1", 1)
    books.add_job(Job(panda_id=1, event_service=True))
    books.add_ranges(1, tuple(EventRange(f"1-1-1-{i}-1", i, i) for i in range(1, n_ranges + 1)))
    return books, _assign(books)


def _assign(books: Books) -> Handed:
    books.worker(1).want_cores = 1
    [task] = handed(books, books.assign(1))
    return task


def _fail(books: Books, task: Handed, code: ErrorCode) -> RangeState | None:
    return books.record_range(1, RangeResult(1, task[1], RangeState.FAILED, error_code=code))


def test_a_range_failed_for_lack_of_space_keeps_its_attempt_and_goes_first() -> None:
    books, task = _books(2)
    assert task == (1, "1-1-1-1-1", 1)
    assert _fail(books, task, ErrorCode.NO_LOCAL_SPACE) is RangeState.FAILED
    book = books.jobs[1]
    assert book.failed_attempts == 0 and books.ranges_failed_attempts == 0 and books.ranges_disk_full == 1
    again = _assign(books)
    assert again == task  # first in line, same attempt
    assert _fail(books, again, ErrorCode.PAYLOAD_EXECUTION_FAILURE) is RangeState.FAILED
    assert book.failed_attempts == 1


def test_a_range_that_fills_the_disk_itself_spends_its_attempts_in_the_end() -> None:
    books, task = _books(1, attempts=2)
    states = []
    for _ in range(4):
        states.append(_fail(books, task, ErrorCode.NO_LOCAL_SPACE))
        if states[-1] is RangeState.FATAL:
            break
        task = _assign(books)
    # two failures for lack of space are free (max_attempts), then they count: fatal after two more
    assert states == [RangeState.FAILED, RangeState.FAILED, RangeState.FAILED, RangeState.FATAL]
    assert books.jobs[1].failed_attempts == 2 and books.ranges_disk_full == 2


def test_paused_books_hand_out_nothing_until_they_go_on() -> None:
    books, _ = _books(2)
    books.paused = True
    books.worker(1).want_cores = 1
    assert books.assign(1) is None
    books.paused = False
    assert books.assign(1) is not None


# --- resuming ------------------------------------------------------------------------------------


def test_resume_takes_up_a_job_a_full_disk_ended_and_counts_no_attempt_for_1098(tmp_path: Path) -> None:
    es = parse_job({"PandaID": 7, "taskID": 1, "eventService": "True", "jobPars": "x"}, source="t")
    other = parse_job({"PandaID": 8, "taskID": 1, "eventService": "True", "jobPars": "x"}, source="t")
    rngs = [EventRange(f"1-7-1-{i}-1", i, i) for i in (1, 2)]
    j = Journal(tmp_path / "journal.jsonl")
    j.append("run", host="h", pid=1, ranks=1, resume=False)
    for job in (es, other):
        j.append("job", job=job.panda_id, state="starting", **{"def": job_record(job)})
    j.append("ranges", job=7, **range_columns(rngs))
    j.append("failed", job=7, id=rngs[0].range_id, attempt=1, code=1098, diag="disk full")
    j.append("failed", job=7, id=rngs[1].range_id, attempt=1, code=1305, diag="crash")
    j.append("job", job=7, state="failed", code=1098, resumable=True)
    j.append("job", job=8, state="failed", code=1098)  # reported failed where others hand work out
    j.append("end", drained_by="NO_LOCAL_SPACE")
    j.close()
    state = resume_state(read_journal(tmp_path / "journal.jsonl"))
    assert state.done == {8}
    [job7] = state.open
    assert job7.job.panda_id == 7 and job7.ended_early
    assert dict(job7.failed) == {rngs[1].range_id: 1}  # the disk-full failure spent no attempt


# --- the policy's clock ----------------------------------------------------------------------------


def test_an_episode_backs_off_and_ends_after_the_wait_or_at_the_limit(tmp_path: Path) -> None:
    disk = FullDisk(DiskSettings(wait_s=30, retry_s=1), MonitorSettings(), {"workdir": tmp_path})
    assert not disk.full and not disk.due(0.0)
    assert disk.enter(100.0, "why") and not disk.enter(101.0, "again")  # one episode
    assert not disk.due(100.5) and disk.due(101.0)
    tries = []
    now = 101.0
    while now < 130:
        tries.append(now)
        disk.not_yet(now)
        now = disk._next_try
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[:4] == [2.0, 4.0, 8.0, 10.0] and max(gaps) == 10.0  # doubling, at most 10 s
    assert not disk.expired(129.0) and disk.expired(130.0) and disk.expired(110.0, limit=110.0)
    assert disk.has_space()  # the test's own disk has room
    assert disk.leave(112.0) == 12.0 and not disk.full and disk.episodes == 1


# --- a worker ------------------------------------------------------------------------------------

PARTIAL = (
    "import sys; open(sys.argv[1], 'w').write('x' * 1000); "
    "sys.stderr.write('write error: No space left on device\\n'); sys.exit(1)"
)
WRITE = "import sys; open(sys.argv[1], 'w').write('x')"


def test_a_worker_reports_a_range_that_failed_for_lack_of_space_with_1098_and_pauses(tmp_path: Path) -> None:
    (tmp_path / "5" / "logs").mkdir(parents=True)
    settings = Settings(
        eventservice=EventServiceSettings(mode="per_range"),
        parallel=ParallelSettings(report_interval_s=0.05),
        monitor=MonitorSettings(plugins=()),
        disk=DiskSettings(retry_s=0.3),
    )
    link = LocalLink()
    w = Worker(link.worker, settings, WorkLayout(tmp_path), NodeInfo(1, "n1", 1), os.environ)
    failing = Job(
        panda_id=5,
        transformation=sys.executable,
        job_pars=f'-c "{PARTIAL}" {{outputFile}}',
        event_service=True,
        output_files=(FileSpec("o.dat"),),
    )
    work = fed(5, [EventRange("1-5-1-1-1", 1, 1)])
    link.to_worker.append(Assignment((failing,), (work,)))
    results: list[RangeResult] = []
    asked_while_full = False
    deadline = time.monotonic() + 20
    while not results and time.monotonic() < deadline:
        w.step()
        for message in link.to_coordinator:
            assert isinstance(message, WorkerUpdate)
            results.extend(results_of(batches_in([message]), ids_of([work])))
        link.to_coordinator.clear()
        time.sleep(0.01)
    [result] = results
    assert result.error_code is ErrorCode.NO_LOCAL_SPACE and "No space left on device" in result.error_diag
    assert not (tmp_path / "5" / "o.dat.1-5-1-1-1").exists()  # its partial output is gone
    assert w.disk.full
    while w.disk.full and time.monotonic() < deadline:  # the disk has room: the pause ends
        w.step()
        for message in link.to_coordinator:
            asked_while_full |= w.disk.full and isinstance(message, WorkerUpdate) and message.want_cores > 0
        link.to_coordinator.clear()
        time.sleep(0.01)
    assert not w.disk.full and not asked_while_full


def test_a_node_disk_explains_a_failure_by_its_text_or_by_too_little_space(tmp_path: Path) -> None:
    roomy = NodeDisk(DiskSettings(), MonitorSettings(min_free_disk_mb=1), {"workdir": tmp_path})
    assert roomy.explains("error: No space left on device") and not roomy.explains("echo: I/O error")
    low = NodeDisk(DiskSettings(), MonitorSettings(min_free_disk_mb=10**9), {"workdir": tmp_path})
    assert low.explains("echo: I/O error")  # the disk is (nearly) full now: that is why


# --- rank 0 ---------------------------------------------------------------------------------------


def test_rank_0_keeps_its_records_while_its_journal_is_on_a_full_disk(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write_jobs(work, [demo_job(panda_id=61, n_events=60, mode="per_range", sleep_per_event=0.01)])
    settings = Settings(
        run=RunSettings(workdir=str(work), status_interval_s=60),
        node=NodeSettings(cores=2),
        monitor=MonitorSettings(plugins=(), min_free_disk_mb=1),
        parallel=ParallelSettings(journal_flush_s=0.05),
        disk=DiskSettings(wait_s=60, retry_s=0.1),
    )
    layout = WorkLayout(work)
    with tmpfs(tmp_path / "disk", "256k") as disk:
        ballast = disk / "ballast"
        fill_up(ballast)
        jnl = Journal(disk / "journal.jsonl")  # the journal's disk is full from the start
        link = LocalLink()
        coordinator = Coordinator(
            link.coordinator, settings, layout, LocalCommunicator(settings, layout), jnl, lambda line: None
        )
        worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)

        def give_space_back() -> None:
            deadline = time.monotonic() + 30
            while not coordinator.disk.full and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)  # ranges finish meanwhile: their records wait in memory
            ballast.unlink()

        freer = threading.Thread(target=give_space_back)
        freer.start()
        par.run_single(coordinator, worker, settings, SignalFlag())
        freer.join()
        jnl.close()
        lines = (disk / "journal.jsonl").read_text().splitlines()
        records = [plain(json.loads(line)) for line in lines]  # no torn line
    summary = coordinator.summary()
    assert summary["disk"]["state"] == "space came back" and summary["disk"]["episodes"] == 1
    assert "cannot write the journal" in summary["disk"]["diag"]
    [job] = summary["jobs"]
    assert job["state"] == "finished" and job["ranges"]["finished"] == 6
    finished = [rid for r in records if r["ev"] == "finished" for rid in r["ids"]]
    assert sorted(finished) == sorted(all_ids(coordinator.books.jobs[61].ranges)) and len(set(finished)) == 6
    assert [r["state"] for r in records if r["ev"] == "job"] == ["starting", "finished"]
