"""Podman and podman-hpc: ``podman run --rm [options] IMAGE payload...``.

The argv, in order::

    podman run --rm -i --init --network=host --log-driver=none
               [-v SRC:DST[:OPTS] ...] [-w CWD] [--env NAME ...] [GPU devices]
               [environment.options ...] (IMAGE | --rootfs DIR) ARGV...

* ``--rm``: the container is removed when the payload ends.
* ``-i``: the payload's stdin is passed through (a streaming event-service payload reads its ranges
  there; without ``-i`` Podman gives the container no stdin).
* ``--init``: a small init (catatonit) is PID 1 and forwards signals. Without it the payload is PID 1
  of its namespace, which ignores ``SIGTERM``, and a pilot that stops a payload leaves the container
  running (seen with podman 4.3 here: ``kill -TERM`` on the client ends it only with ``--init``).
* ``--network=host``: payloads share the node's network, as under Apptainer, Charliecloud and Shifter
  (MPI and local services work, nothing is set up per payload; a compute node may have no bridge
  networking or iptables at all).
* ``--log-driver=none``: the payload's output reaches the pilot through the attached streams only and
  is not copied into Podman's container storage as well.
* ``-v SRC:DST[:OPTS]`` for each bind; ``-w`` the working directory (when absolute).
* ``--env NAME`` for each variable that goes in: with ``environment.cleanenv`` the payload's own
  (`Command.keep`), without it every variable of the command except the host's own
  (`~hpcpilot.environment.containers.HOST_ONLY`). A name without ``=VALUE`` makes Podman copy the value
  from its own environment (the wrapped command's), so values never appear on the command line and
  need no quoting (verified with podman 4.3).
* GPUs: NVIDIA ``--device nvidia.com/gpu=all`` (CDI, needs the NVIDIA container toolkit's CDI spec),
  AMD ``--device /dev/kfd --device /dev/dri``, Intel ``--device /dev/dri``.
* ``environment.options`` before the image: on this kind of machine ``--runtime /usr/sbin/runc
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024``; rootless sites add ``--userns=keep-id``.
* the image: a name or reference (``localhost/atlas:1``, ``docker://...``); an absolute path is an
  unpacked directory image run with ``--rootfs DIR`` (Podman then writes to that directory).

``podman-hpc`` (NERSC) is the same with ``podman-hpc run`` and its ``--gpu`` for NVIDIA GPUs.
"""

from __future__ import annotations

from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.containers import ContainerEnvironment, cwd_of, is_path, passed_names
from hpcpilot.model.command import Command

#: Options of every ``podman run`` (see the module docstring for why).
RUN_OPTIONS = ("--rm", "-i", "--init", "--network=host", "--log-driver=none")


class PodmanEnvironment(ContainerEnvironment):
    """Run payloads with ``podman run`` (see the module docstring for the argv)."""

    executable = "podman"

    def gpu_args(self, vendor: str) -> tuple[str, ...]:
        """CDI device for NVIDIA, the ROCm device nodes for AMD, ``/dev/dri`` for Intel."""
        return {
            "nvidia": ("--device", "nvidia.com/gpu=all"),
            "amd": ("--device", "/dev/kfd", "--device", "/dev/dri"),
            "intel": ("--device", "/dev/dri"),
        }.get(vendor, ())

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``podman run ... IMAGE ARGV`` (pure)."""
        cwd = cwd_of(command)
        image = ["--rootfs", request.image] if is_path(request.image) else [request.image]
        argv = self.joined(
            [self.program, "run", *RUN_OPTIONS],
            [arg for bind in self.binds_of(request) for arg in ("-v", bind.full_spec())],
            ["-w", cwd] if cwd else [],
            [
                arg
                for name in passed_names(command, cleanenv=self.settings.cleanenv)
                for arg in ("--env", name)
            ],
            self.gpu_args(request.gpu_vendor),
            self.extra_options,
            image,
            command.argv,
        )
        return command.with_argv(argv)


class PodmanHpcEnvironment(PodmanEnvironment):
    """Run payloads with ``podman-hpc run`` (NERSC); ``--gpu`` for NVIDIA GPUs."""

    executable = "podman-hpc"

    def gpu_args(self, vendor: str) -> tuple[str, ...]:
        """``--gpu`` for NVIDIA (podman-hpc's own), the device nodes for AMD and Intel."""
        return ("--gpu",) if vendor == "nvidia" else super().gpu_args(vendor)
