"""Communicator family: how rank 0 talks to the workload manager (local, later Harvester and PanDA)."""
