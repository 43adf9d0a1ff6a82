"""The launcher family: where the ranks go (`Placement`) and the `Launcher` base class.

A launcher is a pure argv builder: a placement and a command in, the full argv of the launch tool out
(tool, its placement flags, the user's extra options, the command unchanged). It never builds shell text
and never reads the environment; ``hpcpilot launch`` discovers the allocation, builds the argv with the
plugin the settings name and runs it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from hpcpilot.model.allocation import Allocation
from hpcpilot.model.errors import ConfigError

#: The values of ``launch.ranks_per``.
RANKS_PER: tuple[str, ...] = ("node", "gpu", "core")


@dataclass(frozen=True)
class Placement:
    """Where the ranks of one launch go.

    Parameters
    ----------
    nodes
        Host names of the nodes to start ranks on, in the batch system's order (not empty).
    ranks_per
        ``node`` (one rank per node, bound to nothing: it runs the node's payloads), ``gpu`` (one rank
        per GPU, the node's cores split evenly between them, one GPU each) or ``core`` (one rank per core,
        bound to it).
    cores_per_node
        Cores of each node given to the job (at least 1).
    gpus_per_node
        GPUs of each node given to the job (0: none).

    Raises
    ------
    ConfigError
        A value is out of range, or ``ranks_per`` is ``gpu`` without GPUs or with fewer cores than GPUs;
        the message names the field (``launch.ranks_per``, ``cores_per_node``, ...).
    """

    nodes: tuple[str, ...]
    ranks_per: str
    cores_per_node: int
    gpus_per_node: int = 0

    def __post_init__(self) -> None:
        if self.ranks_per not in RANKS_PER:
            raise ConfigError(
                f"launch.ranks_per: {self.ranks_per!r} is not one of {', '.join(RANKS_PER)}",
                context={"field": "launch.ranks_per"},
            )
        if not self.nodes or not all(self.nodes):
            raise ConfigError(
                "placement nodes: at least one node, and no empty host names",
                context={"field": "nodes", "nodes": ",".join(self.nodes)},
            )
        if self.cores_per_node < 1:
            raise ConfigError(
                f"placement cores_per_node: {self.cores_per_node} (must be at least 1)",
                context={"field": "cores_per_node"},
            )
        if self.gpus_per_node < 0:
            raise ConfigError(
                f"placement gpus_per_node: {self.gpus_per_node} (must not be negative)",
                context={"field": "gpus_per_node"},
            )
        if self.ranks_per == "gpu" and self.gpus_per_node == 0:
            raise ConfigError(
                "launch.ranks_per='gpu' needs GPUs, but the allocation has gpus_per_node=0 "
                "(use ranks_per 'node' or 'core', or ask the batch system for GPUs)",
                context={"field": "launch.ranks_per", "gpus_per_node": 0},
            )
        if self.ranks_per == "gpu" and self.cores_per_node < self.gpus_per_node:
            raise ConfigError(
                f"launch.ranks_per='gpu': cores_per_node={self.cores_per_node} is fewer than "
                f"gpus_per_node={self.gpus_per_node}, so a GPU rank would get no core",
                context={"field": "launch.ranks_per"},
            )

    @classmethod
    def from_allocation(
        cls, allocation: Allocation, ranks_per: str = "node", *, default_cores: int | None = None
    ) -> Placement:
        """The placement of ``ranks_per`` ranks over an allocation's nodes.

        Parameters
        ----------
        allocation
            What the batch system gave the job.
        ranks_per
            ``node``, ``gpu`` or ``core`` (``launch.ranks_per``).
        default_cores
            Cores per node when the allocation does not say (e.g. the CPUs this process may run on).

        Raises
        ------
        ConfigError
            The allocation has no nodes, the cores per node are unknown and no default is given, or the
            placement is invalid (see `Placement`).
        """
        cores = allocation.cores_per_node if allocation.cores_per_node is not None else default_cores
        if cores is None:
            raise ConfigError(
                "placement cores_per_node: the allocation does not say how many cores a node has",
                context={"field": "cores_per_node", "batch_system": allocation.batch_system},
            )
        return cls(allocation.nodes, ranks_per, cores, allocation.gpus_per_node)

    @property
    def ranks_per_node(self) -> int:
        """Ranks started on each node: 1, the node's GPUs, or its cores."""
        if self.ranks_per == "gpu":
            return self.gpus_per_node
        if self.ranks_per == "core":
            return self.cores_per_node
        return 1

    @property
    def total_ranks(self) -> int:
        """Ranks of the whole launch (the MPI world size)."""
        return len(self.nodes) * self.ranks_per_node

    @property
    def cores_per_rank(self) -> int:
        """Cores each rank may use: the whole node, the node's cores over its GPUs (rounded down), or 1."""
        return self.cores_per_node // self.ranks_per_node

    @property
    def gpus_per_rank(self) -> int:
        """GPUs each rank gets: all of the node's (one rank per node), 1 (per GPU) or 0 (per core)."""
        if self.ranks_per == "gpu":
            return 1
        if self.ranks_per == "core":
            return 0
        return self.gpus_per_node


class Launcher(abc.ABC):
    """A launch tool (entry-point group ``hpcpilot.launchers``).

    Parameters
    ----------
    executable
        The tool to run (default: the class's `default_executable`, found on ``PATH``), e.g. the
        ``mpiexec`` of the MPI installed beside the Python that runs hpcpilot.

    Attributes
    ----------
    name
        The plugin's name.
    default_executable
        The tool's usual command name.
    """

    name: ClassVar[str] = ""
    default_executable: ClassVar[str] = ""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or self.default_executable

    @abc.abstractmethod
    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """The full argv that starts ``command`` once per rank of ``placement``.

        Parameters
        ----------
        placement
            Nodes, ranks per node, cores and GPUs.
        command
            What every rank runs (``python -m hpcpilot run ...``); it ends the argv unchanged.
        options
            Extra launcher options (``launch.options``), placed after the placement flags so that they
            can override them.

        Returns
        -------
        list[str]
            ``[executable, *placement flags, *options, *command]``.

        Raises
        ------
        ValueError
            ``command`` is empty.
        """

    def _join(self, flags: Sequence[str], options: Sequence[str], command: Sequence[str]) -> list[str]:
        """``[executable, *flags, *options, *command]``, refusing an empty command."""
        if not command:
            raise ValueError(f"{self.name}: nothing to launch (empty command)")
        return [self.executable, *flags, *options, *command]
