"""hpcpilot: an MPI-aware pilot that runs PanDA workloads on supercomputers.

One rank per node; rank 0 coordinates (talks to the workload manager, keeps the books), ranks >= 1 run
payloads on their node. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
