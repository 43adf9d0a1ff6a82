"""The node's own resources: GPU discovery on recorded tool output and fake device files, and the share
of a node each co-located worker rank takes.

No GPU machine was available to this project's tests: ``nvidia-smi -L`` and ``rocm-smi`` are replayed
from ``tests/data/gpus`` (real formats, see tests/data/README.md), and ``/dev`` and ``/sys/class/drm``
are temporary directories.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcpilot.config.schema import NodeSettings, Settings
from hpcpilot.environment.node import (
    GpuInventory,
    RankView,
    counted_gpus,
    discover_gpus,
    nvidia_device_files,
    parse_nvidia_smi_list,
    parse_rocm_smi,
    share_node,
    visible_devices,
)
from hpcpilot.model.layout import WorkLayout
from hpcpilot.parallel import run as par
from hpcpilot.parallel.transport import LocalLink

DATA = Path(__file__).resolve().parent.parent / "data" / "gpus"
H200 = (DATA / "nvidia_smi_L_h200.txt").read_text()
A100X4 = (DATA / "nvidia_smi_L_a100x4.txt").read_text()
A100_MIG = (DATA / "nvidia_smi_L_a100_mig.txt").read_text()
NO_DRIVER = (DATA / "nvidia_smi_no_driver.txt").read_text()
MI300X = (DATA / "rocm_smi_showproductname_mi300x.txt").read_text()


class Tools:
    """A tool runner replaying recorded output; a tool without a recording is not installed."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.calls: list[str] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        self.calls.append(argv[0])
        return self.outputs.get(argv[0])


# --- parsers on recorded output ------------------------------------------------------------------


def test_nvidia_smi_list_gives_gpu_indices_and_mig_instances() -> None:
    assert parse_nvidia_smi_list(H200) == ("0",)
    assert parse_nvidia_smi_list(A100X4) == ("0", "1", "2", "3")
    # GPU 0 is split into two MIG instances: CUDA selects them by UUID; GPU 1 is whole
    assert parse_nvidia_smi_list(A100_MIG) == (
        "MIG-0d6b7c3e-81f2-5a49-b7c0-4e3d2a1f9b85",
        "MIG-7a2c9e15-4b3d-5f60-8c1e-9d0a7b6e5c24",
        "1",
    )
    assert parse_nvidia_smi_list(NO_DRIVER) == ()


def test_rocm_smi_gives_gpu_indices() -> None:
    assert parse_rocm_smi(MI300X) == ("0", "1", "2", "3")
    assert parse_rocm_smi("") == ()


def test_visible_devices_as_cuda_reads_them() -> None:
    assert visible_devices("0,1") == ("0", "1")
    assert visible_devices(" 2 , 3 ") == ("2", "3")
    assert visible_devices("GPU-5c1e8a47,MIG-0d6b7c3e") == ("GPU-5c1e8a47", "MIG-0d6b7c3e")
    assert visible_devices("0.0,0.1") == ("0.0", "0.1")  # ZE_AFFINITY_MASK tiles
    assert visible_devices("") == ()
    assert visible_devices("NoDevFiles") == ()  # Slurm, for a job that asked for no GPU
    assert visible_devices("-1") == ()
    assert visible_devices("2,-1,3") == ("2",)  # CUDA ignores every device after an invalid one


def test_device_files_name_gpus_not_control_files() -> None:
    names = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia10", "null"]
    assert nvidia_device_files(names) == ("0", "1", "10")


# --- discovery, in order ---------------------------------------------------------------------------


def fake_dev(
    root: Path, names: Sequence[str] = (), render: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """A /dev with ``names`` and render nodes, and a /sys/class/drm giving each render node's vendor."""
    dev, sys_drm = root / "dev", root / "sys-class-drm"
    (dev / "dri").mkdir(parents=True)
    sys_drm.mkdir()
    for name in names:
        (dev / name).touch()
    for node, vendor in (render or {}).items():
        (dev / "dri" / node).touch()
        (dev / "dri" / node.replace("renderD", "card")).touch()
        (sys_drm / node / "device").mkdir(parents=True)
        (sys_drm / node / "device" / "vendor").write_text(vendor + "\n")
    return dev, sys_drm


def test_a_visible_devices_variable_comes_before_every_tool(tmp_path: Path) -> None:
    dev, sys_drm = fake_dev(tmp_path, ["nvidia0", "nvidia1"])
    tools = Tools({"nvidia-smi": A100X4})
    found = discover_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, run=tools, dev=dev, sys_drm=sys_drm)
    assert found == GpuInventory("nvidia", ("2", "3"), "CUDA_VISIBLE_DEVICES")
    assert tools.calls == []
    hidden = discover_gpus({"CUDA_VISIBLE_DEVICES": ""}, run=tools, dev=dev, sys_drm=sys_drm)
    assert hidden.count == 0 and hidden.source == "CUDA_VISIBLE_DEVICES" and tools.calls == []
    # Slurm sets CUDA_VISIBLE_DEVICES for AMD GPUs too: the AMD variable says the vendor
    amd = discover_gpus({"CUDA_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": "0,1"}, run=tools, dev=dev)
    assert (amd.vendor, amd.ids) == ("amd", ("0", "1"))
    intel = discover_gpus({"ZE_AFFINITY_MASK": "0.0,0.1,1.0"}, run=tools, dev=dev)
    assert (intel.vendor, intel.ids) == ("intel", ("0.0", "0.1", "1.0"))


def test_nvidia_smi_then_rocm_smi(tmp_path: Path) -> None:
    dev, sys_drm = fake_dev(tmp_path)
    h200 = discover_gpus({}, run=Tools({"nvidia-smi": H200}), dev=dev, sys_drm=sys_drm)
    assert h200 == GpuInventory("nvidia", ("0",), "nvidia-smi -L")
    assert h200.describe() == "1 nvidia GPU(s) [0] from nvidia-smi -L"
    tools = Tools({"rocm-smi": MI300X})
    mi300x = discover_gpus({}, run=tools, dev=dev, sys_drm=sys_drm)
    assert mi300x == GpuInventory("amd", ("0", "1", "2", "3"), "rocm-smi --showproductname")
    assert tools.calls == ["nvidia-smi", "rocm-smi"]


def test_device_files_when_no_tool_answers(tmp_path: Path) -> None:
    dev, sys_drm = fake_dev(tmp_path / "n", ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"])
    found = discover_gpus({}, run=Tools({}), dev=dev, sys_drm=sys_drm)
    assert (found.vendor, found.ids) == ("nvidia", ("0", "1"))
    dev, sys_drm = fake_dev(tmp_path / "a", ["kfd"], {"renderD128": "0x1002", "renderD129": "0x1002"})
    found = discover_gpus({}, run=Tools({}), dev=dev, sys_drm=sys_drm)
    assert (found.vendor, found.ids, found.source) == ("amd", ("0", "1"), f"{dev}/dri")
    dev, sys_drm = fake_dev(tmp_path / "i", [], {"renderD128": "0x8086", "renderD129": "0x8086"})
    assert discover_gpus({}, run=Tools({}), dev=dev, sys_drm=sys_drm).vendor == "intel"
    # a server's management display (ASPEED 0x1a03) is not a GPU for payloads
    dev, sys_drm = fake_dev(tmp_path / "b", [], {"renderD128": "0x1a03"})
    none = discover_gpus({}, run=Tools({}), dev=dev, sys_drm=sys_drm)
    assert none.count == 0 and none.vendor == "" and none.describe() == "no GPU (none found)"
    # nvidia-smi failing (no driver: the runner gives None) falls through to the files
    dev, sys_drm = fake_dev(tmp_path / "f", ["nvidia0"])
    assert discover_gpus({}, run=Tools({"nvidia-smi": NO_DRIVER}), dev=dev, sys_drm=sys_drm).ids == ("0",)


def test_a_chosen_vendor_looks_for_that_vendor_only(tmp_path: Path) -> None:
    dev, sys_drm = fake_dev(tmp_path, ["nvidia0"], {"renderD128": "0x8086"})
    tools = Tools({"nvidia-smi": H200})
    found = discover_gpus({"CUDA_VISIBLE_DEVICES": "0"}, "intel", run=tools, dev=dev, sys_drm=sys_drm)
    assert (found.vendor, found.ids) == ("intel", ("0",)) and tools.calls == []
    assert discover_gpus({}, "amd", run=tools, dev=dev, sys_drm=sys_drm).count == 0


def test_a_known_count_is_named_as_the_variable_lists_them() -> None:
    assert counted_gpus(2, "auto", {"CUDA_VISIBLE_DEVICES": "4,5,6"}, "node.gpus").ids == ("4", "5")
    assert counted_gpus(2, "amd", {}, "the batch system") == GpuInventory(
        "amd", ("0", "1"), "the batch system"
    )
    assert counted_gpus(0, "auto", {}, "node.gpus") == GpuInventory("", (), "node.gpus")
    # srun --gpus-per-task=1: the batch system says 4 per node, this rank's launcher gave it device 2
    assert counted_gpus(4, "nvidia", {"CUDA_VISIBLE_DEVICES": "2"}, "the batch system").ids == ("2",)


# --- ranks sharing a node ----------------------------------------------------------------------------

ALL16 = tuple(range(16))


def test_ranks_that_see_the_whole_node_divide_it() -> None:
    views = [RankView(r, "nid001", ALL16, ("0", "1", "2", "3")) for r in (1, 2, 3)]
    shares = [share_node(r, views) for r in (1, 2, 3)]
    assert [s.cores for s in shares] == [6, 5, 5]
    assert sorted(c for s in shares for c in s.cpus) == list(ALL16)  # each CPU to one rank
    assert [s.gpus for s in shares] == [("0", "1"), ("2",), ("3",)]
    assert all(s.peers == 3 for s in shares)
    warnings = " / ".join(shares[0].warnings)
    assert "16 CPUs of nid001 do not divide evenly among 3 worker ranks" in warnings
    assert "4 GPUs of nid001 do not divide evenly among 3 worker ranks" in warnings
    even = [RankView(r, "nid001", ALL16, ("0", "1", "2", "3")) for r in (1, 2, 3, 4)]
    assert all(share_node(r, even).warnings == () for r in (1, 2, 3, 4))


def test_node_cores_counts_the_node_not_the_rank() -> None:
    views = [RankView(r, "h", (0, 1), ()) for r in (1, 2, 3)]  # node.cores=16 on a two-CPU machine
    shares = [share_node(r, views, node_cores=16) for r in (1, 2, 3)]
    assert sum(s.cores for s in shares) == 16
    assert [s.cpus for s in shares] == [(0,), (1,), (0,)]
    assert any("share 2 CPUs: some share one" in w for w in shares[2].warnings)


def test_a_rank_bound_by_its_launcher_keeps_what_it_sees() -> None:
    views = [RankView(1, "h", (0, 1, 2, 3), ("0",)), RankView(2, "h", (4, 5, 6, 7), ("1",))]
    one, two = share_node(1, views), share_node(2, views)
    assert (one.cores, one.cpus, one.gpus, one.warnings) == (4, (0, 1, 2, 3), ("0",), ())
    assert (two.cores, two.cpus, two.gpus) == (4, (4, 5, 6, 7), ("1",))
    # bound per socket: two ranks on each socket divide their socket
    sockets = [RankView(r, "h", (0, 1, 2, 3) if r % 2 else (4, 5, 6, 7), ()) for r in (1, 2, 3, 4)]
    assert [share_node(r, sockets).cpus for r in (1, 2, 3, 4)] == [(0, 1), (4, 5), (2, 3), (6, 7)]


def test_ranks_on_other_hosts_share_nothing() -> None:
    views = [RankView(r, f"nid{r:03d}", ALL16, ("0",)) for r in (1, 2)]
    assert share_node(2, views) == share_node(2, views[1:])
    assert share_node(2, views).cores == 16 and share_node(2, views).peers == 1


# --- through a worker: auto GPUs bind each slot's device ---------------------------------------------


def test_auto_gpus_give_each_slot_its_own_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ``node.gpus_per_slot=1`` on a one-GPU node: one slot at a time, with CUDA_VISIBLE_DEVICES=0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat '{DATA / 'nvidia_smi_L_h200.txt'}'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(node=NodeSettings(cores=4, gpus_per_slot=1))
    link = LocalLink()
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, WorkLayout(tmp_path), tuple)
    assert worker.placer.max_slots == 1
    assert (worker.node.gpus, worker.node.gpu_vendor, worker.node.gpu_source) == (
        1,
        "nvidia",
        "nvidia-smi -L",
    )
    first = worker.placer.take(1)
    assert first is not None and worker.placer.take(1) is None  # the second job waits for the GPU
    assert worker.gpu_ids == ("0",) and first.gpus == (0,)


# --- what the report shows ---------------------------------------------------------------------------


def test_the_report_shows_each_workers_cores_and_gpus() -> None:
    from hpcpilot.monitor.present import report_tables
    from hpcpilot.monitor.runview import run_view

    records = [
        {"t": 1.0, "ev": "run", "host": "h", "pid": 1, "ranks": 3},
        {"t": 1.0, "ev": "worker", "rank": 1, "host": "nid001", "cores": 8, "gpus": 1,
         "gpu_vendor": "nvidia", "gpu_source": "nvidia-smi -L", "peers": 2},
        {"t": 1.0, "ev": "worker", "rank": 2, "host": "nid001", "cores": 8, "gpus": 0,
         "gpu_vendor": "", "gpu_source": "none found", "peers": 2},
    ]  # fmt: skip
    view = run_view(records)
    assert view.workers[1].peers == 2
    report = report_tables(view, None, None, "/w")
    assert "cores" in report and "GPUs found by" in report
    row1 = next(line for line in report.splitlines() if line.startswith("rank 1"))
    row2 = next(line for line in report.splitlines() if line.startswith("rank 2"))
    assert row1.split()[:8] == ["rank", "1", "nid001", "0", "0", "-", "8", "1"]
    assert row1.endswith("nvidia from nvidia-smi -L")
    assert row2.split()[5:] == ["-", "8", "0", "none", "found"]


def test_a_batch_system_count_on_amd_nodes_uses_the_amd_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm gives 4 GPUs and sets CUDA_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES: the slots use ROCR."""
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "ROCR_VISIBLE_DEVICES": "0,1,2,3"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    link = LocalLink()
    worker = par.make_worker(
        par.World(0, 1, "h"), link.worker, Settings(), WorkLayout(Path("/tmp")), tuple, 4
    )
    assert (worker.node.gpus, worker.node.gpu_vendor, worker.node.gpu_source) == (
        4,
        "amd",
        "the batch system",
    )
    assert worker.settings.node.gpu_vendor == "amd"
