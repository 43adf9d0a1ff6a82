"""Launchers (``hpcpilot.launchers``): argv builders that start one rank per node, GPU or core.

Each plugin turns a `hpcpilot.launch.base.Placement` and a command into the argv of its tool (``srun``,
``mpiexec`` of Open MPI, MPICH/Hydra or Cray PALS, ``aprun``, ``jsrun``, ``flux run``). They are pure
functions of their inputs: no I/O, no environment, never shell text.
"""
