"""The ``xrdcp`` copytool: XRootD's copy command, between a local path and ``root://`` storage.

The argv (`XrdcpCopytool.argv`) and the reading of a failure (`classify`) are pure and tested on output
recorded from xrdcp 5.5 against a real local xrootd (``tests/data/xrdcp``):

``xrdcp --force --nopbar [--cksum ALG:HEX | --cksum adler32:source] [--posc [--rm-bad-cksum]] SRC DST``

* ``--cksum adler32:<hex>`` (or ``md5:<hex>``) when the expected checksum is known: xrdcp compares the
  destination's checksum (the server's for a ``root://`` destination, computed locally for a local one)
  with that value; a mismatch fails with ``[ERROR] CheckSum error`` (exit 53). A stage-out without a
  known checksum uses ``adler32:source``: the local source's adler32 against the server's.
* ``--posc`` (persist on successful close) for a write to storage: a failed upload leaves no file;
  with a checksum, ``--rm-bad-cksum`` also removes an upload whose checksum did not match.
* ``XRD_CONNECTIONRETRY=1`` and ``XRD_CONNECTIONWINDOW=2`` are set unless the environment sets them, so
  an unreachable server fails within seconds instead of retrying for minutes (the staging client does
  the retries, with backoff).

Exit codes (xrdcp(1)): 50 generic, 51 socket, 52 postmaster, 53 XRootD, 54 redirection error; the
classification reads the message, as the codes are too coarse.
"""

from __future__ import annotations

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

XROOTD_SCHEMES = frozenset({"root", "roots", "xroot", "xroots"})

#: XrdCl settings for a quick failure when a server cannot be reached (kept when the environment has them)
XRD_DEFAULTS: Mapping[str, str] = {"XRD_CONNECTIONRETRY": "1", "XRD_CONNECTIONWINDOW": "2"}

_CKSUM_NAMES = {ChecksumAlgorithm.ADLER32: "adler32", ChecksumAlgorithm.MD5: "md5"}

# (pattern, failure), the first match wins; [30xx] are XRootD's kXR_* error numbers
_RULES = failure_rules(
    (r"checksum error|checksum mismatch|\[3019\]", Failure.CHECKSUM),
    (r"auth failed|no protocols left to try|could not establish context|\[3030\]", Failure.AUTH),
    (r"\[3029\]|no replicas", Failure.NO_REPLICA),
    (r"\[3011\]|no such file or directory|not found", Failure.MISSING),
    (r"no space left|\[3009\]|\[3021\]|quota", Failure.NO_SPACE),
    (
        r"permission denied|not authorized|\[3010\]|\[3025\]|read/only|read-only file system",
        Failure.DENIED,
    ),
    (r"operation expired|socket timeout|timed out|timeout", Failure.TIMEOUT),
    (
        r"connection refused|connection error|connection reset|network is unreachable|"
        r"no route to host|socket error|stream error|unable to resolve|\[3024\]",
        Failure.NETWORK,
    ),
)


# what ``--cksum TYPE:source`` prints: "adler32: 8cace363 /path/of/the/source 3000000"
_PRINTED_CHECKSUM = re.compile(r"^(adler32|md5): ([0-9a-fA-F]+) \S.* (\d+)$", re.MULTILINE)


def xrd_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus the `XRD_DEFAULTS` it does not set."""
    env = dict(base)
    for key, value in XRD_DEFAULTS.items():
        env.setdefault(key, value)
    return env


def classify_output(text: str) -> Failure:
    """The kind of failure xrdcp's (or XrdCl's) messages in ``text`` describe."""
    return match_failure(_RULES, text) or Failure.OTHER


def printed_checksum(text: str) -> Checksum | None:
    """The checksum xrdcp printed (``adler32: HEX SOURCE SIZE``) after ``--cksum TYPE:source``, if any."""
    found = _PRINTED_CHECKSUM.search(text)
    if found is None:
        return None
    algorithm = ChecksumAlgorithm.ADLER32 if found.group(1) == "adler32" else ChecksumAlgorithm.MD5
    width = 8 if algorithm is ChecksumAlgorithm.ADLER32 else 32
    return Checksum(algorithm, found.group(2).lower().zfill(width))


def key_line(text: str) -> str:
    """What went wrong: the last ``ERROR``/``FATAL`` line of a tool's output (else its last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"\b(error|fatal)\b", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else ""


class XrdcpCopytool(Copytool):
    """``xrdcp`` between a local path and ``root://`` storage (one end must be remote)."""

    schemes: ClassVar[frozenset[str]] = frozenset({"file"}) | XROOTD_SCHEMES
    network: ClassVar[bool] = True
    command: ClassVar[str] = "xrdcp"

    def handles(self, transfer: Transfer) -> bool:
        """Both ends in its schemes and at least one on XRootD storage (local copies are cp's)."""
        ends = {scheme_of(transfer.source), scheme_of(transfer.destination)}
        return ends <= self.schemes and bool(ends & XROOTD_SCHEMES)

    def argv(self, transfer: Transfer) -> list[str]:
        """The xrdcp command for ``transfer`` (see the module's notes)."""
        writes = scheme_of(transfer.destination) != "file"
        argv = [self.command, "--force", "--nopbar"]
        if transfer.checksum is not None:
            name = _CKSUM_NAMES[transfer.checksum.algorithm]
            argv += ["--cksum", f"{name}:{transfer.checksum.value}"]
        elif writes:
            argv += ["--cksum", "adler32:source"]
        if writes:
            argv.append("--posc")
            if transfer.checksum is not None:
                argv.append("--rm-bad-cksum")
        argv += [_end(transfer.source), _end(transfer.destination)]
        return argv

    def environment(self) -> dict[str, str]:
        """The environment xrdcp runs with: the tool's (or this process's) plus `XRD_DEFAULTS`."""
        return xrd_environment(os.environ if self.env is None else self.env)

    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Run xrdcp; the checksum it verified on the destination (given, or printed by it), if any."""
        result = self.run(self.argv(transfer), timeout_s=timeout_s, env=self.environment())
        if not result.ok:
            raise self.classify(transfer, result, timeout_s)
        return transfer.checksum or printed_checksum(result.stderr)

    def classify(self, transfer: Transfer, result: CommandResult, timeout_s: float = 0.0) -> StagingError:
        """The `StagingError` for a failed xrdcp run (code 124 from the runner: it timed out)."""
        return self.run_error(transfer, result, classify_output, key_line, timeout_s)


def _end(location: str) -> str:
    """A transfer end as xrdcp takes it: a URL as it is, a ``file://`` URL as its path."""
    return local_path(location) if scheme_of(location) == "file" else location
