"""Per-slot placement: cores and GPUs per slot, pure and through a worker running real payloads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hpcpilot.config.schema import EnvironmentSettings, NodeSettings, PayloadSettings, Settings
from hpcpilot.environment.placement import NodeSlots, cpu_list, gpu_env
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import FileSpec, Job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.results import PayloadResult
from hpcpilot.parallel.messages import Assignment, NodeInfo, WorkerUpdate
from hpcpilot.parallel.transport import LocalLink
from hpcpilot.parallel.worker import Worker


def test_slots_take_the_lowest_free_cores_and_their_own_gpus() -> None:
    node = NodeSlots(8, range(8), gpus=4, gpus_per_slot=2)
    assert node.max_slots == 2
    first = node.take(2)
    second = node.take(3)
    assert first is not None and second is not None
    assert (first.cpus, first.gpus) == ((0, 1), (0, 1))
    assert (second.cpus, second.gpus) == ((2, 3, 4), (2, 3))
    assert node.take(1) is None  # cores are left, GPUs are not
    node.give(first)
    third = node.take(1)
    assert third is not None and third.gpus == (0, 1) and third.cpus == (0,)


def test_positions_map_onto_the_cpus_there_are() -> None:
    node = NodeSlots(4, (6, 7))  # node.cores = 4 on a process allowed two CPUs
    slot = node.take(3)
    assert slot is not None and slot.positions == (0, 1, 2) and slot.cpus == (6, 7)
    assert node.take(2) is None
    big = node.take(2, force=True)
    assert big is not None and big.positions == (3,)


def test_without_gpus_per_slot_gpus_do_not_limit_slots() -> None:
    node = NodeSlots(2, (0, 1), gpus=4, gpus_per_slot=0)
    assert node.max_slots is None
    assert [node.take(1) is not None for _ in range(3)] == [True, True, False]


def test_gpu_variables_per_vendor_and_cpu_lists() -> None:
    assert gpu_env("nvidia", (0, 1)) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert gpu_env("amd", (3,)) == {"ROCR_VISIBLE_DEVICES": "3"}
    assert gpu_env("intel", (0, 2)) == {"ZE_AFFINITY_MASK": "0,2"}
    assert gpu_env("nvidia", ()) == {}
    with pytest.raises(ValueError, match="unknown GPU vendor"):
        gpu_env("3dfx", (0,))
    assert cpu_list((0, 1, 2, 3, 8, 10, 11)) == "0-3,8,10-11"


# --- through a worker ---------------------------------------------------------------------------


SCRIPT = (
    'echo "gpus=${CUDA_VISIBLE_DEVICES:-none} wrapped=${HPCPILOT_TEST_WRAPPED:-no}" > out.txt; '
    "grep Cpus_allowed_list /proc/self/status >> out.txt; sleep 0.3"
)


def plain_job(panda_id: int, container: str = "") -> Job:
    return Job(
        panda_id=panda_id,
        transformation="sh",
        job_pars=f"-c '{SCRIPT}'",
        container_name=container,
        output_files=(FileSpec("out.txt"),),
    )


def run_worker(tmp_path: Path, settings: Settings, jobs: list[Job], gpus: int) -> list[PayloadResult]:
    for job in jobs:
        (tmp_path / str(job.panda_id) / "logs").mkdir(parents=True)
    link = LocalLink()
    worker = Worker(
        link.worker,
        settings,
        WorkLayout(tmp_path),
        NodeInfo(1, "n1", 4),
        os.environ,
        gpus=gpus,
        cpu_ids=tuple(sorted(os.sched_getaffinity(0))),
    )
    link.to_worker.append(Assignment(tuple(jobs), (), tuple(j.panda_id for j in jobs)))
    results: list[PayloadResult] = []
    most_busy = 0
    deadline = time.monotonic() + 20
    while len(results) < len(jobs) and time.monotonic() < deadline:
        worker.step()
        most_busy = max(most_busy, sum(s.runner.busy for s in worker.slots))
        for message in link.to_coordinator:
            if isinstance(message, WorkerUpdate):
                results.extend(message.payloads)
        link.to_coordinator.clear()
        time.sleep(0.01)
    assert len(results) == len(jobs)
    run_worker.most_busy = most_busy  # type: ignore[attr-defined]
    return results


def test_each_slot_gets_its_own_gpus_and_cores_and_gpus_limit_the_slots(tmp_path: Path) -> None:
    settings = Settings(
        node=NodeSettings(gpus_per_slot=2, gpu_vendor="nvidia", bind_cpus=True),
        payload=PayloadSettings(kill_grace_s=1.0),
    )
    jobs = [plain_job(i) for i in (1, 2, 3)]
    results = run_worker(tmp_path, settings, jobs, gpus=4)
    assert all(r.ok for r in results), results
    assert run_worker.most_busy == 2  # type: ignore[attr-defined]  # 4 cores, but 4 GPUs / 2 per slot
    seen = [(tmp_path / str(j.panda_id) / "out.txt").read_text().split("\n")[0] for j in jobs]
    assert {seen[0], seen[1]} == {"gpus=0,1 wrapped=no", "gpus=2,3 wrapped=no"}  # ran side by side
    assert seen[2] in {"gpus=0,1 wrapped=no", "gpus=2,3 wrapped=no"}  # took the GPUs a slot gave back
    cpus = sorted(os.sched_getaffinity(0))
    allowed = (tmp_path / "1" / "out.txt").read_text().split("\n")[1]
    assert allowed.split(":")[1].strip() == cpu_list((cpus[0],))  # pinned to the slot's one CPU


def test_the_environment_chain_wraps_payloads_and_a_bad_image_fails_the_job(tmp_path: Path) -> None:
    settings = Settings(
        environment=EnvironmentSettings(chain=("tests.plugins.env_marker:MarkerEnvironment",)),
        payload=PayloadSettings(kill_grace_s=1.0),
    )
    jobs = [plain_job(1, "atlas/athena:24.0"), plain_job(2, "img; rm -rf /"), plain_job(3, "missing.sif")]
    results = {r.panda_id: r for r in run_worker(tmp_path, settings, jobs, gpus=0)}
    assert results[1].ok
    first = (tmp_path / "1" / "out.txt").read_text()
    assert "gpus=none wrapped=atlas/athena:24.0" in first
    assert results[2].error_code is ErrorCode.SETUP_FAILURE
    assert "container_name" in results[2].error_diag and "not a valid image name" in results[2].error_diag
    assert results[3].error_code is ErrorCode.SETUP_FAILURE
    assert "missing.sif" in results[3].error_diag
    assert not (tmp_path / "2" / "out.txt").exists()


def test_launched_ranks_from_the_launchers_variables() -> None:
    from hpcpilot.parallel.run import launched_ranks

    assert launched_ranks({}) == 1
    assert launched_ranks({"PMI_SIZE": "4"}) == 4
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert launched_ranks({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "3"}) == 3
    assert launched_ranks({"SLURM_STEP_NUM_TASKS": "3"}) == 1  # the batch script, not a step
