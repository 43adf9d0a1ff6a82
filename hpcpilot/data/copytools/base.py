"""The copytool family: one plugin moves one file from a source to a destination.

A copytool says which URL schemes it handles (``file`` for a local path), whether it needs the
network, and moves one `Transfer`. Tools that run a command (``xrdcp``, ``gfal-copy``, ``rucio``) build
its argv with a pure method and run it through the injected runner, so their argv and error parsing
are tested on recorded output. Plugins register under the ``hpcpilot.copytools`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import urlsplit

from hpcpilot.data.transfer import Transfer
from hpcpilot.model.job import Checksum
from hpcpilot.runtime.commands import CommandResult, run_command


def scheme_of(location: str) -> str:
    """The URL scheme of a location: ``root``, ``davs``, ``rucio`` ..., or ``file`` for a path."""
    scheme = urlsplit(location).scheme
    return scheme.lower() if len(scheme) > 1 else "file"


class Copytool(ABC):
    """Base class of copytools.

    Parameters
    ----------
    run
        Runs an argv with a timeout and an environment (`hpcpilot.runtime.commands.run_command`),
        injected for tests.
    env
        The environment of the commands it runs (default: the pilot's).
    """

    #: URL schemes this tool can read from or write to (``file``: a local path).
    schemes: ClassVar[frozenset[str]] = frozenset({"file"})
    #: Whether the tool needs the outside network (workers never use such tools).
    network: ClassVar[bool] = False

    def __init__(
        self,
        run: Callable[..., CommandResult] = run_command,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.run = run
        self.env = env

    def handles(self, transfer: Transfer) -> bool:
        """Whether this tool can move ``transfer`` (both ends in its schemes)."""
        return scheme_of(transfer.source) in self.schemes and scheme_of(transfer.destination) in self.schemes

    @abstractmethod
    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Move one file.

        Returns
        -------
        Checksum or None
            The checksum the tool confirmed on the destination (a tool that verifies end to end, as
            ``xrdcp --cksum``), or None when the client must compute it itself (a local destination).

        Raises
        ------
        StagingError
            With the code of what went wrong (``transfer.direction`` gives 1099/1137, 1151/1152,
            1171/1172; a missing source 1103 / replica 1100), ``retryable`` when another attempt may
            help, and the command and its stderr tail in the context.
        """
