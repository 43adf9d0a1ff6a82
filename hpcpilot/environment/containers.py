"""What the container runtimes share: bind specs, the image's kind, which variables go in, GPUs.

Pure helpers (no I/O) used by the ``apptainer``, ``charliecloud``, ``shifter`` and ``podman`` plugins,
plus `ContainerEnvironment`, their common base with the checks every runtime does once per node in
``prepare`` (the runtime is installed, the image exists).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hpcpilot.environment.base import Environment, EnvironmentRequest
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError

#: ``PATH`` of a clean container environment (the one Apptainer and Podman use).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Variables that describe the host, not the payload: never copied into a container (unless the payload
#: keeps them), so the image's own values apply. Apptainer treats ``PATH`` and ``LD_LIBRARY_PATH`` the
#: same way.
HOST_ONLY = frozenset(
    {"PATH", "LD_LIBRARY_PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "TERM"}
)

#: URI schemes of images a runtime fetches or opens itself (never a local file to check).
IMAGE_SCHEMES = ("docker://", "docker-daemon:", "library://", "oras://", "shub://", "http://", "https://")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Bind:
    """One bind mount: a host directory (or file) seen at ``target`` in the container.

    Attributes
    ----------
    source
        The host path (absolute).
    target
        The path in the container (absolute; the source's path when the spec names none).
    options
        Mount options as the spec gives them (``ro``, ``rw``, ...; "" for none).
    """

    source: str
    target: str
    options: str = ""

    def spec(self, *, with_options: bool = True) -> str:
        """``SRC:DST[:OPTS]`` (``SRC`` alone when source and target are the same and no options)."""
        if with_options and self.options:
            return f"{self.source}:{self.target}:{self.options}"
        if self.source == self.target:
            return self.source
        return f"{self.source}:{self.target}"

    def full_spec(self, *, with_options: bool = True) -> str:
        """``SRC:DST[:OPTS]`` with the target always written out."""
        base = f"{self.source}:{self.target}"
        return f"{base}:{self.options}" if with_options and self.options else base


def parse_bind(spec: str) -> Bind:
    """Parse one bind spec ``SRC[:DST[:OPTS]]``.

    Raises
    ------
    EnvironmentSetupError
        If the spec is empty, has more than three parts, or a path is not absolute.
    """
    parts = spec.strip().split(":")
    if len(parts) > 3 or not parts[0]:
        raise EnvironmentSetupError(
            f"bind {spec!r} is not SRC[:DST[:OPTS]]", context={"field": "environment.binds"}
        )
    source = os.path.normpath(parts[0]) if parts[0] != "/" else "/"
    target = parts[1] if len(parts) > 1 and parts[1] else source
    options = parts[2] if len(parts) > 2 else ""
    for path in (source, target):
        if not path.startswith("/"):
            raise EnvironmentSetupError(
                f"bind {spec!r}: {path!r} is not an absolute path", context={"field": "environment.binds"}
            )
    return Bind(source, target if target == "/" else os.path.normpath(target), options)


def parse_binds(specs: Iterable[str]) -> tuple[Bind, ...]:
    """Parse bind specs in order; a target bound twice keeps its first spec."""
    binds: dict[str, Bind] = {}
    for spec in specs:
        if spec.strip():
            bind = parse_bind(spec)
            binds.setdefault(bind.target, bind)
    return tuple(binds.values())


def is_uri(image: str) -> bool:
    """Whether the image is a reference the runtime resolves itself (``docker://...``)."""
    return "://" in image or image.startswith(IMAGE_SCHEMES)


def is_path(image: str) -> bool:
    """Whether the image is a file or directory on this host (an absolute path)."""
    return image.startswith("/")


def valid_name(name: str) -> bool:
    """Whether ``name`` is a portable environment variable name."""
    return _NAME.fullmatch(name) is not None


def passed_names(command: Command, *, cleanenv: bool) -> tuple[str, ...]:
    """The variables of ``command`` a container must be given, sorted.

    With a clean environment, the payload's own (`Command.keep`, those that are set); without, every
    variable except the host's own (`HOST_ONLY`), and the kept ones in any case. Names that are not
    portable (`valid_name`: exported shell functions, ...) never go in.
    """
    kept = {name for name in command.keep if name in command.env and valid_name(name)}
    if cleanenv:
        return tuple(sorted(kept))
    return tuple(sorted(kept | {n for n in command.env if n not in HOST_ONLY and valid_name(n)}))


def cwd_of(command: Command) -> str:
    """The command's working directory when it is absolute, else "" (the runtime's default)."""
    return command.cwd if command.cwd.startswith("/") else ""


def merge_env(env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``env`` with ``extra`` on top (a new dict)."""
    merged = dict(env)
    merged.update(extra)
    return merged


class ContainerEnvironment(Environment):
    """Common base of the container runtimes: checks in ``prepare``, helpers for ``wrap``.

    ``prepare`` (once per node and request) checks that the runtime's executable is on the ``PATH`` of
    the payloads' environment, that an image is named, and, through `check_image_here`, that a local
    image exists.
    """

    needs_image = True

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Check the image name, the runtime's executable and a local image.

        Raises
        ------
        EnvironmentSetupError
            If no image is named, the runtime is not installed, a local image is missing, or a bind spec
            is malformed (code 1110; the message names what is missing).
        """
        super().prepare(request, base_env)
        parse_binds(request.binds)
        self.check_program(base_env)
        self.check_image_here(request.image)

    def check_program(self, base_env: Mapping[str, str]) -> None:
        """Raise if the runtime's executable is not found on ``PATH`` of ``base_env``."""
        program = self.program
        found = shutil.which(program, path=base_env.get("PATH", os.defpath))
        if found is None:
            raise EnvironmentSetupError(
                f"the container runtime {program!r} is not installed (not found on PATH)",
                context={"field": "environment.executable", "runtime": type(self).__name__},
            )

    def check_image_here(self, image: str) -> None:
        """Raise if ``image`` is a local path that does not exist (a URI or name is not checked)."""
        if is_path(image) and not os.path.exists(image):
            raise EnvironmentSetupError(f"container image {image!r} does not exist", context={"image": image})

    def gpu_args(self, vendor: str) -> tuple[str, ...]:
        """The runtime's options that give the container the node's GPUs of ``vendor``."""
        return ()

    @staticmethod
    def binds_of(request: EnvironmentRequest) -> tuple[Bind, ...]:
        """The request's binds, parsed."""
        return parse_binds(request.binds)

    @staticmethod
    def joined(*parts: Sequence[str]) -> tuple[str, ...]:
        """The parts as one argv tuple."""
        return tuple(arg for part in parts for arg in part)
