"""The only code that imports mpi4py: messages, transports, the coordinator and worker loops."""
