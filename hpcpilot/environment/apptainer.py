"""Apptainer and SingularityCE: ``apptainer exec [options] IMAGE payload...``.

The argv, in order::

    apptainer exec [--cleanenv] [--env K=V ...] [-B SRC[:DST[:OPTS]] ...] [--pwd CWD]
                   [--nv | --rocm] [environment.options ...] IMAGE ARGV...

* ``--cleanenv`` when ``environment.cleanenv``: the container starts from Apptainer's minimal
  environment; the payload's own variables (`Command.keep`) are passed in with ``--env K=V``, one flag
  per variable (without ``--cleanenv`` too, because a variable the image sets would otherwise win over
  the host's value). ``--env`` is parsed by Apptainer as ``key=value`` pairs split at commas when the
  value holds another ``=``; a value with ``=`` or ``"`` therefore goes in as ``APPTAINERENV_K``
  (``SINGULARITYENV_K``) in the runtime's own environment, which Apptainer also honours with
  ``--cleanenv``.
* ``-B`` for each bind (the work directory, node scratch, ``environment.binds``); options such as
  ``ro`` are passed on.
* ``--pwd`` the payload's working directory (when it is absolute).
* ``--nv`` (``node.gpu_vendor`` nvidia) or ``--rocm`` (amd) when ``environment.gpu`` is on; Intel GPUs
  need nothing (Apptainer mounts the host's ``/dev``).
* the image: an absolute path (a ``.sif`` file or a sandbox directory; ``prepare`` checks that it
  exists), a URI (``docker://``, ``library://``, ``oras://``, ...) passed on, or a bare registry name
  (``atlas/athena:22.0``), which becomes ``docker://atlas/athena:22.0``.
"""

from __future__ import annotations

from typing import ClassVar

from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.containers import ContainerEnvironment, cwd_of, is_path, is_uri, merge_env
from hpcpilot.model.command import Command


def image_reference(image: str) -> str:
    """The image as Apptainer takes it: paths and URIs unchanged, a bare name as ``docker://NAME``."""
    if is_path(image) or is_uri(image) or image.startswith("instance://"):
        return image
    return f"docker://{image}"


class ApptainerEnvironment(ContainerEnvironment):
    """Run payloads with ``apptainer exec`` (see the module docstring for the argv)."""

    executable = "apptainer"
    #: Prefix of the variables Apptainer copies into the container (``APPTAINERENV_K`` -> ``K``).
    env_prefix: ClassVar[str] = "APPTAINERENV_"

    def gpu_args(self, vendor: str) -> tuple[str, ...]:
        """``--nv`` for NVIDIA, ``--rocm`` for AMD, nothing for Intel (``/dev`` is shared)."""
        return {"nvidia": ("--nv",), "amd": ("--rocm",)}.get(vendor, ())

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``apptainer exec ... IMAGE ARGV`` (pure)."""
        env_args: list[str] = []
        prefixed: dict[str, str] = {}
        for name, value in command.kept_env().items():
            if "=" in value or '"' in value:
                prefixed[self.env_prefix + name] = value
            else:
                env_args += ["--env", f"{name}={value}"]
        bind_args = [arg for bind in self.binds_of(request) for arg in ("-B", bind.spec())]
        cwd = cwd_of(command)
        argv = self.joined(
            [self.program, "exec"],
            ["--cleanenv"] if self.settings.cleanenv else [],
            env_args,
            bind_args,
            ["--pwd", cwd] if cwd else [],
            self.gpu_args(request.gpu_vendor),
            self.extra_options,
            [image_reference(request.image)],
            command.argv,
        )
        wrapped = command.with_argv(argv)
        return wrapped.with_env(merge_env(command.env, prefixed)) if prefixed else wrapped


class SingularityEnvironment(ApptainerEnvironment):
    """The same with ``singularity exec`` (SingularityCE, or Singularity 3.x before Apptainer)."""

    executable = "singularity"
    env_prefix = "SINGULARITYENV_"
