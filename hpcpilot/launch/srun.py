"""Slurm's ``srun``: a job step over the allocation's nodes."""

from __future__ import annotations

from collections.abc import Sequence

from hpcpilot.launch.base import Launcher, Placement


class SrunLauncher(Launcher):
    """``srun --nodes=N --ntasks=T --ntasks-per-node=P --cpus-per-task=D --cpu-bind=... [GPU flags]``.

    The step runs inside the job's allocation, so no node list is given. ``--cpus-per-task`` is always
    set because since Slurm 22.05 a step no longer inherits it from ``sbatch``. Binding: ``none`` for one
    rank per node (it runs payloads on all the node's cores), ``cores`` otherwise. GPUs: one rank per node
    gets all the node's GPUs (``--gpus-per-task=G``); one rank per GPU gets one each, the one closest to
    its cores (``--gpus-per-task=1 --gpu-bind=closest``).
    """

    name = "srun"
    default_executable = "srun"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        flags = [
            f"--nodes={len(placement.nodes)}",
            f"--ntasks={placement.total_ranks}",
            f"--ntasks-per-node={placement.ranks_per_node}",
            f"--cpus-per-task={placement.cores_per_rank}",
            "--cpu-bind=none" if placement.ranks_per == "node" else "--cpu-bind=cores",
        ]
        if placement.gpus_per_rank:
            flags.append(f"--gpus-per-task={placement.gpus_per_rank}")
        if placement.ranks_per == "gpu":
            flags.append("--gpu-bind=closest")
        return self._join(flags, options, command)
