"""Data API: checksums now; stage-in/out clients and copytools come with the Data API issue."""
