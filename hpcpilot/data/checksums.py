"""Streaming file checksums (adler32, md5) in the forms PanDA uses."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

CHUNK = 1 << 20


def adler32_of_file(path: Path) -> str:
    """Return the adler32 of a file as 8 lower-case hex digits, read in 1 MiB chunks."""
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def md5_of_file(path: Path) -> str:
    """Return the md5 of a file as 32 lower-case hex digits, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
