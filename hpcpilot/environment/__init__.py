"""Environment API: modules and container runtimes that wrap a payload's `Command` into another."""
