"""A command to run: argv, complete environment and working directory. Pure data, no I/O.

Environment plugins wrap one `Command` into another (modules change its environment, a container
runtime puts its own argv in front); payload runners start the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Command:
    """A process to start, without a shell.

    Attributes
    ----------
    argv
        The program and its arguments.
    env
        The complete environment of the process.
    cwd
        Its working directory.
    keep
        Names of the variables that are the payload's own (``PANDAID``, ``CUDA_VISIBLE_DEVICES``, ...):
        a container started with a clean environment still passes these in.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    keep: frozenset[str] = frozenset()

    def with_argv(self, argv: tuple[str, ...]) -> Command:
        """The same command with another argv (a wrapper's in front of this one's)."""
        return replace(self, argv=argv)

    def with_env(self, env: Mapping[str, str]) -> Command:
        """The same command with another complete environment."""
        return replace(self, env=dict(env))

    def kept_env(self) -> dict[str, str]:
        """The payload's own variables (those named in `keep`) with their values."""
        return {name: self.env[name] for name in sorted(self.keep) if name in self.env}
