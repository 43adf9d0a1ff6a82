"""Small tmpfs mounts for full-disk tests (we run as root in CI; elsewhere the tests skip)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import need


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True)


@contextmanager
def tmpfs(point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``30m``, ``256k``) at ``point`` (created), unmounted at the end.

    Skips where mounting is not allowed (not root), fails instead under ``CI=true``.
    """
    point.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
    need(mounted.returncode == 0, f"mounting a tmpfs ({mounted.stderr.strip()})")
    try:
        yield point
    finally:
        if _run("umount", str(point)).returncode != 0:
            _run("umount", "-l", str(point))  # a process still holds a file there: detach it


def resize(point: Path, size: str) -> None:
    """Give a mounted tmpfs a new size (its files stay)."""
    done = _run("mount", "-o", f"remount,size={size}", str(point))
    assert done.returncode == 0, done.stderr


def fill(path: Path, size: int) -> None:
    """Write ``size`` bytes of ballast to ``path``."""
    with path.open("wb") as f:
        f.write(bytes(size))
