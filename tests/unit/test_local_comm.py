from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcpilot.comm.local import LocalCommunicator, cut_ranges
from hpcpilot.config.schema import LocalSettings, Settings
from hpcpilot.model.errors import CommunicatorError, ErrorCode, JobDefinitionError
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout


def comm(tmp_path: Path, events_per_range: int = 10) -> LocalCommunicator:
    settings = Settings(local=LocalSettings(events_per_range=events_per_range))
    return LocalCommunicator(settings, WorkLayout(tmp_path))


def test_good_and_bad_jobs(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(
        json.dumps(
            {
                "1": {"PandaID": 1, "transformation": "echo"},
                "2": {"PandaID": 2, "coreCount": "many"},
                "3": {"PandaID": 4},
                "x": "not a job",
            }
        )
    )
    batch = comm(tmp_path).fetch_jobs(10)
    assert [j.panda_id for j in batch.jobs] == [1]
    assert batch.exhausted
    bad = {b.panda_id: str(b.error) for b in batch.bad}
    assert "'coreCount' must be an integer" in bad[2]
    assert "differs from the job's PandaID 4" in bad[3]
    assert "not a dict" in bad[None]


def test_jobs_are_handed_out_in_portions(tmp_path: Path) -> None:
    (tmp_path / "HPCJobs.json").write_text(json.dumps({str(i): {"PandaID": i} for i in (1, 2, 3)}))
    c = comm(tmp_path)
    first = c.fetch_jobs(2)
    assert len(first.jobs) == 2 and not first.exhausted
    second = c.fetch_jobs(2)
    assert [j.panda_id for j in second.jobs] == [3] and second.exhausted


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "cannot read HPCJobs.json"), ("{oops", "not valid JSON"), ("[1]", "JSON object")],
)
def test_unusable_job_file_is_named(tmp_path: Path, content: str | None, needle: str) -> None:
    if content is not None:
        (tmp_path / "HPCJobs.json").write_text(content)
    with pytest.raises(CommunicatorError) as err:
        comm(tmp_path).fetch_jobs(1)
    assert needle in str(err.value) and "HPCJobs.json" in str(err.value)


def test_ranges_are_cut_from_events_per_file() -> None:
    job = Job(
        panda_id=5,
        task_id=9,
        attempt_nr=2,
        event_service=True,
        n_events_per_input_file=25,
        input_files=(FileSpec("a.root", guid="G1", scope="s"), FileSpec("b.root")),
    )
    cut = list(cut_ranges(job, 10))
    assert [(r.lfn, r.start_event, r.last_event) for r in cut] == [
        ("a.root", 1, 10),
        ("a.root", 11, 20),
        ("a.root", 21, 25),
        ("b.root", 1, 10),
        ("b.root", 11, 20),
        ("b.root", 21, 25),
    ]
    assert cut[0].range_id == "9-5-1-1-2" and cut[-1].range_id == "9-5-2-6-2"
    assert cut[0].guid == "G1" and len({r.range_id for r in cut}) == 6


def test_cutting_needs_an_event_count(tmp_path: Path) -> None:
    job = Job(panda_id=5, event_service=True)
    with pytest.raises(JobDefinitionError) as err:
        comm(tmp_path).fetch_ranges(job, 10)
    assert err.value.code is ErrorCode.ES_NO_EVENTS
    assert "nEventsPerInputFile" in str(err.value)


def test_fetch_ranges_in_portions_until_exhausted(tmp_path: Path) -> None:
    job = Job(panda_id=5, event_service=True, n_events_per_input_file=30)
    c = comm(tmp_path, events_per_range=10)
    first = c.fetch_ranges(job, 2)
    assert first.count == 2 and not first.exhausted
    assert first.ranges == ()  # cut ranges travel as a span of indices, never as objects
    second = c.fetch_ranges(job, 2)
    assert [r.range_id for r in second.materialized()] == ["0-5-1-3-0"] and second.exhausted


def test_range_feed_file_wins_and_bad_ranges_are_reported(tmp_path: Path) -> None:
    good = {
        "eventRangeID": "1-5-1-1-1",
        "startEvent": 1,
        "lastEvent": 4,
        "LFN": "f",
        "GUID": "0f0f0f0f-0000-4000-8000-000000000005",
        "scope": "s",
    }
    (tmp_path / "JobsEventRanges.json").write_text(
        json.dumps({"5": [good, {"eventRangeID": "1-5-1-2-1", "startEvent": "x", "lastEvent": 2}]})
    )
    job = Job(panda_id=5, event_service=True, n_events_per_input_file=1000)
    batch = comm(tmp_path).fetch_ranges(job, 10)
    assert [r.range_id for r in batch.ranges] == ["1-5-1-1-1"]
    assert batch.exhausted
    assert len(batch.errors) == 1 and "'startEvent'" in str(batch.errors[0])
    assert "JobsEventRanges.json" in str(batch.errors[0])


def test_job_reports_are_written_atomically(tmp_path: Path) -> None:
    from hpcpilot.comm.base import JobReport
    from hpcpilot.model.states import JobState

    c = comm(tmp_path)
    c.report_job(JobReport(7, JobState.FAILED, error_code=1305, error_diag="boom"))
    c.report_job(JobReport(8, JobState.FINISHED, n_events=10))
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["7"]["jobStatus"] == "failed" and data["7"]["pilotErrorCode"] == 1305
    assert data["8"]["nEvents"] == 10
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_job_reports_carry_resource_figures_and_job_metrics(tmp_path: Path) -> None:
    from hpcpilot.comm.base import JobReport
    from hpcpilot.model.states import JobState

    c = comm(tmp_path)
    c.report_job(JobReport(7, JobState.RUNNING, metrics={"maxRSS": 2048.0}, job_metrics="gpu_util=0.9"))
    c.report_job(JobReport(8, JobState.RUNNING))
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["7"]["maxRSS"] == 2048.0 and data["7"]["jobMetrics"] == "gpu_util=0.9"
    assert "maxRSS" not in data["8"] and "jobMetrics" not in data["8"]


def test_unreadable_range_feed_fails_every_job_alike(tmp_path: Path) -> None:
    (tmp_path / "JobsEventRanges.json").write_text("{not json")
    c = comm(tmp_path)
    for panda_id in (5, 6):
        job = Job(panda_id=panda_id, event_service=True, n_events_per_input_file=10)
        with pytest.raises(CommunicatorError, match=r"JobsEventRanges\.json is not valid JSON"):
            c.fetch_ranges(job, 10)


def test_the_number_of_ranges_is_known_before_they_are_fetched(tmp_path: Path) -> None:
    two_files = (FileSpec("a.root"), FileSpec("b.root"))
    job = Job(panda_id=5, event_service=True, n_events_per_input_file=25, input_files=two_files)
    c = comm(tmp_path, events_per_range=10)
    assert c.ranges_expected(job) == 6 == len(list(cut_ranges(job, 10)))
    assert c.ranges_expected(Job(panda_id=6, event_service=True, n_events_per_input_file=30)) == 3
    assert c.ranges_expected(Job(panda_id=7, event_service=True)) is None  # no event count
    feed = [{"eventRangeID": f"1-8-1-{i}-1", "startEvent": i, "lastEvent": i} for i in range(1, 5)]
    (tmp_path / "JobsEventRanges.json").write_text(json.dumps({"8": feed}))
    listed = Job(panda_id=8, event_service=True)
    c = comm(tmp_path)
    assert c.ranges_expected(listed) == 4
    c.fetch_ranges(listed, 3)
    assert c.ranges_expected(listed) == 4  # served ones still count


def test_local_runs_take_up_jobs_a_drain_ended() -> None:
    assert LocalCommunicator.resumes_ended_jobs  # no one else hands out their work again
