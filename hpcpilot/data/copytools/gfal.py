"""The ``gfal`` copytool: ``gfal-copy`` (gfal2-util) between local files and grid storage.

gfal2 speaks many protocols through plugins (``root://`` through its xrootd plugin, ``davs://`` and
``https://`` through its http plugin, ``gsiftp://``, ``srm://``). The argv (`GfalCopytool.argv`) and the
reading of a failure (`classify`) are pure and tested on output recorded from gfal2-util 1.8 / gfal2
2.21 against a real local xrootd (``tests/data/gfal``):

``gfal-copy -f -p -K adler32[:HEX] -t SECONDS SRC DST``

* ``-f`` replaces an existing destination, ``-p`` creates its parent directories;
* ``-K adler32:<hex>`` when the expected adler32 is known (gfal compares source and destination with it;
  a mismatch fails with errno 84 or 5 and ``CHECKSUM MISMATCH``/``CheckSum error``), else ``-K adler32``
  (source against destination);
* ``-t`` gfal's own time limit, the per-file timeout (the command is killed a few seconds later);
* local paths become ``file://`` URLs.

gfal-copy reports ``gfal-copy error: ERRNO (strerror) - message`` and exits with the errno (mod 256):
the message is read first (gfal passes XRootD's own text through), then the errno.
The scripts need a Python with the gfal2 bindings: ``GFAL_PYTHONBIN=/usr/bin/python3`` is set unless the
environment sets it (otherwise a virtualenv's python, first on PATH, is taken). XrdCl's quick-failure
settings are set as for xrdcp.
"""

from __future__ import annotations

import errno
import math
import os
import re
from collections.abc import Mapping
from typing import ClassVar

from hpcpilot.data.copytools.base import (
    Copytool,
    Failure,
    failure_rules,
    local_path,
    match_failure,
    scheme_of,
)
from hpcpilot.data.transfer import Transfer
from hpcpilot.model.errors import StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm
from hpcpilot.runtime.commands import CommandResult

REMOTE_SCHEMES = frozenset({"root", "roots", "xroot", "xroots", "davs", "https", "http", "gsiftp", "srm"})

#: set unless the environment sets them
GFAL_DEFAULTS: Mapping[str, str] = {
    "GFAL_PYTHONBIN": "/usr/bin/python3",
    "XRD_CONNECTIONRETRY": "1",
    "XRD_CONNECTIONWINDOW": "2",
}

#: seconds the command may run past gfal's own ``-t`` before it is killed
KILL_GRACE_S = 10.0

_ERROR_LINE = re.compile(r"gfal-copy error:\s*(\d+)\s*\(([^)]*)\)\s*-\s*(.*)")

_TEXT_RULES = failure_rules(
    (r"checksum mismatch|checksum error|\[3019\]", Failure.CHECKSUM),
    (r"auth failed|no protocols left to try|could not establish context|\[3030\]", Failure.AUTH),
    (r"\[3029\]|no replicas", Failure.NO_REPLICA),
    (r"\[3011\]|no such file or directory", Failure.MISSING),
    (r"no space left|\[3009\]|\[3021\]|quota", Failure.NO_SPACE),
    (
        r"permission denied|not authorized|\[3010\]|\[3005\].*read/only|read-only file system",
        Failure.DENIED,
    ),
    (r"operation expired|timed out|timeout", Failure.TIMEOUT),
    (r"connection refused|connection reset|network is unreachable|no route to host", Failure.NETWORK),
)

_ERRNO_RULES: Mapping[int, Failure] = {
    errno.ENOENT: Failure.MISSING,
    errno.EACCES: Failure.DENIED,
    errno.EPERM: Failure.DENIED,
    errno.EROFS: Failure.DENIED,
    errno.ENOSPC: Failure.NO_SPACE,
    errno.EDQUOT: Failure.NO_SPACE,
    errno.ETIMEDOUT: Failure.TIMEOUT,
    errno.ETIME: Failure.TIMEOUT,
    errno.ECONNREFUSED: Failure.NETWORK,
    errno.ECONNRESET: Failure.NETWORK,
    errno.ECONNABORTED: Failure.NETWORK,
    errno.EHOSTUNREACH: Failure.NETWORK,
    errno.ENETUNREACH: Failure.NETWORK,
    errno.EAGAIN: Failure.NETWORK,
}


def gfal_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus the `GFAL_DEFAULTS` it does not set."""
    env = dict(base)
    for key, value in GFAL_DEFAULTS.items():
        env.setdefault(key, value)
    return env


def parse_error(text: str) -> tuple[int | None, str]:
    """The errno and message of gfal-copy's ``gfal-copy error: N (...) - message`` line, if any."""
    found = _ERROR_LINE.search(text)
    if found is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return None, lines[-1] if lines else ""
    return int(found.group(1)), found.group(3).strip()


def classify_output(text: str) -> Failure:
    """The kind of failure gfal-copy's output describes: its message first, then its errno."""
    number, _ = parse_error(text)
    matched = match_failure(_TEXT_RULES, text)
    if matched is not None:
        return matched
    if number is not None:
        return _ERRNO_RULES.get(number, Failure.OTHER)
    return Failure.OTHER


class GfalCopytool(Copytool):
    """``gfal-copy`` between a local file and grid storage (one end must be remote)."""

    schemes: ClassVar[frozenset[str]] = frozenset({"file"}) | REMOTE_SCHEMES
    network: ClassVar[bool] = True
    command: ClassVar[str] = "gfal-copy"

    def handles(self, transfer: Transfer) -> bool:
        """Both ends in its schemes and at least one remote (local copies are cp's)."""
        ends = {scheme_of(transfer.source), scheme_of(transfer.destination)}
        return ends <= self.schemes and bool(ends & REMOTE_SCHEMES)

    def argv(self, transfer: Transfer, timeout_s: float) -> list[str]:
        """The gfal-copy command for ``transfer`` (see the module's notes)."""
        checksum = "adler32"
        if transfer.checksum is not None and transfer.checksum.algorithm is ChecksumAlgorithm.ADLER32:
            checksum = f"adler32:{transfer.checksum.value}"
        seconds = max(1, math.ceil(timeout_s))
        return [
            self.command,
            "-f",
            "-p",
            "-K",
            checksum,
            "-t",
            str(seconds),
            _url(transfer.source),
            _url(transfer.destination),
        ]

    def environment(self) -> dict[str, str]:
        """The environment gfal-copy runs with: the tool's (or this process's) plus `GFAL_DEFAULTS`."""
        return gfal_environment(os.environ if self.env is None else self.env)

    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Run gfal-copy; the adler32 it verified on both ends, if it was given one."""
        argv = self.argv(transfer, timeout_s)
        result = self.run(argv, timeout_s=timeout_s + KILL_GRACE_S, env=self.environment())
        if not result.ok:
            raise self.classify(transfer, result)
        checksum = transfer.checksum
        return checksum if checksum is not None and checksum.algorithm is ChecksumAlgorithm.ADLER32 else None

    def classify(self, transfer: Transfer, result: CommandResult) -> StagingError:
        """The `StagingError` for a failed gfal-copy run (code 124 from the runner: it was killed)."""
        return self.run_error(transfer, result, classify_output, lambda text: parse_error(text)[1])


def _url(location: str) -> str:
    """A transfer end as gfal takes it: a URL as it is, a local path as an absolute ``file://`` URL."""
    if scheme_of(location) != "file":
        return location
    return "file://" + os.path.abspath(local_path(location))
