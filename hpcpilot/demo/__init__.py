"""The demo payload (a small Monte-Carlo simulation writing HDF5) and the demo job."""
