"""Choosing the batch system (auto, by name), the local fallback and the saga backend."""

from __future__ import annotations

import os
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.batch.base import BatchSystem, CommandBatchSystem
from hpcpilot.batch.local import LocalBatchSystem
from hpcpilot.batch.lsf import LsfBatchSystem
from hpcpilot.batch.pbs import PbsBatchSystem
from hpcpilot.batch.saga import SagaBatchSystem, saga_state
from hpcpilot.batch.select import batch_system_class, discover_allocation, make_batch_system
from hpcpilot.batch.slurm import SlurmBatchSystem
from hpcpilot.config.schema import BatchSettings
from hpcpilot.model.allocation import BatchJobState
from hpcpilot.model.errors import BatchSystemError, PluginError
from hpcpilot.plugins import load_plugin, plugin_names
from tests.fakes.batchq import Replay

S = BatchJobState


def test_every_builtin_is_registered() -> None:
    assert {"slurm", "pbs", "lsf", "local", "saga"} <= set(plugin_names("batch_systems"))
    for name in ("slurm", "pbs", "lsf", "local", "saga"):
        cls = load_plugin("batch_systems", name, BatchSystem)
        assert cls.name == name


def test_only_command_driven_systems_have_command_builders() -> None:
    """slurm, pbs and lsf are driven by commands; saga has an API and local has no queue."""
    commands: tuple[type[BatchSystem], ...] = (SlurmBatchSystem, PbsBatchSystem, LsfBatchSystem)
    api_or_none: tuple[type[BatchSystem], ...] = (SagaBatchSystem, LocalBatchSystem)
    assert all(issubclass(cls, CommandBatchSystem) for cls in commands)
    assert not any(issubclass(cls, CommandBatchSystem) for cls in api_or_none)
    assert not any(hasattr(cls, "submit_argv") for cls in api_or_none)
    for name in ("slurm", "pbs", "lsf", "local", "saga"):
        assert not load_plugin("batch_systems", name, BatchSystem).__abstractmethods__


@pytest.mark.parametrize(
    ("env", "cls"),
    [
        ({"SLURM_JOB_ID": "1", "PBS_JOBID": "2"}, SlurmBatchSystem),
        ({"PBS_JOBID": "2.s", "LSB_JOBID": "3"}, PbsBatchSystem),
        ({"LSB_JOBID": "3"}, LsfBatchSystem),
        ({"HOME": "/root"}, LocalBatchSystem),
    ],
)
def test_auto_picks_the_job_environment(env: dict[str, str], cls: type[BatchSystem]) -> None:
    assert batch_system_class("auto", env) is cls


def test_by_name_ignores_the_environment() -> None:
    assert batch_system_class("pbs", {"SLURM_JOB_ID": "1"}) is PbsBatchSystem
    assert batch_system_class("hpcpilot.batch.lsf:LsfBatchSystem", {}) is LsfBatchSystem
    with pytest.raises(PluginError, match="no batch_systems plugin named 'moab'"):
        batch_system_class("moab", {})


def test_discover_allocation_uses_the_chosen_plugin() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_CPUS_ON_NODE": "4"}
    run = Replay({("squeue", "-h", "-j", "7", "-o", "%e"): "NONE\n"})
    alloc = discover_allocation(BatchSettings(), env, run)
    assert (alloc.batch_system, alloc.nodes, alloc.cores_per_node) == ("slurm", ("n1", "n2"), 4)
    # the walltime override is the caller's business
    alloc = discover_allocation(BatchSettings(walltime="1h"), env, run)
    assert alloc.end_time is None


def test_local_fallback() -> None:
    alloc = discover_allocation(BatchSettings(system="local"), {}, Replay())
    assert alloc.batch_system == "local"
    assert alloc.job_id is None
    assert alloc.nodes == (socket.gethostname().split(".")[0],)
    assert alloc.cores_per_node == len(os.sched_getaffinity(0))
    assert alloc.end_time is None
    assert LocalBatchSystem.in_allocation({})
    assert (LocalBatchSystem.template, LocalBatchSystem.default_launcher) == ("", "mpiexec")


def test_local_cannot_submit() -> None:
    local = LocalBatchSystem(Replay(), {})
    with pytest.raises(BatchSystemError, match="cannot submit"):
        local.submit(Path("/s.sh"), Path("/w"))
    with pytest.raises(BatchSystemError, match="cannot cancel"):
        local.cancel("1")
    with pytest.raises(BatchSystemError, match="cannot report"):
        local.poll(["1"])
    assert local.poll([]) == {}


# --- saga, with a fake radical.saga ---------------------------------------------------------------


class DoesNotExist(Exception):  # noqa: N818 - named as radical.saga names it
    pass


class FakeJob:
    def __init__(self, service: FakeService, job_id: str, state: str) -> None:
        self.service, self.id, self.state = service, job_id, state

    def run(self) -> None:
        self.state = "Pending"

    def cancel(self) -> None:
        self.state = "Canceled"


class FakeService:
    instances: list[FakeService] = []

    def __init__(self, url: str) -> None:
        self.url = url
        self.jobs: dict[str, FakeJob] = {}
        self.descriptions: list[Any] = []
        self.closed = False
        FakeService.instances.append(self)

    def create_job(self, description: Any) -> FakeJob:
        self.descriptions.append(description)
        job = FakeJob(self, f"[{self.url}]-[{100 + len(self.jobs)}]", "New")
        self.jobs[job.id] = job
        return job

    def get_job(self, job_id: str) -> FakeJob:
        if job_id not in self.jobs:
            raise DoesNotExist(job_id)
        return self.jobs[job_id]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_saga(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    saga = types.ModuleType("radical.saga")
    job = types.SimpleNamespace(Service=FakeService, Description=types.SimpleNamespace)
    saga.job = job  # type: ignore[attr-defined]
    radical = types.ModuleType("radical")
    radical.saga = saga  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "radical", radical)
    monkeypatch.setitem(sys.modules, "radical.saga", saga)
    FakeService.instances.clear()
    yield saga


@pytest.mark.parametrize(
    ("state", "mapped"),
    [
        ("New", S.SUBMITTED),
        ("Pending", S.SUBMITTED),
        ("Running", S.RUNNING),
        ("Suspended", S.RUNNING),
        ("Done", S.FINISHED),
        ("Canceled", S.CANCELLED),
        ("Failed", S.FAILED),
        ("Unknown", None),
        ("Exploded", S.FAILED),
    ],
)
def test_saga_state_mapping(state: str, mapped: BatchJobState | None) -> None:
    assert saga_state(state) is mapped


def test_saga_submit_poll_cancel(fake_saga: types.ModuleType) -> None:
    settings = BatchSettings(system="saga", saga_url="slurm://localhost", queue="debug", account="m1")
    saga = make_batch_system(settings, {}, Replay())
    assert isinstance(saga, SagaBatchSystem)
    job_id = saga.submit(Path("/w/pilot.sh"), Path("/w"))
    assert job_id == "[slurm://localhost]-[100]"
    service = FakeService.instances[0]
    description = service.descriptions[0]
    assert (description.executable, description.arguments) == ("/bin/sh", ["/w/pilot.sh"])
    assert (description.working_directory, description.queue, description.project) == ("/w", "debug", "m1")
    assert saga.poll([job_id, "[slurm://localhost]-[999]"]) == {job_id: S.SUBMITTED}
    service.jobs[job_id].state = "Running"
    assert saga.poll([job_id]) == {job_id: S.RUNNING}
    saga.cancel(job_id)
    assert saga.poll([job_id]) == {job_id: S.CANCELLED}
    saga.close()
    assert service.closed


def test_saga_failures_are_batch_errors(fake_saga: types.ModuleType) -> None:
    saga = SagaBatchSystem(Replay(), {}, url="pbs+ssh://login")
    with pytest.raises(BatchSystemError, match="saga cancel failed: DoesNotExist") as info:
        saga.cancel("[pbs+ssh://login]-[1]")
    assert info.value.context["url"] == "pbs+ssh://login"
    with pytest.raises(BatchSystemError, match="does not discover"):
        saga.discover()
    with pytest.raises(BatchSystemError, match="no submit options"):
        saga.submit(Path("/s"), Path("/w"), ["-A", "x"])
    assert saga.describe_submit(Path("/s"), Path("/w")) == "the saga job service"
    with pytest.raises(BatchSystemError, match=r"batch\.saga_url"):
        SagaBatchSystem(Replay(), {}).poll(["1"])
    assert not SagaBatchSystem.in_allocation({"SLURM_JOB_ID": "1"})


def test_saga_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "radical", None)
    monkeypatch.setitem(sys.modules, "radical.saga", None)
    saga = SagaBatchSystem(Replay(), {}, url="slurm://localhost")
    with pytest.raises(PluginError, match=r"pip install 'hpcpilot\[saga\]'"):
        saga.submit(Path("/s.sh"), Path("/w"))
