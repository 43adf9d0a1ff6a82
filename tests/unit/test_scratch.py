"""Node-local scratch: inputs copied once per node, ranges read the copy, copies gone with the job."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hpcpilot.config.schema import DataSettings, EventServiceSettings, PayloadSettings, Settings
from hpcpilot.data.scratch import copy_to_scratch, remove_job_scratch, scratch_root
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import RangeResult
from hpcpilot.parallel.messages import Assignment, NodeInfo
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.worker import Worker
from tests.ranges import batches_in, fed, ids_of, results_of


def test_scratch_root_expands_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    assert scratch_root("/mnt/bb/$USER/hpcpilot") == Path("/mnt/bb/alice/hpcpilot")
    assert scratch_root("  ") is None


def test_a_copy_is_made_once_and_removed_with_its_job(tmp_path: Path) -> None:
    source = tmp_path / "EVNT.pool.root"
    source.write_bytes(b"x" * 1000)
    root = tmp_path / "scratch"
    copy = copy_to_scratch(source, root, 7)
    assert copy == root / "7" / "EVNT.pool.root" and copy.read_bytes() == source.read_bytes()
    mtime = copy.stat().st_mtime_ns
    time.sleep(0.01)
    assert copy_to_scratch(source, root, 7).stat().st_mtime_ns == mtime  # already there: kept
    assert not list((root / "7").glob(".*.tmp"))
    remove_job_scratch(root, 7)
    assert not (root / "7").exists()
    with pytest.raises(OSError):
        copy_to_scratch(tmp_path / "missing", root, 7)


def test_ranges_read_the_node_local_copy(tmp_path: Path) -> None:
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    (work / "9" / "logs").mkdir(parents=True)
    (work / "9" / "EVNT.root").write_text("events\n")
    job = Job(
        panda_id=9,
        transformation="sh",
        job_pars="-c 'echo {PFN} > {outputFile}; cat {PFN} >> {outputFile}'",
        event_service=True,
        output_files=(FileSpec("out.txt"),),
    )
    settings = Settings(
        eventservice=EventServiceSettings(mode="per_range"),
        payload=PayloadSettings(kill_grace_s=1.0),
        data=DataSettings(scratch=str(scratch)),
    )
    link = LocalLink()
    worker = Worker(link.worker, settings, WorkLayout(work), NodeInfo(1, "n1", 2), os.environ)
    given = fed(9, [EventRange(f"1-9-1-{i}-1", i, i, "EVNT.root") for i in (1, 2)])
    link.to_worker.append(Assignment((job,), (given,)))
    results: list[RangeResult] = []
    deadline = time.monotonic() + 20
    while len(results) < 2 and time.monotonic() < deadline:
        worker.step()
        results.extend(results_of(batches_in(link.to_coordinator), ids_of([given])))
        link.to_coordinator.clear()
        time.sleep(0.01)
    assert [r.state for r in results] == [RangeState.FINISHED] * 2
    for result in results:
        assert result.output is not None
        path, content = Path(result.output.path).read_text().splitlines()
        assert path == str(scratch / "9" / "EVNT.root") and content == "events"
    link.to_worker.append(Assignment((), (), finished_jobs=(9,)))
    worker.step()
    assert not (scratch / "9").exists()
