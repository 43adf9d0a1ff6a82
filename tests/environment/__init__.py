"""Real runs of the environment plugins: Lmod, charliecloud, podman, and the pilot in a container."""
