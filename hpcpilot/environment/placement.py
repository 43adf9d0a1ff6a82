"""Per-slot placement on a node: which cores and GPUs a slot's payloads get. Pure bookkeeping.

A worker owns ``cores`` core positions and ``gpus`` GPUs. Each slot takes the lowest free positions it
needs (a job's ``coreCount``) and, when ``node.gpus_per_slot`` is set, that many GPUs of its own; a node
then runs at most ``gpus // gpus_per_slot`` slots at once. Core positions map onto the CPUs this process
may run on (round robin when ``node.cores`` asks for more than there are). The GPU selection reaches the
payload as the vendor's variable (`gpu_env`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The variable that selects a process's GPUs, per vendor.
GPU_VARIABLES = {
    "nvidia": "CUDA_VISIBLE_DEVICES",
    "amd": "ROCR_VISIBLE_DEVICES",
    "intel": "ZE_AFFINITY_MASK",
}


@dataclass(frozen=True, slots=True)
class SlotPlacement:
    """The share of a node one slot holds.

    Attributes
    ----------
    positions
        The core positions it holds (0 .. cores-1 of the node).
    cpus
        The CPU ids of those positions (what the payloads are pinned to).
    gpus
        The GPU indices it holds (empty: no GPU selection).
    """

    positions: tuple[int, ...]
    cpus: tuple[int, ...]
    gpus: tuple[int, ...] = ()


class NodeSlots:
    """Hands a node's cores and GPUs to slots and takes them back.

    Parameters
    ----------
    cores
        Core positions of the node.
    cpu_ids
        The CPUs this process may run on (positions map onto them round robin).
    gpus
        GPUs of the node.
    gpus_per_slot
        GPUs each slot gets (0: no GPU selection, and GPUs do not limit the slots).
    """

    def __init__(self, cores: int, cpu_ids: Sequence[int], gpus: int = 0, gpus_per_slot: int = 0) -> None:
        if cores < 1 or not cpu_ids:
            raise ValueError("a node needs at least one core and one CPU")
        self.cores = cores
        self.cpu_ids = tuple(sorted(cpu_ids))
        self.gpus = gpus
        self.gpus_per_slot = gpus_per_slot if gpus > 0 else 0
        self._free_positions = set(range(cores))
        self._free_gpus = set(range(gpus))

    @property
    def max_slots(self) -> int | None:
        """Most slots at once that the GPUs allow (None: only cores limit them)."""
        return self.gpus // self.gpus_per_slot if self.gpus_per_slot else None

    @property
    def free_cores(self) -> int:
        """Core positions no slot holds."""
        return len(self._free_positions)

    def take(self, cores: int, *, force: bool = False) -> SlotPlacement | None:
        """Hold ``cores`` positions (and ``gpus_per_slot`` GPUs) for a new slot, or None if they are not free.

        ``force`` (the node runs nothing) gives a slot that asks for more than the node has every core
        and every GPU instead of None.
        """
        want_gpus = self.gpus_per_slot
        enough = len(self._free_positions) >= cores and len(self._free_gpus) >= want_gpus
        if not enough and not force:
            return None
        positions = tuple(sorted(self._free_positions)[: max(cores, 1)])
        gpus = tuple(sorted(self._free_gpus)[:want_gpus]) if want_gpus else ()
        self._free_positions.difference_update(positions)
        self._free_gpus.difference_update(gpus)
        cpus = tuple(sorted({self.cpu_ids[p % len(self.cpu_ids)] for p in positions}))
        return SlotPlacement(positions, cpus, gpus)

    def give(self, placement: SlotPlacement) -> None:
        """A slot has ended: its cores and GPUs are free again."""
        self._free_positions.update(placement.positions)
        self._free_gpus.update(placement.gpus)


def gpu_env(vendor: str, gpus: Sequence[int | str]) -> dict[str, str]:
    """The variable that gives a process exactly ``gpus`` (empty for no selection).

    Raises
    ------
    ValueError
        For a vendor other than ``nvidia``, ``amd`` or ``intel``.
    """
    if not gpus:
        return {}
    try:
        name = GPU_VARIABLES[vendor]
    except KeyError:
        raise ValueError(f"unknown GPU vendor {vendor!r} (nvidia, amd or intel)") from None
    return {name: ",".join(str(g) for g in gpus)}


def cpu_list(cpus: Sequence[int]) -> str:
    """CPU ids in ``taskset --cpu-list`` form, ranges compressed: ``0-3,8``."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
