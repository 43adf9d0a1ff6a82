"""``mpiexec`` of Open MPI (5.x, PRRTE), MPICH's Hydra, and Cray PALS (HPE Cray EX with PBS)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcpilot.launch.base import Launcher, Placement


class OpenMpiLauncher(Launcher):
    """Open MPI 5: ``mpiexec -n T --host h1:P,h2:P --map-by ppr:P:node[:PE=D] --bind-to none|core``.

    The host list gives each node ``P`` slots, so exactly ``P`` ranks land on each. One rank per node is
    bound to nothing (inside an allocation Open MPI 5 otherwise binds it to one core); per core each rank
    is bound to its core; per GPU each rank gets ``D`` = cores / GPUs cores (``PE=D``). Open MPI has no
    GPU-selection flag: a GPU rank picks its device by its local rank (``OMPI_COMM_WORLD_LOCAL_RANK``).
    """

    name = "mpiexec"
    default_executable = "mpiexec"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        per = placement.ranks_per_node
        mapping = f"ppr:{per}:node"
        if placement.ranks_per == "gpu":
            mapping += f":PE={placement.cores_per_rank}"
        flags = [
            "-n",
            str(placement.total_ranks),
            "--host",
            ",".join(f"{node}:{per}" for node in placement.nodes),
            "--map-by",
            mapping,
            "--bind-to",
            "none" if placement.ranks_per == "node" else "core",
        ]
        return self._join(flags, options, command)


class MpichLauncher(Launcher):
    """MPICH's Hydra: ``mpiexec -n T -ppn P -hosts h1,h2 -bind-to none|core:D [-gpus-per-proc 1]``.

    ``-bind-to core:D`` binds each rank to ``D`` cores (1 per core, cores / GPUs per GPU). Per GPU,
    ``-gpus-per-proc 1`` makes Hydra give each rank its own GPU (it sets ``CUDA_VISIBLE_DEVICES``); one
    rank per node keeps Hydra's default, which leaves all GPUs visible.
    """

    name = "mpiexec-mpich"
    default_executable = "mpiexec"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        bind = "none" if placement.ranks_per == "node" else f"core:{placement.cores_per_rank}"
        flags = [
            "-n",
            str(placement.total_ranks),
            "-ppn",
            str(placement.ranks_per_node),
            "-hosts",
            ",".join(placement.nodes),
            "-bind-to",
            bind,
        ]
        if placement.ranks_per == "gpu":
            flags += ["-gpus-per-proc", "1"]
        return self._join(flags, options, command)


class PalsLauncher(Launcher):
    """Cray PALS: ``mpiexec -n T --ppn P --depth D --cpu-bind none|core|depth``.

    PALS takes the nodes from the PBS job (``PBS_NODEFILE``), so no node list is given. ``--depth`` is
    the cores per rank; binding is ``none`` for one rank per node, ``core`` per core and ``depth`` (each
    rank on its ``D`` consecutive cores) per GPU. PALS has no portable GPU flag: a GPU rank picks its
    device by its local rank (``PALS_LOCAL_RANKID``).
    """

    name = "mpiexec-pals"
    default_executable = "mpiexec"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        bind = {"node": "none", "core": "core", "gpu": "depth"}[placement.ranks_per]
        flags = [
            "-n",
            str(placement.total_ranks),
            "--ppn",
            str(placement.ranks_per_node),
            "--depth",
            str(placement.cores_per_rank),
            "--cpu-bind",
            bind,
        ]
        return self._join(flags, options, command)
