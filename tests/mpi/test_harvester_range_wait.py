"""An event-service job in a ManyToOne worker, at 4 MPI ranks against the fake Harvester (issue 14, part 2).

Harvester's ``SharedFileMessenger.feed_events`` writes nothing for a worker with several jobs and
deletes the request all the same (the fake does the same). The pilot used to ask again and again until
the walltime (67 requests in 200 s; ``harvester.job_wait_s`` did not stop it); now the job fails with
1238 (``ES_NO_EVENTS``) after ``eventservice.range_wait_s``, naming the reason, and the run ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcpilot.demo.jobs import demo_job
from tests.conftest import RunPilot
from tests.fakes.harvester import FakeHarvester, MapType
from tests.mpi.test_harvester_e2e import RANKS, copy_job, describe, pilot_args, storage

pytestmark = pytest.mark.mpi


def test_event_service_job_in_a_many_to_one_worker_fails_with_1238(
    run_pilot: RunPilot, mpiexec: Path, tmp_path: Path
) -> None:
    es_job, plain = 61, 62
    inputs = storage(tmp_path, [plain])
    with FakeHarvester(
        tmp_path / "ap",
        [demo_job(panda_id=es_job, n_events=100, mode="streaming", sleep_per_event=0.001), copy_job(plain)],
        map_type=MapType.MANY_TO_ONE,
        period_s=0.5,
        input_dir=inputs,
    ) as fake:
        result = run_pilot(
            pilot_args(
                fake,
                "--set",
                "eventservice.range_wait_s=4",
                "--set",
                "harvester.job_wait_s=2",
                "--set",
                "node.cores=2",
            ),
            ranks=RANKS,
            timeout=120,  # without the bound the run asks for ranges until this kills it
        )
        assert result.returncode in (0, 3), describe(fake, result.stderr)  # 3: a job failed
        assert fake.wait_for(lambda: fake.kill_seen, timeout=10), describe(fake, result.stderr)
    assert fake.violations == [], describe(fake, result.stderr)
    assert fake.event_requests, "the pilot asked for ranges"
    assert not fake.event_feeds, "the fake, as Harvester, fed no ranges to a ManyToOne worker"
    final = fake.final_attributes(es_job)
    assert final is not None, describe(fake, result.stderr)
    assert final["jobStatus"] == "failed" and final["pilotErrorCode"] == 1238, final
    diag = final["pilotErrorDiag"]
    assert diag.startswith("no event ranges arrived in 4 s;"), diag
    assert "Harvester does not feed events to ManyToOne workers" in diag, diag
    other = fake.final_attributes(plain)
    assert other is not None and other["jobStatus"] == "finished", "the plain job is not held back"
