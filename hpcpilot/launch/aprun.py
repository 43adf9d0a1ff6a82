"""Cray ALPS ``aprun`` (Cray XC/XK systems under PBS or Slurm-less ALPS)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcpilot.launch.base import Launcher, Placement


class AprunLauncher(Launcher):
    """``aprun -n T -N P -d D -cc none|cpu|depth``.

    ALPS places the ranks on the batch job's nodes itself (no node list). ``-d`` is the cores per rank;
    ``-cc none`` leaves one rank per node unbound, ``-cc cpu`` binds a per-core rank to its core and
    ``-cc depth`` a per-GPU rank to its ``D`` cores. ``aprun`` has no GPU flag (those nodes had one GPU).
    """

    name = "aprun"
    default_executable = "aprun"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        bind = {"node": "none", "core": "cpu", "gpu": "depth"}[placement.ranks_per]
        flags = [
            "-n",
            str(placement.total_ranks),
            "-N",
            str(placement.ranks_per_node),
            "-d",
            str(placement.cores_per_rank),
            "-cc",
            bind,
        ]
        return self._join(flags, options, command)
