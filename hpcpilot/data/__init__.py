"""Data API: checksums, copytools, and the stage-in/stage-out clients."""
