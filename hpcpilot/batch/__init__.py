"""Batch systems (``hpcpilot.batch_systems``): allocation discovery and submit/poll/cancel."""
