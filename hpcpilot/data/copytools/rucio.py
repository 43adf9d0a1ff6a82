"""The ``rucio`` copytool: Rucio's command-line client, ``rucio download`` and ``rucio upload``.

A Rucio location is a DID, optionally with the RSE: ``rucio://SCOPE:NAME`` or ``rucio://RSE/SCOPE:NAME``
(``rucio:SCOPE:NAME`` also reads). Rucio resolves the replica and the protocol itself, verifies the
checksum against its catalogue on download and registers the upload.

* stage-in: ``rucio download --dir DIR --no-subdir [--rses RSE] --transfer-timeout S SCOPE:NAME``
  (the file lands as ``DIR/NAME``; it is renamed to the destination's name when that differs);
* stage-out: ``rucio upload --rse RSE --scope SCOPE [--guid GUID] [--lfn NAME] --register-after-upload
  --transfer-timeout S PATH`` (``--lfn`` only when the file's name is not the LFN; the RSE is required).

The flags are those of the current client (``--rses`` for download sources, ``--lfn`` for the upload's
name; Rucio before 1.30 spelled them ``--rse`` and ``--name``). The client needs a Rucio server, so the
argv and the reading of failures are tested on published output of real runs (``tests/data/rucio``).
``RUCIO_LOGGING_FORMAT`` is set (unless the environment sets it) so that the messages carry no colour
codes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from hpcpilot.data.copytools.base import (
    Copytool,
    Failure,
    failure_rules,
    local_path,
    match_failure,
    scheme_of,
)
from hpcpilot.data.transfer import Direction, Transfer
from hpcpilot.model.errors import StagingError
from hpcpilot.model.job import Checksum
from hpcpilot.runtime.commands import CommandResult

RUCIO_DEFAULTS: Mapping[str, str] = {"RUCIO_LOGGING_FORMAT": "%(asctime)s\t%(levelname)s\t%(message)s"}

#: seconds past ``--transfer-timeout`` for the catalogue calls before the command is killed
KILL_GRACE_S = 60.0

_RULES = failure_rules(
    (r"checksum validation failed|checksum mismatch|adler32 mismatch", Failure.CHECKSUM),
    (
        r"cannot authenticate|authentication failed|cannot find a valid x509 proxy|"
        r"could not establish context|token has expired",
        Failure.AUTH,
    ),
    (r"data identifier not found", Failure.MISSING),
    (r"no available source|has only replicas on tape|no replicas|replica not found", Failure.NO_REPLICA),
    (r"did does not exist|no such file or directory", Failure.MISSING),
    (r"none of the requested files have been downloaded|not all files", Failure.NO_REPLICA),
    (r"rse not found|rse does not exist|access denied|permission denied|not allowed", Failure.DENIED),
    (r"no space left|quota", Failure.NO_SPACE),
    (r"timed out|timeout", Failure.TIMEOUT),
    (
        r"service.unavailable|server returned 5\d\d|connection refused|connection reset|"
        r"max retries exceeded|failed to establish a new connection",
        Failure.NETWORK,
    ),
)


def parse_location(location: str) -> tuple[str | None, str, str]:
    """``(rse or None, scope, name)`` of a ``rucio://[RSE/]SCOPE:NAME`` location.

    Raises
    ------
    ValueError
        If the location is not of that form.
    """
    scheme, sep, rest = location.partition(":")
    if not sep or scheme.lower() != "rucio":
        raise ValueError(f"{location!r} is not a rucio:// location")
    rest = rest.lstrip("/")
    rse: str | None = None
    if "/" in rest:
        rse, rest = rest.split("/", 1)
    scope, sep, name = rest.partition(":")
    if not sep or not scope or not name or "/" in name:
        raise ValueError(f"{location!r} is not rucio://[RSE/]SCOPE:NAME")
    return rse or None, scope, name


def classify_output(text: str) -> Failure:
    """The kind of failure the rucio client's log lines in ``text`` describe."""
    return match_failure(_RULES, text) or Failure.OTHER


def key_line(text: str) -> str:
    """What went wrong: the last ``ERROR`` log line with its ``Details:`` (else the last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if "ERROR" in lines[i]:
            detail = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("Details:") else ""
            return f"{lines[i]} {detail}".strip()
    return lines[-1] if lines else ""


class RucioCopytool(Copytool):
    """``rucio download`` / ``rucio upload``: one end a ``rucio://`` DID, the other a local path."""

    schemes: ClassVar[frozenset[str]] = frozenset({"file", "rucio"})
    network: ClassVar[bool] = True
    command: ClassVar[str] = "rucio"

    def handles(self, transfer: Transfer) -> bool:
        """One end a Rucio DID and the other a local path."""
        ends = sorted([scheme_of(transfer.source), scheme_of(transfer.destination)])
        return ends == ["file", "rucio"]

    def argv(self, transfer: Transfer, timeout_s: float) -> list[str]:
        """The rucio command for ``transfer`` (see the module's notes).

        Raises
        ------
        StagingError
            If the rucio location is malformed, or a stage-out names no RSE.
        """
        seconds = str(max(1, math.ceil(timeout_s)))
        if scheme_of(transfer.source) == "rucio":
            rse, scope, name = self._parse(transfer, transfer.source)
            dest = Path(local_path(transfer.destination))
            argv = [self.command, "download", "--dir", str(dest.parent), "--no-subdir"]
            if rse:
                argv += ["--rses", rse]
            return [*argv, "--transfer-timeout", seconds, f"{scope}:{name}"]
        rse, scope, name = self._parse(transfer, transfer.destination)
        if rse is None:
            raise StagingError(
                f"rucio upload needs the RSE: {transfer.destination!r} is not rucio://RSE/SCOPE:NAME "
                f"({transfer.lfn})",
                code=transfer.direction.failed_code,
            )
        path = local_path(transfer.source)
        argv = [self.command, "upload", "--rse", rse, "--scope", scope]
        if transfer.guid:
            argv += ["--guid", transfer.guid]
        if os.path.basename(path) != name:
            argv += ["--lfn", name]
        return [*argv, "--register-after-upload", "--transfer-timeout", seconds, path]

    def environment(self) -> dict[str, str]:
        """The environment rucio runs with: the tool's (or this process's) plus `RUCIO_DEFAULTS`."""
        env = dict(os.environ if self.env is None else self.env)
        for key, value in RUCIO_DEFAULTS.items():
            env.setdefault(key, value)
        return env

    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Download or upload one file; the checksum Rucio registered for an upload."""
        argv = self.argv(transfer, timeout_s)
        result = self.run(argv, timeout_s=timeout_s + KILL_GRACE_S, env=self.environment())
        if not result.ok:
            raise self.classify(transfer, result)
        if transfer.direction is Direction.OUT or scheme_of(transfer.destination) != "file":
            return transfer.checksum
        _, _, name = self._parse(transfer, transfer.source)
        dest = Path(local_path(transfer.destination))
        landed = dest.parent / name
        if landed != dest:
            try:
                os.replace(landed, dest)
            except OSError as exc:
                raise StagingError(
                    f"rucio download succeeded but {landed} cannot be renamed to {dest}: {exc.strerror} "
                    f"({transfer.lfn})",
                    code=transfer.direction.failed_code,
                ) from exc
        return None

    def classify(self, transfer: Transfer, result: CommandResult) -> StagingError:
        """The `StagingError` for a failed rucio run (code 124 from the runner: it was killed)."""
        return self.run_error(transfer, result, classify_output, key_line)

    @staticmethod
    def _parse(transfer: Transfer, location: str) -> tuple[str | None, str, str]:
        try:
            return parse_location(location)
        except ValueError as exc:
            raise StagingError(f"{exc} ({transfer.lfn})", code=transfer.direction.failed_code) from None
