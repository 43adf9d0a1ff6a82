"""Golden tables: a placement -> the exact argv of every launcher; and the launcher family's conformance."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hpcpilot.launch.base import Launcher, Placement
from hpcpilot.model.allocation import Allocation
from hpcpilot.model.errors import ConfigError
from hpcpilot.plugins import FAMILIES, describe_plugins, load_plugin
from tests.conftest import need

CMD = ["/opt/py/bin/python3", "-m", "hpcpilot", "run", "--workdir", "/scratch/ap 1"]

TWO_NODES = Placement(("n1", "n2"), "node", cores_per_node=8)
TWO_NODES_GPUS = Placement(("n1", "n2"), "node", cores_per_node=32, gpus_per_node=4)
PER_GPU = Placement(("n1", "n2"), "gpu", cores_per_node=32, gpus_per_node=4)
PER_CORE = Placement(("n1",), "core", cores_per_node=8)

# (launcher, placement) -> the flags between the executable and the command, written out literally
GOLDEN: dict[str, dict[str, list[str]]] = {
    "srun": {
        "two_nodes": [
            "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=8", "--cpu-bind=none",
        ],
        "two_nodes_gpus": [
            "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=32", "--cpu-bind=none",
            "--gpus-per-task=4",
        ],
        "per_gpu": [
            "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=8", "--cpu-bind=cores",
            "--gpus-per-task=1", "--gpu-bind=closest",
        ],
        "per_core": [
            "--nodes=1", "--ntasks=8", "--ntasks-per-node=8", "--cpus-per-task=1", "--cpu-bind=cores",
        ],
    },
    "mpiexec": {
        "two_nodes": ["-n", "2", "--host", "n1:1,n2:1", "--map-by", "ppr:1:node", "--bind-to", "none"],
        "two_nodes_gpus": ["-n", "2", "--host", "n1:1,n2:1", "--map-by", "ppr:1:node", "--bind-to", "none"],
        "per_gpu": ["-n", "8", "--host", "n1:4,n2:4", "--map-by", "ppr:4:node:PE=8", "--bind-to", "core"],
        "per_core": ["-n", "8", "--host", "n1:8", "--map-by", "ppr:8:node", "--bind-to", "core"],
    },
    "mpiexec-mpich": {
        "two_nodes": ["-n", "2", "-ppn", "1", "-hosts", "n1,n2", "-bind-to", "none"],
        "two_nodes_gpus": ["-n", "2", "-ppn", "1", "-hosts", "n1,n2", "-bind-to", "none"],
        "per_gpu": ["-n", "8", "-ppn", "4", "-hosts", "n1,n2", "-bind-to", "core:8", "-gpus-per-proc", "1"],
        "per_core": ["-n", "8", "-ppn", "8", "-hosts", "n1", "-bind-to", "core:1"],
    },
    "mpiexec-pals": {
        "two_nodes": ["-n", "2", "--ppn", "1", "--depth", "8", "--cpu-bind", "none"],
        "two_nodes_gpus": ["-n", "2", "--ppn", "1", "--depth", "32", "--cpu-bind", "none"],
        "per_gpu": ["-n", "8", "--ppn", "4", "--depth", "8", "--cpu-bind", "depth"],
        "per_core": ["-n", "8", "--ppn", "8", "--depth", "1", "--cpu-bind", "core"],
    },
    "aprun": {
        "two_nodes": ["-n", "2", "-N", "1", "-d", "8", "-cc", "none"],
        "two_nodes_gpus": ["-n", "2", "-N", "1", "-d", "32", "-cc", "none"],
        "per_gpu": ["-n", "8", "-N", "4", "-d", "8", "-cc", "depth"],
        "per_core": ["-n", "8", "-N", "8", "-d", "1", "-cc", "cpu"],
    },
    "jsrun": {
        "two_nodes": ["-n", "2", "-a", "1", "-c", "8", "-g", "0", "-r", "1", "-b", "none"],
        "two_nodes_gpus": ["-n", "2", "-a", "1", "-c", "32", "-g", "4", "-r", "1", "-b", "none"],
        "per_gpu": ["-n", "8", "-a", "1", "-c", "8", "-g", "1", "-r", "4", "-b", "packed:8"],
        "per_core": ["-n", "8", "-a", "1", "-c", "1", "-g", "0", "-r", "8", "-b", "packed:1"],
    },
    "flux": {
        "two_nodes": ["run", "-N", "2", "-n", "2", "--cores-per-task=8", "-o", "cpu-affinity=off"],
        "two_nodes_gpus": [
            "run", "-N", "2", "-n", "2", "--cores-per-task=32", "--gpus-per-task=4", "-o", "cpu-affinity=off",
        ],
        "per_gpu": [
            "run", "-N", "2", "-n", "8", "--cores-per-task=8", "--gpus-per-task=1",
            "-o", "cpu-affinity=per-task", "-o", "gpu-affinity=per-task",
        ],
        "per_core": ["run", "-N", "1", "-n", "8", "--cores-per-task=1", "-o", "cpu-affinity=per-task"],
    },
}  # fmt: skip

PLACEMENTS = {
    "two_nodes": TWO_NODES,
    "two_nodes_gpus": TWO_NODES_GPUS,
    "per_gpu": PER_GPU,
    "per_core": PER_CORE,
}
EXECUTABLES = {
    "srun": "srun",
    "mpiexec": "mpiexec",
    "mpiexec-mpich": "mpiexec",
    "mpiexec-pals": "mpiexec",
    "aprun": "aprun",
    "jsrun": "jsrun",
    "flux": "flux",
}
REGISTERED = sorted(ep.name for ep in entry_points(group="hpcpilot.launchers"))


def _launcher_class(name: str) -> type[Launcher]:
    """The plugin class, through the registry as ``hpcpilot launch`` loads it."""
    return load_plugin("launchers", name, Launcher)


@pytest.mark.parametrize(
    ("launcher", "placement"), [(name, p) for name in sorted(GOLDEN) for p in sorted(GOLDEN[name])]
)
def test_golden_argv(launcher: str, placement: str) -> None:
    argv = _launcher_class(launcher)().argv(PLACEMENTS[placement], CMD)
    assert argv == [EXECUTABLES[launcher], *GOLDEN[launcher][placement], *CMD]


def test_golden_table_covers_every_registered_launcher() -> None:
    assert sorted(GOLDEN) == REGISTERED
    assert all(sorted(rows) == sorted(PLACEMENTS) for rows in GOLDEN.values())


def test_launchers_family_is_registered() -> None:
    """``hpcpilot launch`` loads them with ``load_plugin``; ``hpcpilot plugins`` lists them."""
    assert FAMILIES["launchers"].base_class() is Launcher
    assert {i.name for i in describe_plugins() if i.family == "launchers" and i.loads} == set(REGISTERED)
    for name in REGISTERED:
        cls = load_plugin("launchers", name, Launcher)
        assert cls.name == name


@pytest.mark.parametrize("name", REGISTERED)
@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_conformance(name: str, placement: str) -> None:
    """Every registered launcher: named as registered, argv of strings, options then the command unchanged."""
    cls = _launcher_class(name)
    assert cls.name == name
    assert cls.__doc__ and cls.argv.__doc__
    options = ["--extra-opt", "value with space"]
    argv = cls().argv(PLACEMENTS[placement], CMD, options)
    assert all(isinstance(a, str) and a for a in argv)
    assert argv[-len(CMD) :] == CMD
    assert argv[-len(CMD) - len(options) : -len(CMD)] == options
    # another executable replaces only the first word
    other = cls(executable="/site/bin/tool").argv(PLACEMENTS[placement], CMD, options)
    assert other == ["/site/bin/tool", *argv[1:]]
    # the argv mentions the total rank count somewhere, as a word or after '='
    total = str(PLACEMENTS[placement].total_ranks)
    assert total in argv or any(a.endswith(f"={total}") for a in argv)


@pytest.mark.parametrize("name", REGISTERED)
def test_empty_command_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="empty command"):
        _launcher_class(name)().argv(TWO_NODES, [])


def test_placement_counts() -> None:
    assert (TWO_NODES.ranks_per_node, TWO_NODES.total_ranks, TWO_NODES.cores_per_rank) == (1, 2, 8)
    assert (TWO_NODES_GPUS.gpus_per_rank, TWO_NODES_GPUS.cores_per_rank) == (4, 32)
    assert (PER_GPU.ranks_per_node, PER_GPU.total_ranks, PER_GPU.cores_per_rank) == (4, 8, 8)
    assert PER_GPU.gpus_per_rank == 1
    assert (PER_CORE.ranks_per_node, PER_CORE.total_ranks, PER_CORE.cores_per_rank) == (8, 8, 1)
    assert PER_CORE.gpus_per_rank == 0
    # cores that do not split evenly between GPUs: each GPU rank gets the floor
    assert Placement(("n1",), "gpu", cores_per_node=10, gpus_per_node=4).cores_per_rank == 2


def test_gpu_ranks_without_gpus_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        Placement(("n1", "n2"), "gpu", cores_per_node=8, gpus_per_node=0)
    assert "launch.ranks_per" in str(err.value)
    assert "gpus_per_node=0" in str(err.value)
    assert err.value.context["field"] == "launch.ranks_per"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nodes": ("n1",), "ranks_per": "socket", "cores_per_node": 8}, "launch.ranks_per"),
        ({"nodes": (), "ranks_per": "node", "cores_per_node": 8}, "nodes"),
        ({"nodes": ("n1", ""), "ranks_per": "node", "cores_per_node": 8}, "nodes"),
        ({"nodes": ("n1",), "ranks_per": "node", "cores_per_node": 0}, "cores_per_node"),
        ({"nodes": ("n1",), "ranks_per": "node", "cores_per_node": 8, "gpus_per_node": -1}, "gpus_per_node"),
        ({"nodes": ("n1",), "ranks_per": "gpu", "cores_per_node": 2, "gpus_per_node": 4}, "launch.ranks_per"),
    ],
)
def test_bad_placements_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Placement(**kwargs)  # type: ignore[arg-type]
    assert err.value.context["field"] == field
    assert field.rsplit(".", maxsplit=1)[-1] in str(err.value)


def test_placement_from_allocation() -> None:
    alloc = Allocation("slurm", "42", ("a", "b", "c"), cores_per_node=16, gpus_per_node=2)
    assert Placement.from_allocation(alloc, "gpu") == Placement(("a", "b", "c"), "gpu", 16, 2)
    unknown = Allocation("local", None, ("laptop",))
    assert Placement.from_allocation(unknown, default_cores=4).cores_per_node == 4
    with pytest.raises(ConfigError, match="cores_per_node"):
        Placement.from_allocation(unknown)


def test_mpich_argv_runs_under_the_real_hydra(tmp_path: Path) -> None:
    """The MPICH wheel's own mpiexec accepts the flags: 2 ranks on this host, each bound to one core."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    need(mpiexec.exists(), "mpiexec next to the test interpreter")
    need((os.cpu_count() or 1) >= 2, "two cores")
    info = subprocess.run([str(mpiexec), "-info"], capture_output=True, text=True, check=False)
    need("MPICH" in info.stdout + info.stderr or "HYDRA" in info.stdout, "MPICH's Hydra mpiexec")
    host = os.uname().nodename
    placement = Placement((host,), "core", cores_per_node=2)
    script = (
        "import os, pathlib, sys; rank = os.environ['PMI_RANK']; "
        "pathlib.Path(sys.argv[1], rank).write_text(str(len(os.sched_getaffinity(0))))"
    )
    command = [sys.executable, "-c", script, str(tmp_path)]
    argv = _launcher_class("mpiexec-mpich")(executable=str(mpiexec)).argv(placement, command)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    # one file per rank, each rank bound to one core
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.name.isdigit()} == {"0": "1", "1": "1"}
