"""Data movement against real tools: a local xrootd server, xrdcp and gfal-copy."""
