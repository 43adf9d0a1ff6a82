"""Log tarballs: a job's log files packed into one ``.tgz`` declared as the job's ``log`` output."""

from __future__ import annotations

import tarfile
from pathlib import Path

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.results import OutputFile
from hpcpilot.runtime.atomic import atomic_path


def make_tarball(dest: Path, sources: list[tuple[Path, str]]) -> OutputFile:
    """Pack files and directories into a gzipped tarball at ``dest``, atomically.

    Parameters
    ----------
    dest
        The tarball to write (replaced if it exists).
    sources
        ``(path, name in the archive)`` pairs; a directory is added with its content, a missing path is
        skipped.

    Returns
    -------
    OutputFile
        The tarball with its size and adler32.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for path, name in sources:
            if path.exists():
                tar.add(path, arcname=name)
    return OutputFile(str(dest), dest.stat().st_size, adler32_of_file(dest))
