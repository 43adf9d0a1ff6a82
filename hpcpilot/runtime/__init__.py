"""The only code that touches the OS directly: atomic files, processes, clock, signals, logging."""
