"""Charliecloud: ``ch-run [options] IMAGE -- payload...`` (checked against ``ch-run`` 0.31).

The argv, in order::

    ch-run [-b SRC:DST ...] [-c CWD] [--unset-env=GLOB --set-env=PATH=...] [environment.options ...]
           IMAGE -- ARGV...

* ``-b SRC:DST`` for each bind. ``ch-run`` mounts binds read-write and takes no options, so a bind
  with options other than ``rw`` is refused in ``prepare``; the target must exist in the image
  (``prepare`` checks it for a directory image).
* ``-c`` the payload's working directory (when it is absolute).
* With ``environment.cleanenv``: ``--unset-env='!(K1|K2|...)'`` removes every variable except the
  payload's own (`Command.keep`), so their values reach the payload exactly as they are, without
  passing through ``ch-run``'s ``$`` expansion and quote stripping of ``--set-env`` (or
  ``--unset-env='*'`` when there are none); then ``--set-env=PATH=/usr/local/sbin:...:/bin`` unless
  ``PATH`` is kept. Both behaviours were verified with the real ``ch-run`` 0.31 (the extended-glob
  form is documented in ch-run(1), "Removing variables with --unset-env", example 4). Without
  ``cleanenv`` ``ch-run`` passes the whole environment through.
* GPUs: ``ch-run`` shares the host's ``/dev``; the driver libraries must be in the image
  (``ch-fromhost --nvidia``), so there is no GPU flag.
* the image: a directory (or SquashFS file) path, or an image name in ``ch-image`` storage; ``ch-run``
  cannot pull, so ``docker://`` names are refused in ``prepare``.

``ch-run`` refuses to start without ``$USER``: when the payloads' environment has none, ``prepare``
finds the user name and ``wrap`` sets it for ``ch-run``.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping

from hpcpilot.config.schema import EnvironmentSettings
from hpcpilot.environment.base import EnvironmentRequest
from hpcpilot.environment.containers import (
    DEFAULT_PATH,
    ContainerEnvironment,
    cwd_of,
    is_path,
    is_uri,
    merge_env,
)
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError
from hpcpilot.runtime.commands import EnvCommandRunner, run_command

#: Characters that are special in an ``fnmatch`` extended glob and are escaped in a variable name.
_GLOB_SPECIAL = frozenset("*?[]|()!@+\\")


def keep_only_glob(names: tuple[str, ...]) -> str:
    """The ``--unset-env`` glob that removes every variable except ``names`` (``*`` for none)."""
    if not names:
        return "*"
    escaped = ("".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in name) for name in names)
    return f"!({'|'.join(escaped)})"


class CharliecloudEnvironment(ContainerEnvironment):
    """Run payloads with ``ch-run`` (see the module docstring for the argv)."""

    executable = "ch-run"

    def __init__(self, settings: EnvironmentSettings, runner: EnvCommandRunner = run_command) -> None:
        super().__init__(settings, runner)
        self._user = ""

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Check the runtime, the image, the binds (no options, targets in the image) and ``$USER``.

        Raises
        ------
        EnvironmentSetupError
            A ``docker://`` image, a missing image directory, a bind with options or whose target is
            missing in a directory image, or no ``ch-run`` (code 1110).
        """
        if request.image and is_uri(request.image):
            raise EnvironmentSetupError(
                f"charliecloud cannot pull {request.image!r}: convert it to a directory image "
                "(ch-image pull + ch-convert) and name its path",
                context={"image": request.image},
            )
        super().prepare(request, base_env)
        binds = self.binds_of(request)
        for bind in binds:
            if bind.options not in ("", "rw"):
                raise EnvironmentSetupError(
                    f"charliecloud bind {bind.full_spec()!r}: ch-run -b takes no mount options "
                    f"({bind.options!r}); its binds are read-write",
                    context={"field": "environment.binds"},
                )
        if is_path(request.image) and os.path.isdir(request.image):
            missing = [b.target for b in binds if not os.path.isdir(request.image + b.target)]
            if missing:
                raise EnvironmentSetupError(
                    f"charliecloud image {request.image!r} has no directory for the bind target(s) "
                    f"{', '.join(missing)} (ch-run needs them to exist in the image)",
                    context={"image": request.image},
                )
        if not base_env.get("USER"):
            try:
                self._user = getpass.getuser()
            except (KeyError, OSError) as exc:
                raise EnvironmentSetupError(f"ch-run needs $USER, and this user has no name: {exc}") from exc

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``ch-run ... IMAGE -- ARGV`` (pure)."""
        bind_args = [
            arg for bind in self.binds_of(request) for arg in ("-b", bind.full_spec(with_options=False))
        ]
        cwd = cwd_of(command)
        env_args: list[str] = []
        if self.settings.cleanenv:
            kept = tuple(sorted(name for name in command.keep if name in command.env))
            env_args.append(f"--unset-env={keep_only_glob(kept)}")
            if "PATH" not in kept:
                env_args.append(f"--set-env=PATH={DEFAULT_PATH}")
        argv = self.joined(
            [self.program],
            bind_args,
            ["-c", cwd] if cwd else [],
            env_args,
            self.extra_options,
            [request.image, "--"],
            command.argv,
        )
        wrapped = command.with_argv(argv)
        if self._user and not command.env.get("USER"):
            return wrapped.with_env(merge_env(command.env, {"USER": self._user}))
        return wrapped
