"""Flux's ``flux run`` (inside a Flux instance, e.g. El Capitan, Tuolumne, or ``flux alloc``)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcpilot.launch.base import Launcher, Placement


class FluxLauncher(Launcher):
    """``flux run -N N -n T --cores-per-task=D [--gpus-per-task=G] -o cpu-affinity=... [-o gpu-affinity=]``.

    One rank per node gets all the node's cores and GPUs with CPU affinity off (``-o cpu-affinity=off``;
    the shell's default GPU affinity leaves all the task's GPUs visible). Per core and per GPU, each task
    is bound to its own cores (``-o cpu-affinity=per-task``); per GPU each also sees only its own GPU
    (``--gpus-per-task=1 -o gpu-affinity=per-task``). Flux places the tasks on the instance's nodes (no
    node list).
    """

    name = "flux"
    default_executable = "flux"

    def argv(self, placement: Placement, command: Sequence[str], options: Sequence[str] = ()) -> list[str]:
        """See `Launcher.argv`."""
        flags = [
            "run",
            "-N",
            str(len(placement.nodes)),
            "-n",
            str(placement.total_ranks),
            f"--cores-per-task={placement.cores_per_rank}",
        ]
        if placement.gpus_per_rank:
            flags.append(f"--gpus-per-task={placement.gpus_per_rank}")
        if placement.ranks_per == "node":
            flags += ["-o", "cpu-affinity=off"]
        else:
            flags += ["-o", "cpu-affinity=per-task"]
        if placement.ranks_per == "gpu":
            flags += ["-o", "gpu-affinity=per-task"]
        return self._join(flags, options, command)
