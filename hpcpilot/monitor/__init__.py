"""The monitor family: resource sampling and checks on every worker; aggregation and time series on rank 0."""
