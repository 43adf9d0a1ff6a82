"""Running payloads: the runner family (per-range, streaming, plain, sleep), exit codes, merging."""
