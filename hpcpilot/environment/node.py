"""The node's own resources: its GPUs and their vendor, and each co-located worker rank's share of it.

GPU discovery (`discover_gpus`) looks, in this order, at

1. the variable a batch system or launcher uses to hand a process its GPUs: ``ROCR_VISIBLE_DEVICES``
   (AMD), ``ZE_AFFINITY_MASK`` (Intel), ``CUDA_VISIBLE_DEVICES`` (NVIDIA; Slurm sets it for any
   vendor's GPUs, so the more specific variables come first);
2. ``nvidia-smi -L``, then ``rocm-smi --showproductname``;
3. the device files: ``/dev/nvidia0`` .., then the render nodes ``/dev/dri/renderD*`` whose PCI vendor
   (``/sys/class/drm/renderD*/device/vendor``) is AMD or Intel.

The first that names any GPU wins. The devices are kept as the ids the vendor's variable takes
(``0``, ``MIG-...``, ``0.1``), so a slot's selection means the same device its parent saw.

Several worker ranks on one host (`share_node`) divide what they see among themselves: ranks that see the
same CPUs (or the same GPUs) split that set; a rank its launcher bound to CPUs or GPUs of its own keeps
them. Everything here is pure but for the default tool runner and the paths of ``/dev`` and ``/sys``,
which are injected.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Vendors in the order their variables are read, with the variable that selects a process's GPUs.
VISIBLE_VARIABLES = (
    ("amd", "ROCR_VISIBLE_DEVICES"),
    ("intel", "ZE_AFFINITY_MASK"),
    ("nvidia", "CUDA_VISIBLE_DEVICES"),
)

#: PCI vendor ids of GPU makers (``/sys/class/drm/*/device/vendor``).
PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}

#: The tools asked, per vendor: argv and the parser of what it prints.
NVIDIA_SMI = ("nvidia-smi", "-L")
ROCM_SMI = ("rocm-smi", "--showproductname")

#: Seconds a GPU tool may take before it counts as absent.
TOOL_TIMEOUT_S = 20.0

#: Runs a tool and returns its standard output, or None when it is missing, fails or hangs.
ToolRunner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """The GPUs a process can use, as found.

    Attributes
    ----------
    vendor
        ``nvidia``, ``amd``, ``intel``, or empty when none was found.
    ids
        Each GPU as the vendor's variable names it (``CUDA_VISIBLE_DEVICES=<id>``).
    source
        Where they were found (a variable, a tool, a device directory, ``node.gpus``, the batch system).
    """

    vendor: str = ""
    ids: tuple[str, ...] = ()
    source: str = "none"

    @property
    def count(self) -> int:
        """How many GPUs."""
        return len(self.ids)

    def describe(self) -> str:
        """One line for the log: ``2 nvidia GPU(s) [0,1] from nvidia-smi -L``."""
        if not self.ids:
            return f"no GPU ({self.source})"
        return f"{self.count} {self.vendor or 'unknown'} GPU(s) [{','.join(self.ids)}] from {self.source}"


# --- parsers --------------------------------------------------------------------------------------


def visible_devices(value: str) -> tuple[str, ...]:
    """The devices a ``*_VISIBLE_DEVICES`` / ``ZE_AFFINITY_MASK`` value selects.

    An empty value, ``NoDevFiles`` (Slurm, for a job without GPUs) or a leading ``-1`` selects none; as
    CUDA does, an invalid entry (one starting with ``-``) hides it and every device after it.
    """
    ids: list[str] = []
    for part in value.split(","):
        entry = part.strip()
        if not entry:
            continue
        if entry.startswith("-") or entry.lower() == "nodevfiles":
            break
        ids.append(entry)
    return tuple(dict.fromkeys(ids))


_NVIDIA_GPU = re.compile(r"^GPU (\d+): .*\(UUID: (GPU-[0-9A-Za-z-]+)\)\s*$")
_NVIDIA_MIG = re.compile(r"^\s+MIG \S+\s+Device\s+\d+: \(UUID: (MIG-[0-9A-Za-z/-]+)\)\s*$")


def parse_nvidia_smi_list(text: str) -> tuple[str, ...]:
    """The devices of ``nvidia-smi -L``: a GPU's index, or the UUIDs of its MIG instances.

    A GPU split into MIG instances is used through them (``CUDA_VISIBLE_DEVICES=MIG-...``), one device
    per instance; lines that are neither a GPU nor a MIG instance (a driver message) are skipped.
    """
    devices: list[str] = []
    current: str | None = None
    migs: list[str] = []

    def close() -> None:
        if current is not None:
            devices.extend(migs or [current])

    for line in text.splitlines():
        gpu = _NVIDIA_GPU.match(line)
        if gpu:
            close()
            current, migs = gpu.group(1), []
            continue
        mig = _NVIDIA_MIG.match(line)
        if mig and current is not None:
            migs.append(mig.group(1))
    close()
    return tuple(devices)


_ROCM_GPU = re.compile(r"^GPU\[(\d+)\]\s*:")


def parse_rocm_smi(text: str) -> tuple[str, ...]:
    """The GPU indices of ``rocm-smi`` (any of its ``GPU[N] : field: value`` listings)."""
    found = {int(m.group(1)) for line in text.splitlines() if (m := _ROCM_GPU.match(line.strip()))}
    return tuple(str(i) for i in sorted(found))


_NVIDIA_FILE = re.compile(r"^nvidia(\d+)$")
_RENDER_NODE = re.compile(r"^renderD(\d+)$")


def nvidia_device_files(names: Sequence[str]) -> tuple[str, ...]:
    """GPU indices of the ``/dev/nvidiaN`` files among ``names`` (``nvidiactl`` and the like are not GPUs)."""
    found = sorted(int(m.group(1)) for name in names if (m := _NVIDIA_FILE.match(name)))
    return tuple(str(i) for i in found)


def render_nodes(names: Sequence[str], vendor_of: Callable[[str], str]) -> dict[str, tuple[str, ...]]:
    """Render nodes (``/dev/dri/renderD128`` ..) per vendor, numbered in their order from 0.

    ``vendor_of`` gives a node's vendor (``nvidia``, ``amd``, ``intel``) or an empty string: nodes of
    other makers (a server's management display) and of unknown ones are left out.
    """
    nodes = sorted((int(m.group(1)), name) for name in names if (m := _RENDER_NODE.match(name)))
    per_vendor: dict[str, list[str]] = {}
    for _, name in nodes:
        vendor = vendor_of(name)
        if vendor:
            ids = per_vendor.setdefault(vendor, [])
            ids.append(str(len(ids)))
    return {vendor: tuple(ids) for vendor, ids in per_vendor.items()}


# --- discovery ------------------------------------------------------------------------------------


def run_tool(argv: Sequence[str]) -> str | None:
    """Run a GPU tool; its standard output, or None when it is not installed, fails or hangs."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _listdir(path: Path) -> tuple[str, ...]:
    try:
        return tuple(p.name for p in path.iterdir())
    except OSError:
        return ()


def _pci_vendor(sys_drm: Path, name: str) -> str:
    try:
        text = (sys_drm / name / "device" / "vendor").read_text()
    except OSError:
        return ""
    return PCI_VENDORS.get(text.strip().lower(), "")


def discover_gpus(
    env: Mapping[str, str],
    vendor: str = "auto",
    *,
    run: ToolRunner = run_tool,
    dev: Path = Path("/dev"),
    sys_drm: Path = Path("/sys/class/drm"),
) -> GpuInventory:
    """The GPUs this process can use (see the module's text for the order of the sources).

    Parameters
    ----------
    env
        The process's environment.
    vendor
        ``auto``, or the one vendor to look for (``node.gpu_vendor``).
    run
        Runs a tool: its standard output, or None.
    dev, sys_drm
        Where ``/dev`` and ``/sys/class/drm`` are (a test's directory).
    """
    wanted = {"nvidia", "amd", "intel"} if vendor == "auto" else {vendor}
    for name_vendor, variable in VISIBLE_VARIABLES:
        if name_vendor in wanted and variable in env:
            return GpuInventory(name_vendor, visible_devices(env[variable]), variable)
    if "nvidia" in wanted:
        out = run(NVIDIA_SMI)
        ids = parse_nvidia_smi_list(out) if out else ()
        if ids:
            return GpuInventory("nvidia", ids, " ".join(NVIDIA_SMI))
    if "amd" in wanted:
        out = run(ROCM_SMI)
        ids = parse_rocm_smi(out) if out else ()
        if ids:
            return GpuInventory("amd", ids, " ".join(ROCM_SMI))
    if "nvidia" in wanted:
        ids = nvidia_device_files(_listdir(dev))
        if ids:
            return GpuInventory("nvidia", ids, f"{dev}/nvidia*")
    dri = render_nodes(_listdir(dev / "dri"), lambda name: _pci_vendor(sys_drm, name))
    for name_vendor in ("amd", "intel", "nvidia"):
        if name_vendor in wanted and dri.get(name_vendor):
            return GpuInventory(name_vendor, dri[name_vendor], f"{dev}/dri")
    return GpuInventory(source="none found")


def counted_gpus(count: int, vendor: str, env: Mapping[str, str], source: str) -> GpuInventory:
    """``count`` GPUs known from a setting or the batch system, named as the vendor's variable lists them.

    Where the vendor's variable is set, it says what this process sees: at most ``count`` of its devices
    are used (fewer where a launcher bound the rank to fewer). Without it, ``0 .. count-1``.
    """
    chosen = "nvidia" if vendor == "auto" else vendor
    variable = dict(VISIBLE_VARIABLES).get(chosen, "")
    listed = visible_devices(env[variable]) if variable in env else tuple(str(i) for i in range(count))
    ids = listed[:count]
    return GpuInventory(chosen if ids else "", ids, source)


# --- ranks sharing a node -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankView:
    """What one worker rank sees of its node (gathered from every rank).

    Attributes
    ----------
    rank
        The rank.
    host
        Its node.
    cpus
        The CPUs it may run on.
    gpus
        The GPUs it found.
    """

    rank: int
    host: str
    cpus: tuple[int, ...]
    gpus: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeShare:
    """One worker rank's share of its node.

    Attributes
    ----------
    cores
        Core positions its slots may take.
    cpus
        The CPUs those positions map onto.
    gpus
        Its GPUs (ids of the vendor's variable).
    peers
        Worker ranks on the node, itself included.
    warnings
        What is worth a warning: an uneven division, more ranks than CPUs or GPUs.
    """

    cores: int
    cpus: tuple[int, ...]
    gpus: tuple[str, ...]
    peers: int = 1
    warnings: tuple[str, ...] = ()


def _part(count: int, index: int, parts: int) -> tuple[int, int]:
    """Start and length of part ``index`` of ``parts`` near-equal parts of ``count`` items."""
    base, extra = divmod(count, parts)
    return index * base + min(index, extra), base + (1 if index < extra else 0)


def _divide(
    items: tuple[T, ...], index: int, parts: int, what: str, host: str
) -> tuple[tuple[T, ...], list[str]]:
    """Part ``index`` of ``parts`` of ``items``, and what is worth a warning about the division."""
    if parts <= 1 or not items:
        return items, []
    notes = []
    if len(items) < parts:
        notes.append(f"{parts} worker ranks on {host} share {len(items)} {what}: some share one")
        return items[index % len(items) : index % len(items) + 1], notes
    if len(items) % parts:
        notes.append(f"{len(items)} {what} of {host} do not divide evenly among {parts} worker ranks")
    start, length = _part(len(items), index, parts)
    return items[start : start + length], notes


def share_node(me: int, views: Sequence[RankView], node_cores: int = 0) -> NodeShare:
    """Rank ``me``'s share of its node among the worker ranks on the same host.

    Ranks that see the same CPUs divide them; a rank that sees CPUs no other rank sees (its launcher
    bound it) keeps them. GPUs are divided the same way.

    Parameters
    ----------
    me
        This rank (its view is in ``views``).
    views
        Every worker rank's view (the coordinator's is left out).
    node_cores
        ``node.cores``: the node's cores, divided among its worker ranks (0: each rank counts the CPUs
        of its share).
    """
    mine = next(v for v in views if v.rank == me)
    peers = sorted((v for v in views if v.host == mine.host), key=lambda v: v.rank)
    notes: list[str] = []
    same_cpus = [v.rank for v in peers if v.cpus == mine.cpus]
    cpus, said = _divide(mine.cpus, same_cpus.index(me), len(same_cpus), "CPUs", mine.host)
    notes += said
    same_gpus = [v.rank for v in peers if v.gpus == mine.gpus]
    gpus, said = _divide(mine.gpus, same_gpus.index(me), len(same_gpus), "GPUs", mine.host)
    notes += said
    if node_cores > 0:
        index = [v.rank for v in peers].index(me)
        _, cores = _part(node_cores, index, len(peers))
        if node_cores % len(peers):
            uneven = f"does not divide evenly among {len(peers)} worker ranks"
            notes.append(f"node.cores={node_cores} on {mine.host} {uneven}")
        cores = max(cores, 1)
    else:
        cores = len(cpus)
    return NodeShare(cores, cpus, gpus, len(peers), tuple(dict.fromkeys(notes)))
