"""Shifter (NERSC): ``shifter --image=TYPE:NAME [options] -- payload...``.

The argv, in order::

    shifter --image=docker:NAME [--volume=SRC:DST[:FLAGS] ...] [--workdir=CWD] [--module=gpu[,...]]
            [environment.options ...] -- ARGV...

* ``--image``: Shifter wants ``TYPE:NAME`` as its image gateway knows it. ``docker://NAME`` becomes
  ``docker:NAME``; a name that starts with a Shifter image type (``docker:``, ``id:``, ``local:``) is
  passed on; any other name gets ``docker:`` in front. A local path is refused in ``prepare``: Shifter
  runs images from its gateway, not files.
* ``--volume=SRC:DST[:FLAGS]`` for each bind (flags such as ``ro`` or ``perNodeCache=size=...`` are
  passed on). Shifter needs the target to exist in the image and refuses targets under ``/dev``,
  ``/etc``, ``/opt/udiImage``, ``/proc`` and ``/var``.
* ``--workdir`` the payload's working directory (when it is absolute).
* ``--module=gpu`` for NVIDIA GPUs (the name NERSC's sites give their GPU module). Shifter keeps only
  the last ``--module`` option, so a ``--module=...`` in ``environment.options`` is merged into one
  (``--module=gpu,mpich``). AMD and Intel GPUs have no standard module: put the site's in
  ``environment.options``.
* Environment: Shifter copies the whole environment of its caller into the container (the image's
  ``ENV`` wins) and has no option for a clean one; with ``environment.cleanenv`` the wrapped command's
  own environment is therefore cut down to the payload's variables (`Command.keep`) plus what
  Shifter and a shell need (`SHIFTER_KEEP`, the ``SHIFTER*`` and ``SLURM_SPANK_SHIFTER*`` variables).
"""

from __future__ import annotations

from collections.abc import Mapping

from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.containers import ContainerEnvironment, cwd_of, is_path
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError

#: Image types a Shifter image name may start with.
IMAGE_TYPES = ("docker:", "id:", "local:")
#: Variables of the caller that a clean Shifter environment still keeps (Shifter's own lookups and a
#: usable shell; the image's ``ENV`` replaces ``PATH`` in the container).
SHIFTER_KEEP = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TERM"})


def image_descriptor(image: str) -> str:
    """``TYPE:NAME`` for Shifter's ``--image``."""
    if image.startswith("docker://"):
        return "docker:" + image.removeprefix("docker://")
    if image.startswith(IMAGE_TYPES):
        return image
    return f"docker:{image}"


def _shifter_env(name: str) -> bool:
    return name in SHIFTER_KEEP or name.startswith(("SHIFTER", "SLURM_SPANK_SHIFTER"))


class ShifterEnvironment(ContainerEnvironment):
    """Run payloads with ``shifter`` (see the module docstring for the argv)."""

    executable = "shifter"

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Check the runtime, and that the image is a gateway name, not a path.

        Raises
        ------
        EnvironmentSetupError
            A local path as image, or no ``shifter`` (code 1110).
        """
        if is_path(request.image):
            raise EnvironmentSetupError(
                f"shifter runs images of its image gateway (docker:NAME), not the path {request.image!r}",
                context={"image": request.image},
            )
        super().prepare(request, base_env)

    def gpu_args(self, vendor: str) -> tuple[str, ...]:
        """``--module=gpu`` for NVIDIA; nothing standard for AMD and Intel."""
        return ("--module=gpu",) if vendor == "nvidia" else ()

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``shifter --image=... -- ARGV`` (pure)."""
        modules = [m for m in self.gpu_args(request.gpu_vendor)]
        extra: list[str] = []
        for option in self.extra_options:
            if option.startswith("--module="):
                modules.append(option)
            else:
                extra.append(option)
        module_names = [name for m in modules for name in m.removeprefix("--module=").split(",") if name]
        cwd = cwd_of(command)
        argv = self.joined(
            [self.program, f"--image={image_descriptor(request.image)}"],
            [f"--volume={bind.full_spec()}" for bind in self.binds_of(request)],
            [f"--workdir={cwd}"] if cwd else [],
            [f"--module={','.join(dict.fromkeys(module_names))}"] if module_names else [],
            extra,
            ["--"],
            command.argv,
        )
        wrapped = command.with_argv(argv)
        if not self.settings.cleanenv:
            return wrapped
        env = {k: v for k, v in command.env.items() if k in command.keep or _shifter_env(k)}
        return wrapped.with_env(env)
