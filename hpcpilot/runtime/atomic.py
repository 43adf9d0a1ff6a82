"""Atomic file writes: a reader sees the old content or the new one, never a torn file."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; what is written there replaces ``path`` atomically.

    When the block ends without an error, the temporary file (closed by then) is fsynced and renamed
    over ``path``, and the directory is fsynced so the rename survives a crash. On an error the
    temporary file is removed and ``path`` is left as it was. With ``durable`` False nothing is
    fsynced: readers still never see a torn file, but a crash may lose it (copies that are verified
    afterwards, or that die with the job anyway).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


_TEMP_SUFFIX = ".tmp"
#: The random part of a `tempfile.mkstemp` name (``tempfile._RandomNameSequence``: 8 characters).
_TEMP_RANDOM = r"[a-z0-9_]{8}"


def _temp_prefix(path: Path) -> str:
    return f".{path.name[:200]}."


def leftover_temporaries(path: Path) -> list[Path]:
    """The temporary files `atomic_path` made for ``path`` and a killed process left behind.

    Only files in ``path``'s directory named exactly as `atomic_path` names its temporaries for
    ``path`` (``.<name>.XXXXXXXX.tmp``) are listed; none while the directory cannot be read. Call it
    only where no other process writes ``path`` at the same time (its temporary would be listed).
    """
    pattern = re.compile(re.escape(_temp_prefix(path)) + _TEMP_RANDOM + re.escape(_TEMP_SUFFIX))
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return sorted(path.parent / name for name in names if pattern.fullmatch(name))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def fsync_file(path: Path) -> None:
    """Flush a closed file's content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see `write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically; see `write_bytes_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=False) + "\n")


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries to disk (so a rename in it is durable)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
