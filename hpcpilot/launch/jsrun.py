"""IBM ``jsrun`` (LSF with CSM, e.g. Summit, Sierra, Lassen): ranks in resource sets."""

from __future__ import annotations

from collections.abc import Sequence

from hpcpilot.launch.base import Launcher, Placement


class JsrunLauncher(Launcher):
    """``jsrun -n RS -a 1 -c D -g G -r P -b none|packed:D``: one resource set per rank.

    Each rank gets its own resource set (``-a 1``) of ``D`` cores and ``G`` GPUs, ``P`` sets per host:
    one rank per node gets all the node's cores and GPUs, unbound (``-b none``); per GPU, a set of one GPU
    and cores / GPUs cores; per core, a set of one core. Ranks are bound to their set's cores with
    ``-b packed:D``. jsrun uses the job's nodes (no node list).
    """

    name = "jsrun"
    default_executable = "jsrun"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        depth = placement.cores_per_rank
        flags = [
            "-n",
            str(placement.total_ranks),
            "-a",
            "1",
            "-c",
            str(depth),
            "-g",
            str(placement.gpus_per_rank),
            "-r",
            str(placement.ranks_per_node),
            "-b",
            "none" if placement.ranks_per == "node" else f"packed:{depth}",
        ]
        return self._join(flags, options, command)
